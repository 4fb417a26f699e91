//! Numeric functions with PostgreSQL's exact rules: `power` and
//! `pg_size_pretty`.

use kv::{Error, ErrorKind, Result};
use rust_decimal::{Decimal, RoundingStrategy};

/// PostgreSQL's errors for powers without a real value.
pub(super) fn power_check(
    zero: bool,
    negative_exponent: bool,
    negative: bool,
    fractional: bool,
) -> Result<()> {
    if zero && negative_exponent {
        return Err(Error::new(
            ErrorKind::InvalidArgumentForPower,
            "zero raised to a negative power is undefined",
        ));
    }
    if negative && fractional {
        return Err(Error::new(
            ErrorKind::InvalidArgumentForPower,
            "a negative number raised to a non-integer power yields a complex result",
        ));
    }
    Ok(())
}

/// `a ^ b` for numerics: exact by repeated squaring for an integral
/// exponent, through double precision otherwise; 16 decimals.
pub(super) fn numeric_power(a: Decimal, b: Decimal) -> Result<Decimal> {
    let overflow = || {
        Error::new(
            ErrorKind::NumericOutOfRange,
            "value overflows numeric format",
        )
    };
    let r = if b.fract().is_zero() && b.abs() <= Decimal::from(100_000) {
        let mut n = b
            .abs()
            .trunc()
            .to_string()
            .parse::<u64>()
            .map_err(|_| overflow())?;
        let mut base = a;
        let mut acc = Decimal::ONE;
        while n > 0 {
            if n & 1 == 1 {
                acc = acc.checked_mul(base).ok_or_else(overflow)?;
            }
            n >>= 1;
            if n > 0 {
                base = base.checked_mul(base).ok_or_else(overflow)?;
            }
        }
        if b.is_sign_negative() {
            Decimal::ONE.checked_div(acc).ok_or_else(overflow)?
        } else {
            acc
        }
    } else {
        let (x, y): (f64, f64) = (
            a.to_string().parse().map_err(|_| overflow())?,
            b.to_string().parse().map_err(|_| overflow())?,
        );
        Decimal::try_from(x.powf(y)).map_err(|_| overflow())?
    };
    let mut r = r.round_dp_with_strategy(16, RoundingStrategy::MidpointAwayFromZero);
    // Shown with 16 decimals where the 28 digits leave room.
    r.rescale(16);
    if r.scale() < 16 {
        r = r.normalize();
    }
    Ok(r)
}

/// `pg_size_pretty`, as PostgreSQL 15 computes it: bytes below 10240,
/// then kB, MB, GB, TB, PB below 20480 of each, rounded half away from
/// zero (one extra bit is kept for the rounding).
pub(super) fn size_pretty(mut n: i64) -> String {
    if n.unsigned_abs() < 10 * 1024 {
        return format!("{n} bytes");
    }
    n /= 1 << 9;
    let units = ["kB", "MB", "GB", "TB", "PB"];
    for (i, unit) in units.iter().enumerate() {
        if i == units.len() - 1 || n.unsigned_abs() < 20 * 1024 {
            return format!("{} {unit}", (n + if n < 0 { -1 } else { 1 }) / 2);
        }
        n /= 1 << 10;
    }
    unreachable!("the last unit returns")
}
