//! TPC-C's random inputs (clauses 2.1.6 and 4.3.2) over the benchmarks'
//! seeded [`Rng`]: uniform ranges, NURand, last names from syllables, and
//! the random strings of the population.

use benches::Rng;

/// The constant C of NURand(255, ...) for C_LAST at load.
const C_LAST_LOAD: i64 = 157;
/// The run-time C for C_LAST; differs from the load one by 66, within the
/// range clause 2.1.6.1 allows.
const C_LAST_RUN: i64 = 223;
/// The C of NURand(1023, ...) for customer ids.
const C_ID: i64 = 259;
/// The C of NURand(8191, ...) for item ids.
const C_OL_I_ID: i64 = 7911;

const SYLLABLES: [&str; 10] = [
    "BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING",
];

/// A seeded source of TPC-C inputs.
pub struct Random(Rng);

impl Random {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Random(Rng::new(seed))
    }

    /// Uniform in `[lo, hi]`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.0.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.0.below(100) < percent
    }

    /// NURand(A, x, y) with constant `c` (clause 2.1.6).
    fn nurand(&mut self, a: i64, x: i64, y: i64, c: i64) -> i64 {
        (((self.int(0, a) | self.int(x, y)) + c) % (y - x + 1)) + x
    }

    /// A customer id for a transaction: NURand(1023, 1, 3000).
    pub fn customer_id(&mut self) -> i64 {
        self.nurand(1023, 1, 3000, C_ID)
    }

    /// An item id for a transaction: NURand(8191, 1, 100000).
    pub fn item_id(&mut self) -> i64 {
        self.nurand(8191, 1, 100_000, C_OL_I_ID)
    }

    /// A customer last name for a transaction: NURand(255, 0, 999).
    pub fn run_last_name(&mut self) -> String {
        last_name(self.nurand(255, 0, 999, C_LAST_RUN))
    }

    /// A last name for a loaded customer past the first 1000.
    pub fn load_last_name(&mut self) -> String {
        last_name(self.nurand(255, 0, 999, C_LAST_LOAD))
    }

    /// A warehouse other than `w` among `1..=warehouses` (at least 2).
    pub fn other_warehouse(&mut self, w: i64, warehouses: i64) -> i64 {
        let other = self.int(1, warehouses - 1);
        if other >= w { other + 1 } else { other }
    }

    /// A string of random letters and digits, length in `[lo, hi]`.
    pub fn astring(&mut self, lo: i64, hi: i64) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let n = self.int(lo, hi);
        (0..n)
            .map(|_| CHARS[self.0.below(CHARS.len() as u64) as usize] as char)
            .collect()
    }

    /// A string of random digits, length in `[lo, hi]`.
    pub fn nstring(&mut self, lo: i64, hi: i64) -> String {
        let n = self.int(lo, hi);
        (0..n)
            .map(|_| (b'0' + self.0.below(10) as u8) as char)
            .collect()
    }

    /// A zip code: 4 random digits then "11111".
    pub fn zip(&mut self) -> String {
        self.nstring(4, 4) + "11111"
    }

    /// I_DATA / S_DATA: 26-50 characters, 10% containing "ORIGINAL".
    pub fn data_with_original(&mut self) -> String {
        let mut s = self.astring(26, 50);
        if self.percent(10) {
            let at = self.int(0, s.len() as i64 - 8) as usize;
            s.replace_range(at..at + 8, "ORIGINAL");
        }
        s
    }
}

/// The last name made of the syllables of the digits of `n` (0-999).
pub fn last_name(n: i64) -> String {
    let digit = |d: i64| SYLLABLES[(d % 10) as usize];
    [digit(n / 100), digit(n / 10), digit(n)].concat()
}
