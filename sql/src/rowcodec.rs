//! The stored form of a row (the value of a primary-key entry).
//!
//! `[column count: u16]` then per column a tag byte and its payload:
//! `0` NULL, `1` false, `2` true, `3` integer (i64 LE), `4` numeric
//! (rust_decimal's 16-byte form), `5` float (f64 LE), `6` text (u32 LE
//! length + UTF-8), `7` timestamp (i64 LE). Not order-preserving (keys use
//! `kv::keycode`), just compact and fast to decode.

use std::sync::Arc;

use kv::{Error, Result};
use rust_decimal::Decimal;

use crate::types::Value;

/// Encodes a row.
pub fn encode_row(row: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + row.len() * 9);
    out.extend_from_slice(&(row.len() as u16).to_le_bytes());
    for v in row {
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Int(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Numeric(d) => {
                out.push(4);
                out.extend_from_slice(&d.serialize());
            }
            Value::Float(f) => {
                out.push(5);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Text(s) => {
                out.push(6);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Timestamp(t) => {
                out.push(7);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Value::Interval(iv) => {
                out.push(8);
                out.extend_from_slice(&iv.to_bytes());
            }
        }
    }
    out
}

fn corrupt() -> Error {
    Error::internal("corrupt stored row")
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(corrupt());
    }
    let (a, b) = input.split_at(n);
    *input = b;
    Ok(a)
}

fn arr<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    Ok(take(input, N)?.try_into().expect("length checked"))
}

/// One stored value, borrowed from the row bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A numeric in rust_decimal's 16-byte form.
    Numeric(&'a [u8; 16]),
    /// A float.
    Float(f64),
    /// A string.
    Text(&'a str),
    /// A timestamp.
    Timestamp(i64),
    /// An interval in its 16-byte form.
    Interval(&'a [u8; 16]),
}

/// Visits the cells of a stored row without building values (the
/// vectorized scan appends them straight into column builders).
pub fn for_each_cell<'a>(bytes: &'a [u8], mut f: impl FnMut(usize, Cell<'a>)) -> Result<()> {
    let mut input = bytes;
    let n = u16::from_le_bytes(arr(&mut input)?) as usize;
    for i in 0..n {
        let tag = take(&mut input, 1)?[0];
        let cell = match tag {
            0 => Cell::Null,
            1 => Cell::Bool(false),
            2 => Cell::Bool(true),
            3 => Cell::Int(i64::from_le_bytes(arr(&mut input)?)),
            4 => Cell::Numeric(take(&mut input, 16)?.try_into().expect("16 bytes")),
            5 => Cell::Float(f64::from_le_bytes(arr(&mut input)?)),
            6 => {
                let len = u32::from_le_bytes(arr(&mut input)?) as usize;
                Cell::Text(std::str::from_utf8(take(&mut input, len)?).map_err(|_| corrupt())?)
            }
            7 => Cell::Timestamp(i64::from_le_bytes(arr(&mut input)?)),
            8 => Cell::Interval(take(&mut input, 16)?.try_into().expect("16 bytes")),
            _ => return Err(corrupt()),
        };
        f(i, cell);
    }
    if !input.is_empty() {
        return Err(corrupt());
    }
    Ok(())
}

/// Decodes a row of a table with `width` columns: a row stored before
/// columns were added (`ALTER TABLE … ADD COLUMN` without a default) reads
/// NULL in them.
pub fn decode_row_of(bytes: &[u8], width: usize) -> Result<Vec<Value>> {
    let mut row = decode_row(bytes)?;
    if row.len() > width {
        return Err(corrupt());
    }
    row.resize(width, Value::Null);
    Ok(row)
}

/// Decodes a row.
pub fn decode_row(bytes: &[u8]) -> Result<Vec<Value>> {
    let mut input = bytes;
    let n = u16::from_le_bytes(arr(&mut input)?) as usize;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = take(&mut input, 1)?[0];
        row.push(match tag {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(i64::from_le_bytes(arr(&mut input)?)),
            4 => Value::Numeric(Decimal::deserialize(arr(&mut input)?)),
            5 => Value::Float(f64::from_le_bytes(arr(&mut input)?)),
            6 => {
                let len = u32::from_le_bytes(arr(&mut input)?) as usize;
                let s = std::str::from_utf8(take(&mut input, len)?).map_err(|_| corrupt())?;
                Value::Text(Arc::from(s))
            }
            7 => Value::Timestamp(i64::from_le_bytes(arr(&mut input)?)),
            8 => Value::Interval(crate::types::datetime::Interval::from_bytes(&arr(
                &mut input,
            )?)),
            _ => return Err(corrupt()),
        });
    }
    if !input.is_empty() {
        return Err(corrupt());
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let row = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-5),
            Value::Numeric("12.340".parse().unwrap()),
            Value::Float(1.5),
            Value::text("héllo"),
            Value::Timestamp(1_700_000_000_000_000),
            Value::Interval(crate::types::datetime::Interval {
                months: -14,
                days: 3,
                micros: 5_000_001,
            }),
        ];
        let decoded = decode_row(&encode_row(&row)).unwrap();
        assert_eq!(decoded, row);
        if let Value::Numeric(d) = &decoded[3] {
            assert_eq!(d.to_string(), "12.340", "scale survives");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_row(&[1]).is_err());
        assert!(decode_row(&[1, 0, 9]).is_err());
        assert!(decode_row(&[1, 0, 6, 200, 0, 0, 0, b'a']).is_err());
    }
}
