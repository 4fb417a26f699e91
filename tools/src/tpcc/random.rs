//! TPC-C's random inputs (clause 2.1.6 and 4.3.2): NURand, customer last
//! names from syllables, alphanumeric and numeric strings.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The constant C of NURand(255, ...) used for C_LAST when loading.
pub const C_LAST_LOAD: u32 = 157;
/// The run-time C for C_LAST (differs from the load one by 66, within the
/// range clause 2.1.6.1 requires).
pub const C_LAST_RUN: u32 = 223;
/// The C of NURand(1023, ...) for customer ids.
pub const C_ID: u32 = 259;
/// The C of NURand(8191, ...) for item ids.
pub const C_OL_I_ID: u32 = 7911;

const SYLLABLES: [&str; 10] = [
    "BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING",
];

/// A seeded random source with the TPC-C helpers.
pub struct Random(StdRng);

impl Random {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Random(StdRng::seed_from_u64(seed))
    }

    /// Uniform in `[lo, hi]`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        self.0.random_range(lo..=hi)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.0.random_range(0..100) < percent
    }

    /// NURand(A, x, y) with constant `c`.
    pub fn nurand(&mut self, a: i64, x: i64, y: i64, c: u32) -> i64 {
        (((self.int(0, a) | self.int(x, y)) + c as i64) % (y - x + 1)) + x
    }

    /// A string of random letters and digits, length in `[lo, hi]`.
    pub fn astring(&mut self, lo: usize, hi: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let n = self.0.random_range(lo..=hi);
        (0..n)
            .map(|_| CHARS[self.0.random_range(0..CHARS.len())] as char)
            .collect()
    }

    /// A string of random digits, length in `[lo, hi]`.
    pub fn nstring(&mut self, lo: usize, hi: usize) -> String {
        let n = self.0.random_range(lo..=hi);
        (0..n)
            .map(|_| (b'0' + self.0.random_range(0..10u8)) as char)
            .collect()
    }

    /// A zip code: 4 random digits then "11111".
    pub fn zip(&mut self) -> String {
        format!("{}11111", self.nstring(4, 4))
    }

    /// I_DATA / S_DATA: 26–50 characters, 10% containing "ORIGINAL".
    pub fn data_with_original(&mut self) -> String {
        let mut s = self.astring(26, 50);
        if self.percent(10) {
            let at = self.0.random_range(0..=s.len() - 8);
            s.replace_range(at..at + 8, "ORIGINAL");
        }
        s
    }

    /// A customer last name for a run-time lookup.
    pub fn run_last_name(&mut self) -> String {
        last_name(self.nurand(255, 0, 999, C_LAST_RUN) as u32)
    }

    /// A last name for a loaded customer past the first 1000.
    pub fn load_last_name(&mut self) -> String {
        last_name(self.nurand(255, 0, 999, C_LAST_LOAD) as u32)
    }

    /// A customer id for a transaction: NURand(1023, 1, 3000).
    pub fn customer_id(&mut self) -> i64 {
        self.nurand(1023, 1, 3000, C_ID)
    }

    /// An item id for a transaction: NURand(8191, 1, 100000).
    pub fn item_id(&mut self) -> i64 {
        self.nurand(8191, 1, 100_000, C_OL_I_ID)
    }

    /// A warehouse other than `w` among `1..=warehouses` (at least 2).
    pub fn other_warehouse(&mut self, w: i64, warehouses: i64) -> i64 {
        let other = self.int(1, warehouses - 1);
        if other >= w { other + 1 } else { other }
    }
}

/// The last name made of the syllables of the digits of `n` (0–999).
pub fn last_name(n: u32) -> String {
    format!(
        "{}{}{}",
        SYLLABLES[(n / 100) as usize],
        SYLLABLES[((n / 10) % 10) as usize],
        SYLLABLES[(n % 10) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_names_follow_the_spec() {
        assert_eq!(last_name(0), "BARBARBAR");
        assert_eq!(last_name(371), "PRICALLYOUGHT");
        assert_eq!(last_name(999), "EINGEINGEING");
    }

    #[test]
    fn nurand_stays_in_range() {
        let mut r = Random::new(1);
        for _ in 0..10_000 {
            let v = r.nurand(1023, 1, 3000, C_ID);
            assert!((1..=3000).contains(&v));
        }
        let s = r.data_with_original();
        assert!((26..=50).contains(&s.len()));
    }
}
