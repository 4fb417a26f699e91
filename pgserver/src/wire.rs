//! Values on the wire: PostgreSQL type OIDs, and the text and binary formats
//! of result columns and parameters.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use kv::{Error, ErrorKind, Result};
use pgwire::api::Type;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};
use rust_decimal::Decimal;
use sql::types::text::{format_value, parse_text};
use sql::{DataType, Value};

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = sql::types::datetime::MICROS_PER_DAY;

/// The wire type of a SQL type.
pub fn pg_type(ty: DataType) -> Type {
    match ty {
        DataType::Bool => Type::BOOL,
        DataType::Int2 => Type::INT2,
        DataType::Int4 => Type::INT4,
        DataType::Int8 => Type::INT8,
        DataType::Numeric(_) => Type::NUMERIC,
        DataType::Float4 => Type::FLOAT4,
        DataType::Float8 => Type::FLOAT8,
        DataType::Text | DataType::Unknown => Type::TEXT,
        DataType::Varchar(_) => Type::VARCHAR,
        DataType::Char(_) => Type::BPCHAR,
        DataType::Timestamp => Type::TIMESTAMP,
        DataType::TimestampTz => Type::TIMESTAMPTZ,
        DataType::Date => Type::DATE,
        DataType::Interval => Type::INTERVAL,
    }
}

/// The SQL type of a parameter type a client declared; `None` when the
/// client left it open (OID 0 or `unknown`).
pub fn declared_type(ty: &Type) -> Result<Option<DataType>> {
    Ok(Some(match *ty {
        Type::BOOL => DataType::Bool,
        Type::INT2 => DataType::Int2,
        Type::INT4 => DataType::Int4,
        Type::INT8 => DataType::Int8,
        Type::NUMERIC => DataType::Numeric(None),
        Type::FLOAT4 => DataType::Float4,
        Type::FLOAT8 => DataType::Float8,
        Type::TEXT | Type::NAME => DataType::Text,
        Type::VARCHAR => DataType::Varchar(None),
        Type::BPCHAR => DataType::Text,
        Type::TIMESTAMP => DataType::Timestamp,
        Type::TIMESTAMPTZ => DataType::TimestampTz,
        Type::DATE => DataType::Date,
        Type::INTERVAL => DataType::Interval,
        Type::UNKNOWN => return Ok(None),
        _ if ty.oid() == 0 => return Ok(None),
        _ => {
            return Err(Error::unsupported(format!(
                "parameters of type {} are not supported",
                ty.name()
            )));
        }
    }))
}

/// A value with its SQL type, encodable as a result column.
#[derive(Debug)]
pub struct Cell<'a> {
    /// The value.
    pub value: &'a Value,
    /// Its SQL type.
    pub ty: DataType,
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSqlText for Cell<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _f: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        match format_value(self.value, self.ty) {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }
}

impl ToSql for Cell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self.value, self.ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Bool(b), _) => out.put_u8(*b as u8),
            (Value::Int(i), DataType::Int2) => out.put_i16(*i as i16),
            (Value::Int(i), DataType::Int4) => out.put_i32(*i as i32),
            (Value::Int(i), _) => out.put_i64(*i),
            (Value::Float(f), DataType::Float4) => out.put_f32(*f as f32),
            (Value::Float(f), _) => out.put_f64(*f),
            (Value::Numeric(d), _) => encode_numeric(*d, out),
            (Value::Timestamp(t), DataType::Date) => {
                out.put_i32(((t - PG_EPOCH_MICROS).div_euclid(MICROS_PER_DAY)) as i32)
            }
            (Value::Timestamp(t), _) => out.put_i64(t - PG_EPOCH_MICROS),
            // Binary interval: microseconds, days, months.
            (Value::Interval(iv), _) => {
                out.put_i64(iv.micros);
                out.put_i32(iv.days);
                out.put_i32(iv.months);
            }
            (Value::Text(_), _) => {
                let s = format_value(self.value, self.ty).unwrap_or_default();
                out.put_slice(s.as_bytes());
            }
        }
        let _ = ty;
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.to_sql(ty, out)
    }
}

/// PostgreSQL's binary NUMERIC: digit count, weight, sign, display scale,
/// then base-10000 digits.
pub fn encode_numeric(d: Decimal, out: &mut BytesMut) {
    let scale = d.scale() as usize;
    let digits = d.mantissa().unsigned_abs().to_string();
    let (int_part, frac_part) = if digits.len() > scale {
        (
            digits[..digits.len() - scale].to_string(),
            digits[digits.len() - scale..].to_string(),
        )
    } else {
        (
            String::new(),
            format!("{}{}", "0".repeat(scale - digits.len()), digits),
        )
    };
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_part = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_part = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect()
    };
    let mut groups = group(&int_part);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac_part));
    // Strip leading and trailing zero groups.
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if d.is_sign_negative() && !d.is_zero() {
        0x4000
    } else {
        0
    });
    out.put_u16(scale as u16);
    for g in groups {
        out.put_i16(g);
    }
}

fn bad_binary(ty: DataType) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "incorrect binary data format in bind parameter of type {}",
            ty.pg_name()
        ),
    )
}

fn decode_numeric(b: &[u8]) -> Result<Decimal> {
    let ty = DataType::Numeric(None);
    if b.len() < 8 {
        return Err(bad_binary(ty));
    }
    let rd = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let (weight, sign, dscale) = (rd(2) as i32, rd(4) as u16, rd(6) as u16 as u32);
    if sign == 0xC000 {
        return Err(Error::unsupported("NaN is not supported in numeric"));
    }
    if b.len() != 8 + 2 * n {
        return Err(bad_binary(ty));
    }
    // Each base-10000 digit is placed at once: the time is linear in the
    // message, whatever the weight a client declares. A Decimal holds 28
    // fractional digits at most, so digits below 10000^-7 do not count,
    // and its largest value is below 10000^8.
    let out_of_range = || {
        Error::new(
            ErrorKind::NumericOutOfRange,
            "numeric value out of range (at most 28 digits are supported)",
        )
    };
    let mut value = Decimal::ZERO;
    for i in 0..n {
        let digit = rd(8 + 2 * i);
        if !(0..10_000).contains(&digit) {
            return Err(bad_binary(ty));
        }
        if digit == 0 {
            continue;
        }
        let power = i64::from(weight) - i as i64;
        let term = if power >= 0 {
            if power > 7 {
                return Err(out_of_range());
            }
            Decimal::try_from_i128_with_scale(i128::from(digit) * 10_i128.pow(4 * power as u32), 0)
                .map_err(|_| out_of_range())?
        } else if power >= -7 {
            Decimal::from_i128_with_scale(i128::from(digit), 4 * (-power) as u32)
        } else {
            continue;
        };
        value = value.checked_add(term).ok_or_else(out_of_range)?;
    }
    if sign == 0x4000 {
        value = -value;
    }
    value.rescale(dscale.min(28));
    Ok(value)
}

/// Decodes a parameter sent in binary format as a value of `ty`.
pub fn decode_binary(b: &[u8], ty: DataType) -> Result<Value> {
    let fixed = |n: usize| -> Result<&[u8]> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(bad_binary(ty))
        }
    };
    Ok(match ty {
        DataType::Bool => Value::Bool(fixed(1)?[0] != 0),
        DataType::Int2 => Value::Int(i16::from_be_bytes(fixed(2)?.try_into().unwrap()) as i64),
        DataType::Int4 => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap()) as i64),
        DataType::Int8 => Value::Int(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        DataType::Float4 => Value::Float(f32::from_be_bytes(fixed(4)?.try_into().unwrap()) as f64),
        DataType::Float8 => Value::Float(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        DataType::Numeric(_) => Value::Numeric(decode_numeric(b)?),
        DataType::Timestamp | DataType::TimestampTz => {
            Value::Timestamp(i64::from_be_bytes(fixed(8)?.try_into().unwrap()) + PG_EPOCH_MICROS)
        }
        DataType::Date => Value::Timestamp(
            i32::from_be_bytes(fixed(4)?.try_into().unwrap()) as i64 * MICROS_PER_DAY
                + PG_EPOCH_MICROS,
        ),
        DataType::Interval => {
            let b = fixed(16)?;
            Value::Interval(sql::types::datetime::Interval {
                micros: i64::from_be_bytes(b[..8].try_into().unwrap()),
                days: i32::from_be_bytes(b[8..12].try_into().unwrap()),
                months: i32::from_be_bytes(b[12..].try_into().unwrap()),
            })
        }
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => {
            Value::Text(Arc::from(utf8_text(b)?))
        }
    })
}

/// A parameter's bytes as text: valid UTF-8 without NUL characters, as
/// PostgreSQL requires of every text value (22021).
fn utf8_text(b: &[u8]) -> Result<&str> {
    let s = std::str::from_utf8(b).map_err(|e| {
        let at = e.valid_up_to();
        let bad: Vec<String> = b[at..]
            .iter()
            .take(e.error_len().unwrap_or(1))
            .map(|x| format!("0x{x:02x}"))
            .collect();
        Error::new(
            ErrorKind::CharacterNotInRepertoire,
            format!(
                "invalid byte sequence for encoding \"UTF8\": {}",
                bad.join(" ")
            ),
        )
    })?;
    if s.contains('\0') {
        return Err(Error::new(
            ErrorKind::CharacterNotInRepertoire,
            "invalid byte sequence for encoding \"UTF8\": 0x00",
        ));
    }
    Ok(s)
}

/// Decodes a parameter sent in text format as a value of `ty`.
pub fn decode_text(b: &[u8], ty: DataType) -> Result<Value> {
    parse_text(utf8_text(b)?, ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_roundtrip() {
        for s in [
            "0",
            "1",
            "-1.50",
            "12345.6789",
            "0.0001",
            "100000000",
            "-0.00000123",
            "99999999.99",
        ] {
            let d: Decimal = s.parse().unwrap();
            let mut buf = BytesMut::new();
            encode_numeric(d, &mut buf);
            let back = decode_numeric(&buf).unwrap();
            assert_eq!(back, d, "{s}");
            assert_eq!(back.to_string(), d.to_string(), "scale of {s}");
        }
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        // 12345.6789 is digits [1, 2345, 6789], weight 1, dscale 4.
        let mut buf = BytesMut::new();
        encode_numeric("12345.6789".parse().unwrap(), &mut buf);
        assert_eq!(
            &buf[..],
            &[0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0x09, 0x29, 0x1A, 0x85]
        );
    }

    #[test]
    fn numeric_binary_with_extreme_weights_is_quick() {
        // 16K digits of 9999 at the lowest and the highest weight: each
        // digit costs the same whatever its weight.
        let numeric = |weight: i16| {
            let mut b = Vec::new();
            b.extend_from_slice(&16_000u16.to_be_bytes());
            b.extend_from_slice(&weight.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]);
            for _ in 0..16_000 {
                b.extend_from_slice(&9999u16.to_be_bytes());
            }
            b
        };
        let started = std::time::Instant::now();
        assert_eq!(decode_numeric(&numeric(i16::MIN)).unwrap(), Decimal::ZERO);
        let e = decode_numeric(&numeric(i16::MAX)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericOutOfRange);
        // Not a benchmark: 16K digits took 5-17 s when each cost its weight.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // A digit count that does not match the length, or a digit that is
        // not base 10000, is refused.
        assert!(decode_numeric(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_numeric(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err());
    }

    #[test]
    fn text_parameters_must_be_utf8_without_nul() {
        for (bytes, binary) in [
            (&b"a\xffb"[..], false),
            (b"a\0b", false),
            (b"a\xc3", true),
            (b"\0", true),
        ] {
            let e = if binary {
                decode_binary(bytes, DataType::Text)
            } else {
                decode_text(bytes, DataType::Text)
            }
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::CharacterNotInRepertoire, "{bytes:?}");
            assert!(e.message.starts_with("invalid byte sequence"), "{e}");
        }
        assert_eq!(
            decode_text("é".as_bytes(), DataType::Text).unwrap(),
            Value::text("é")
        );
    }

    #[test]
    fn bad_binary_is_an_error() {
        assert!(decode_binary(&[1, 2, 3], DataType::Int4).is_err());
        assert!(decode_binary(&[0xff, 0xfe], DataType::Text).is_err());
        assert!(decode_binary(&[0, 5, 0, 0, 0, 0, 0, 0], DataType::Numeric(None)).is_err());
    }
}
