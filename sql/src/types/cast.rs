//! Conversions between types.
//!
//! Three contexts use them, as in PostgreSQL: explicit casts (`CAST(x AS t)`,
//! `x::t`), assignment (a value stored into a column: strings that are too
//! long fail instead of being truncated) and the implicit widening the binder
//! inserts between operands.

use kv::{Error, ErrorKind, Result};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};

use super::text::{check_int_range, format_value, int_out_of_range, parse_text, to_float4};
use super::{DataType, Value};

/// Rounds `d` to `scale` digits and checks it fits `NUMERIC(precision,
/// scale)`.
pub fn apply_numeric_typmod(d: Decimal, precision: u32, scale: u32) -> Result<Decimal> {
    let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    let int_digits = precision.saturating_sub(scale);
    let limit = Decimal::from_i128_with_scale(10i128.pow(int_digits.min(28)), 0);
    if int_digits < 29 && r.abs() >= limit {
        return Err(Error::new(
            ErrorKind::NumericOutOfRange,
            format!(
                "numeric field overflow: a field with precision {precision}, scale {scale} must round to an absolute value less than {}",
                if int_digits == 0 {
                    "1".to_string()
                } else {
                    format!("10^{int_digits}")
                }
            ),
        ));
    }
    Ok(r)
}

/// Fits a string into VARCHAR(n) / CHAR(n). Too long is an error unless the
/// excess is blanks; an explicit cast truncates instead.
pub fn fit_string(s: &str, ty: DataType, explicit: bool) -> Result<Value> {
    let (limit, is_char) = match ty {
        DataType::Varchar(Some(n)) => (n as usize, false),
        DataType::Char(n) => (n as usize, true),
        _ => return Ok(Value::text(s)),
    };
    let len = s.chars().count();
    let mut out: String = if len > limit {
        let cut: String = s.chars().take(limit).collect();
        let rest: String = s.chars().skip(limit).collect();
        if !explicit && rest.chars().any(|c| c != ' ') {
            return Err(Error::new(
                ErrorKind::StringTooLong,
                format!("value too long for type {}", ty.sql_name()),
            ));
        }
        cut
    } else {
        s.to_string()
    };
    if is_char {
        out.truncate(out.trim_end_matches(' ').len());
    }
    Ok(Value::text(out))
}

/// Rounds half away from zero to an integer (numeric → integer casts).
fn numeric_to_int(d: Decimal, to: DataType) -> Result<i64> {
    let r = d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let v = r.to_i64().ok_or_else(|| int_out_of_range(to))?;
    check_int_range(v, to)
}

/// Rounds half to even to an integer (float → integer casts use rint()).
fn float_to_int(f: f64, to: DataType) -> Result<i64> {
    if !f.is_finite() {
        return Err(int_out_of_range(to));
    }
    let r = f.round_ties_even();
    if r < i64::MIN as f64 || r >= i64::MAX as f64 {
        return Err(int_out_of_range(to));
    }
    check_int_range(r as i64, to)
}

/// Converts a float to numeric through its shortest decimal form, as
/// PostgreSQL's float8_numeric does.
pub fn float_to_numeric(f: f64, from: DataType) -> Result<Decimal> {
    if !f.is_finite() {
        return Err(Error::unsupported(
            "NaN and infinity are not supported in numeric",
        ));
    }
    let text = super::text::format_float(f, from);
    super::text::parse_numeric(&text).or_else(|_| {
        Decimal::from_f64(f).ok_or_else(|| {
            Error::new(
                ErrorKind::NumericOutOfRange,
                "value overflows numeric format",
            )
        })
    })
}

fn no_cast(from: DataType, to: DataType) -> Error {
    Error::new(
        ErrorKind::CannotCoerce,
        format!("cannot cast type {} to {}", from.pg_name(), to.pg_name()),
    )
}

/// True when PostgreSQL allows casting `from` to `to` at all.
pub fn can_cast(from: DataType, to: DataType) -> bool {
    use DataType::*;
    if from == Unknown || to.is_string() || from.is_string() || from == to {
        return true;
    }
    match to {
        Bool => matches!(from, Bool | Int4),
        Int2 | Int4 | Int8 | Numeric(_) | Float4 | Float8 => {
            from.is_numeric() || (from == Bool && to == Int4)
        }
        Timestamp | TimestampTz | Date => from.is_datetime(),
        Interval => from == Interval,
        _ => false,
    }
}

/// Converts `v` of type `from` to type `to`. `explicit` is true for `CAST`
/// and `::`, which truncate over-long strings instead of failing.
pub fn cast(v: Value, from: DataType, to: DataType, explicit: bool) -> Result<Value> {
    use DataType::*;
    if v.is_null() {
        return Ok(Value::Null);
    }
    if from == to && !matches!(to, Numeric(Some(_)) | Varchar(Some(_)) | Char(_)) {
        return Ok(v);
    }
    if !can_cast(from, to) {
        return Err(no_cast(from, to));
    }
    Ok(match (v, to) {
        (Value::Text(s), _) => {
            if to.is_string() {
                fit_string(&s, to, explicit)?
            } else {
                parse_text(&s, to)?
            }
        }
        (v, Text | Varchar(None)) => Value::text(format_value(&v, from).expect("not null")),
        (v, Varchar(_) | Char(_)) => {
            fit_string(&format_value(&v, from).expect("not null"), to, explicit)?
        }
        (Value::Bool(b), Int4) => Value::Int(b as i64),
        (Value::Int(i), Bool) => Value::Bool(i != 0),
        (Value::Bool(b), Bool) => Value::Bool(b),
        (Value::Int(i), Int2 | Int4 | Int8) => Value::Int(check_int_range(i, to)?),
        (Value::Numeric(d), Int2 | Int4 | Int8) => Value::Int(numeric_to_int(d, to)?),
        (Value::Float(f), Int2 | Int4 | Int8) => Value::Int(float_to_int(f, to)?),
        (v, Numeric(m)) => {
            let d = match v {
                Value::Int(i) => Decimal::from(i),
                Value::Numeric(d) => d,
                Value::Float(f) => float_to_numeric(f, from)?,
                _ => return Err(no_cast(from, to)),
            };
            Value::Numeric(match m {
                Some((p, s)) => apply_numeric_typmod(d, p, s)?,
                None => d,
            })
        }
        (v, Float4 | Float8) => {
            let f = match v {
                Value::Int(i) => i as f64,
                Value::Numeric(d) => d.to_f64().ok_or_else(|| no_cast(from, to))?,
                Value::Float(f) => f,
                _ => return Err(no_cast(from, to)),
            };
            Value::Float(if to == Float4 { to_float4(f)? } else { f })
        }
        (Value::Timestamp(t), Timestamp | TimestampTz) => Value::Timestamp(t),
        (Value::Timestamp(t), Date) => {
            Value::Timestamp(t - t.rem_euclid(super::datetime::MICROS_PER_DAY))
        }
        (Value::Interval(iv), Interval) => Value::Interval(iv),
        _ => return Err(no_cast(from, to)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    fn num(s: &str) -> Value {
        Value::Numeric(s.parse().unwrap())
    }

    #[test]
    fn numeric_to_int_rounds_half_away_from_zero_and_floats_to_even() {
        assert_eq!(
            cast(num("2.5"), Numeric(None), Int4, true).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            cast(num("-2.5"), Numeric(None), Int4, true).unwrap(),
            Value::Int(-3)
        );
        assert_eq!(
            cast(Value::Float(2.5), Float8, Int4, true).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            cast(Value::Int(70000), Int4, Int2, true)
                .unwrap_err()
                .message,
            "smallint out of range"
        );
    }

    #[test]
    fn numeric_typmod_rounds_and_checks_precision() {
        assert_eq!(
            apply_numeric_typmod("1.005".parse().unwrap(), 5, 2)
                .unwrap()
                .to_string(),
            "1.01"
        );
        assert_eq!(
            apply_numeric_typmod("7".parse().unwrap(), 5, 2)
                .unwrap()
                .to_string(),
            "7.00"
        );
        assert_eq!(
            apply_numeric_typmod("1000".parse().unwrap(), 5, 2)
                .unwrap_err()
                .kind,
            ErrorKind::NumericOutOfRange
        );
    }

    #[test]
    fn strings_fit_or_fail() {
        assert_eq!(
            fit_string("abc  ", Varchar(Some(3)), false).unwrap(),
            Value::text("abc")
        );
        assert_eq!(
            fit_string("abcd", Varchar(Some(3)), false)
                .unwrap_err()
                .kind,
            ErrorKind::StringTooLong
        );
        assert_eq!(
            fit_string("abcd", Varchar(Some(3)), true).unwrap(),
            Value::text("abc")
        );
        assert_eq!(
            fit_string("ab ", Char(3), false).unwrap(),
            Value::text("ab")
        );
    }

    #[test]
    fn casts_between_families() {
        assert_eq!(
            cast(Value::text("12"), Unknown, Int8, false).unwrap(),
            Value::Int(12)
        );
        assert_eq!(
            cast(Value::Int(12), Int4, Text, false).unwrap(),
            Value::text("12")
        );
        assert_eq!(
            cast(Value::Float(0.1), Float8, Numeric(None), true).unwrap(),
            num("0.1")
        );
        assert_eq!(
            cast(Value::Bool(true), Bool, Int4, true).unwrap(),
            Value::Int(1)
        );
        assert!(cast(Value::Timestamp(0), Timestamp, Int4, true).is_err());
        assert_eq!(
            cast(Value::text("7"), Text, Int4, true).unwrap(),
            Value::Int(7)
        );
    }
}
