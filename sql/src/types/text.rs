//! PostgreSQL's text forms of values: input parsing (`'12'::int`, text-format
//! parameters) and output formatting (what `psql` shows).

use std::str::FromStr;

use kv::{Error, ErrorKind, Result};
use rust_decimal::Decimal;

use super::datetime::{
    format_date, format_interval, format_timestamp, format_timestamptz, parse_date, parse_interval,
    parse_timestamp, parse_timestamptz,
};
use super::{DataType, Value};

fn invalid(ty: DataType, s: &str) -> Error {
    Error::new(
        ErrorKind::InvalidTextRepresentation,
        format!("invalid input syntax for type {}: \"{s}\"", ty.pg_name()),
    )
}

/// The "out of range" error of an integer type.
pub fn int_out_of_range(ty: DataType) -> Error {
    Error::new(
        ErrorKind::NumericOutOfRange,
        format!("{} out of range", ty.pg_name()),
    )
}

/// Checks that `v` fits the integer type `ty`.
pub fn check_int_range(v: i64, ty: DataType) -> Result<i64> {
    let ok = match ty {
        DataType::Int2 => i16::try_from(v).is_ok(),
        DataType::Int4 => i32::try_from(v).is_ok(),
        _ => true,
    };
    if ok { Ok(v) } else { Err(int_out_of_range(ty)) }
}

/// Parses an integer as PostgreSQL does: optional blanks and sign, digits.
pub fn parse_int(s: &str, ty: DataType) -> Result<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(ty, s));
    }
    let v: i64 = t.trim_start_matches('+').parse().map_err(|_| {
        Error::new(
            ErrorKind::NumericOutOfRange,
            format!("value \"{s}\" is out of range for type {}", ty.pg_name()),
        )
    })?;
    check_int_range(v, ty).map_err(|_| {
        Error::new(
            ErrorKind::NumericOutOfRange,
            format!("value \"{s}\" is out of range for type {}", ty.pg_name()),
        )
    })
}

/// Parses a numeric literal (`12`, `-1.50`, `1e3`, `.5`).
pub fn parse_numeric(s: &str) -> Result<Decimal> {
    let t = s.trim();
    let ok_chars = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !ok_chars {
        return Err(invalid(DataType::Numeric(None), s));
    }
    let parsed = if t.contains(['e', 'E']) {
        Decimal::from_scientific(t)
    } else {
        Decimal::from_str_exact(t.trim_start_matches('+'))
    };
    parsed.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("overflow") || msg.contains("large") || msg.contains("scale") {
            Error::new(
                ErrorKind::NumericOutOfRange,
                "value overflows numeric format",
            )
        } else {
            invalid(DataType::Numeric(None), s)
        }
    })
}

/// Parses a float, accepting PostgreSQL's spellings of the special values.
pub fn parse_float(s: &str, ty: DataType) -> Result<f64> {
    let t = s.trim();
    let v = match t.to_ascii_lowercase().as_str() {
        "nan" => f64::NAN,
        "infinity" | "inf" | "+infinity" | "+inf" => f64::INFINITY,
        "-infinity" | "-inf" => f64::NEG_INFINITY,
        lower => {
            if lower.is_empty()
                || !lower
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e'))
            {
                return Err(invalid(ty, s));
            }
            f64::from_str(lower).map_err(|_| invalid(ty, s))?
        }
    };
    if v.is_infinite() && !t.to_ascii_lowercase().contains("inf") {
        return Err(Error::new(
            ErrorKind::NumericOutOfRange,
            format!("\"{t}\" is out of range for type {}", ty.pg_name()),
        ));
    }
    if ty == DataType::Float4 {
        return to_float4(v);
    }
    Ok(v)
}

/// Rounds to REAL precision, failing when the value does not fit.
pub fn to_float4(v: f64) -> Result<f64> {
    let f = v as f32;
    if f.is_infinite() && v.is_finite() {
        return Err(Error::new(
            ErrorKind::NumericOutOfRange,
            "value out of range: overflow",
        ));
    }
    Ok(f as f64)
}

/// Parses a boolean as PostgreSQL does (`t`, `true`, `yes`, `on`, `1`, and
/// unambiguous prefixes; case-insensitive).
pub fn parse_bool(s: &str) -> Result<bool> {
    let t = s.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !t.is_empty() && word.starts_with(t.as_str());
    if t == "1" || prefix_of("true") || prefix_of("yes") || t == "on" {
        Ok(true)
    } else if t == "0" || prefix_of("false") || prefix_of("no") || t == "off" || t == "of" {
        Ok(false)
    } else {
        Err(invalid(DataType::Bool, s))
    }
}

/// Converts text input to a value of `ty` (the input function of the type).
pub fn parse_text(s: &str, ty: DataType) -> Result<Value> {
    Ok(match ty {
        DataType::Bool => Value::Bool(parse_bool(s)?),
        DataType::Int2 | DataType::Int4 | DataType::Int8 => Value::Int(parse_int(s, ty)?),
        DataType::Numeric(m) => {
            let d = parse_numeric(s)?;
            Value::Numeric(match m {
                Some((p, sc)) => super::cast::apply_numeric_typmod(d, p, sc)?,
                None => d,
            })
        }
        DataType::Float4 | DataType::Float8 => Value::Float(parse_float(s, ty)?),
        DataType::Text | DataType::Unknown => Value::text(s),
        DataType::Varchar(_) | DataType::Char(_) => super::cast::fit_string(s, ty, false)?,
        DataType::Timestamp => Value::Timestamp(parse_timestamp(s)?),
        DataType::TimestampTz => Value::Timestamp(parse_timestamptz(s)?),
        DataType::Date => Value::Timestamp(parse_date(s)?),
        DataType::Interval => Value::Interval(parse_interval(s)?),
    })
}

/// Formats a float the way PostgreSQL 15 does with the default
/// `extra_float_digits = 1`: the shortest digits that round-trip, in plain
/// notation when the decimal exponent is in `-4 ..< precision` (15 for
/// double precision, 6 for real) and in `1.5e+20` notation otherwise.
pub fn format_float(v: f64, ty: DataType) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (sci, limit) = if ty == DataType::Float4 {
        (format!("{:e}", v as f32), 6)
    } else {
        (format!("{v:e}"), 15)
    };
    // `sci` is like "-1.2345e-7": split mantissa digits and exponent.
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exp < -4 || exp >= limit {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// The text output of a value of type `ty`; `None` for NULL.
pub fn format_value(v: &Value, ty: DataType) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Numeric(d) => d.to_string(),
        Value::Float(f) => format_float(*f, ty),
        Value::Text(s) => match ty {
            DataType::Char(n) => {
                let len = s.chars().count();
                let mut out = s.to_string();
                out.extend(std::iter::repeat_n(' ', (n as usize).saturating_sub(len)));
                out
            }
            _ => s.to_string(),
        },
        Value::Timestamp(t) => match ty {
            DataType::Date => format_date(*t),
            DataType::TimestampTz => format_timestamptz(*t),
            _ => format_timestamp(*t),
        },
        Value::Interval(iv) => format_interval(iv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        let f8 = |v: f64| format_float(v, DataType::Float8);
        let f4 = |v: f64| format_float(v, DataType::Float4);
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(123456789012345.0), "123456789012345");
        assert_eq!(f8(1e14), "100000000000000");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        assert_eq!(f8(1.5e-7), "1.5e-07");
        assert_eq!(f8(1e100), "1e+100");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(10.0 / 3.0), "3.3333333333333335");
        assert_eq!(f8(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f8(-2.5), "-2.5");
        assert_eq!(f4(1e6), "1e+06");
        assert_eq!(f4(123456.0), "123456");
        assert_eq!(f4(0.1f32 as f64), "0.1");
        assert_eq!(f4(3.4028235e38f32 as f64), "3.4028235e+38");
    }

    #[test]
    fn ints_parse_like_postgres() {
        assert_eq!(parse_int(" 42 ", DataType::Int4).unwrap(), 42);
        assert_eq!(parse_int("-7", DataType::Int2).unwrap(), -7);
        assert_eq!(
            parse_int("a", DataType::Int4).unwrap_err().kind,
            ErrorKind::InvalidTextRepresentation
        );
        assert_eq!(
            parse_int("99999", DataType::Int2).unwrap_err().message,
            "value \"99999\" is out of range for type smallint"
        );
        assert_eq!(
            parse_int("1.5", DataType::Int4).unwrap_err().kind,
            ErrorKind::InvalidTextRepresentation
        );
    }

    #[test]
    fn bools_and_numerics() {
        assert!(parse_bool("TRUE").unwrap());
        assert!(parse_bool("y").unwrap());
        assert!(!parse_bool("off").unwrap());
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_numeric("1.50").unwrap().to_string(), "1.50");
        assert_eq!(parse_numeric("1e3").unwrap().to_string(), "1000");
        assert!(parse_numeric("1.2.3").is_err());
        assert!(parse_numeric("abc").is_err());
    }

    #[test]
    fn char_pads_on_output() {
        assert_eq!(
            format_value(&Value::text("ab"), DataType::Char(4)).unwrap(),
            "ab  "
        );
    }
}
