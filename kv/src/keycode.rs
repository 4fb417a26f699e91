//! Order-preserving, self-delimiting encoding of SQL values into key bytes.
//!
//! For any two values `a` and `b` of the same SQL type, `encode(a) < encode(b)`
//! (bytewise) exactly when `a < b` in SQL order, with `NULL` sorting after
//! every non-null value (PostgreSQL's default `ASC NULLS LAST`). Encodings are
//! self-delimiting, so a key made of several encoded columns can be split
//! back into its columns, and a prefix of columns is a prefix of the key (the
//! planner's range scans depend on this).
//!
//! Each value starts with a tag byte naming its kind, so keys decode without a
//! schema. Within one column all non-null values share a tag, so the tag never
//! decides an order between values of one column except for `NULL`.
//!
//! | kind | layout |
//! |---|---|
//! | bool | `0x10`, then `0` or `1` |
//! | integer (any width) | `0x20`, then the `i64` big-endian with its sign bit flipped |
//! | timestamp | `0x28`, then micros as for integers |
//! | numeric | `0x30` negative / `0x31` zero / `0x32` positive, then exponent and digits (below) |
//! | float | `0x38`, then the IEEE bits transformed to sort as unsigned |
//! | text | `0x40`, then the UTF-8 bytes with `0x00` escaped as `0x00 0xFF`, ended by `0x00 0x01` |
//! | NULL | `0xFE` |
//!
//! Numeric: a non-zero value is written as `0.d1 d2 d3 … × 10^e` with `d1 ≠ 0`
//! and no trailing zero digits. Positive values write `e` as a biased
//! big-endian `u16`, then one byte `d + 1` per digit, then `0x00`. Negative
//! values write the bitwise complement of the exponent, digits as `254 - d`,
//! then `0xFF`, so a larger magnitude sorts first. Numerically equal values
//! (`1.5` and `1.50`) encode identically, as PostgreSQL treats them as equal.
//!
//! Float: `-0.0` is written as `0.0` and every NaN as one canonical NaN, which
//! sorts above `+inf` as in PostgreSQL.

use rust_decimal::Decimal;

use crate::error::{Error, Result};

const TAG_BOOL: u8 = 0x10;
const TAG_INT: u8 = 0x20;
const TAG_TIMESTAMP: u8 = 0x28;
const TAG_NUM_NEG: u8 = 0x30;
const TAG_NUM_ZERO: u8 = 0x31;
const TAG_NUM_POS: u8 = 0x32;
const TAG_FLOAT: u8 = 0x38;
const TAG_TEXT: u8 = 0x40;
const TAG_NULL: u8 = 0xFE;

const EXP_BIAS: i32 = 0x8000;

/// A decoded key component.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPart {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
    /// An exact numeric (normalized: no trailing zeros).
    Numeric(Decimal),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Text(String),
}

/// Appends `NULL`.
pub fn encode_null(out: &mut Vec<u8>) {
    out.push(TAG_NULL);
}

/// Appends a boolean.
pub fn encode_bool(out: &mut Vec<u8>, v: bool) {
    out.push(TAG_BOOL);
    out.push(v as u8);
}

/// Appends an integer of any SQL width.
pub fn encode_int(out: &mut Vec<u8>, v: i64) {
    out.push(TAG_INT);
    out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

/// Appends a timestamp given in microseconds since the Unix epoch.
pub fn encode_timestamp(out: &mut Vec<u8>, micros: i64) {
    out.push(TAG_TIMESTAMP);
    out.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
}

/// Appends a floating-point number.
pub fn encode_float(out: &mut Vec<u8>, v: f64) {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = v.to_bits();
    let sortable = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.push(TAG_FLOAT);
    out.extend_from_slice(&sortable.to_be_bytes());
}

/// Appends a string.
pub fn encode_text(out: &mut Vec<u8>, s: &str) {
    out.push(TAG_TEXT);
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Appends an exact numeric.
pub fn encode_numeric(out: &mut Vec<u8>, v: Decimal) {
    if v.is_zero() {
        out.push(TAG_NUM_ZERO);
        return;
    }
    let negative = v.is_sign_negative();
    // Significant digits of |v| and the exponent e with |v| = 0.d1d2... * 10^e.
    let mantissa = v.mantissa().unsigned_abs();
    let mut digits: Vec<u8> = mantissa.to_string().bytes().map(|b| b - b'0').collect();
    let exponent = digits.len() as i32 - v.scale() as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let biased = (exponent + EXP_BIAS) as u16;
    if negative {
        out.push(TAG_NUM_NEG);
        out.extend_from_slice(&(!biased).to_be_bytes());
        out.extend(digits.iter().map(|d| 254 - d));
        out.push(0xFF);
    } else {
        out.push(TAG_NUM_POS);
        out.extend_from_slice(&biased.to_be_bytes());
        out.extend(digits.iter().map(|d| d + 1));
        out.push(0x00);
    }
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("corrupt key encoding: {what}"))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(corrupt("truncated value"));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_u64(input: &mut &[u8]) -> Result<u64> {
    let b = take(input, 8)?;
    Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// Decodes one component from the front of `input`, advancing it.
pub fn decode(input: &mut &[u8]) -> Result<KeyPart> {
    let tag = take(input, 1)?[0];
    Ok(match tag {
        TAG_NULL => KeyPart::Null,
        TAG_BOOL => KeyPart::Bool(take(input, 1)?[0] != 0),
        TAG_INT => KeyPart::Int((take_u64(input)? ^ (1 << 63)) as i64),
        TAG_TIMESTAMP => KeyPart::Timestamp((take_u64(input)? ^ (1 << 63)) as i64),
        TAG_FLOAT => {
            let s = take_u64(input)?;
            let bits = if s >> 63 == 1 { s & !(1 << 63) } else { !s };
            KeyPart::Float(f64::from_bits(bits))
        }
        TAG_TEXT => {
            let mut bytes = Vec::new();
            loop {
                let b = take(input, 1)?[0];
                if b != 0 {
                    bytes.push(b);
                    continue;
                }
                match take(input, 1)?[0] {
                    0x01 => break,
                    0xFF => bytes.push(0),
                    _ => return Err(corrupt("bad text escape")),
                }
            }
            KeyPart::Text(String::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))?)
        }
        TAG_NUM_ZERO => KeyPart::Numeric(Decimal::ZERO),
        TAG_NUM_POS | TAG_NUM_NEG => {
            let negative = tag == TAG_NUM_NEG;
            let raw = u16::from_be_bytes(take(input, 2)?.try_into().expect("2 bytes"));
            let biased = if negative { !raw } else { raw };
            let exponent = biased as i32 - EXP_BIAS;
            let mut digits = Vec::new();
            loop {
                let b = take(input, 1)?[0];
                match (negative, b) {
                    (false, 0x00) | (true, 0xFF) => break,
                    (false, 1..=10) => digits.push(b - 1),
                    (true, 245..=254) => digits.push(254 - b),
                    _ => return Err(corrupt("bad numeric digit")),
                }
            }
            // |v| = 0.d1d2..dn * 10^e = (d1d2..dn) * 10^(e - n)
            let mut mantissa: i128 = 0;
            for d in &digits {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(*d as i128))
                    .ok_or_else(|| corrupt("numeric too long"))?;
            }
            let shift = exponent - digits.len() as i32;
            let value = if shift >= 0 {
                let factor = 10i128
                    .checked_pow(shift as u32)
                    .ok_or_else(|| corrupt("numeric exponent"))?;
                let m = mantissa
                    .checked_mul(factor)
                    .ok_or_else(|| corrupt("numeric too large"))?;
                Decimal::try_from_i128_with_scale(m, 0)
            } else {
                Decimal::try_from_i128_with_scale(mantissa, (-shift) as u32)
            }
            .map_err(|_| corrupt("numeric out of range"))?;
            KeyPart::Numeric(if negative { -value } else { value })
        }
        _ => return Err(corrupt("unknown tag")),
    })
}

/// Returns the length of the first encoded component of `input`.
pub fn component_len(input: &[u8]) -> Result<usize> {
    let mut rest = input;
    decode(&mut rest)?;
    Ok(input.len() - rest.len())
}

/// Returns the smallest byte string greater than every string that starts
/// with `prefix`, or `None` when no such string exists (all bytes `0xFF`).
/// Used as the exclusive end of a prefix scan.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xFF {
            *last += 1;
            return Some(end);
        }
        end.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    fn roundtrip(bytes: &[u8]) -> KeyPart {
        let mut input = bytes;
        let part = decode(&mut input).unwrap();
        assert!(input.is_empty(), "decode must consume exactly one value");
        part
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..=18).prop_map(|(m, s)| Decimal::new(m, s))
    }

    proptest! {
        #[test]
        fn int_order_and_roundtrip(a: i64, b: i64) {
            let (ea, eb) = (enc(|o| encode_int(o, a)), enc(|o| encode_int(o, b)));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            prop_assert_eq!(roundtrip(&ea), KeyPart::Int(a));
        }

        #[test]
        fn timestamp_order_and_roundtrip(a: i64, b: i64) {
            let (ea, eb) = (enc(|o| encode_timestamp(o, a)), enc(|o| encode_timestamp(o, b)));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            prop_assert_eq!(roundtrip(&ea), KeyPart::Timestamp(a));
        }

        #[test]
        fn float_order_and_roundtrip(a: f64, b: f64) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let (ea, eb) = (enc(|o| encode_float(o, a)), enc(|o| encode_float(o, b)));
            prop_assert_eq!(ea.cmp(&eb), a.partial_cmp(&b).unwrap());
            match roundtrip(&ea) {
                KeyPart::Float(x) => prop_assert!(x == a),
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn text_order_and_roundtrip(a: String, b: String) {
            let (ea, eb) = (enc(|o| encode_text(o, &a)), enc(|o| encode_text(o, &b)));
            prop_assert_eq!(ea.cmp(&eb), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(roundtrip(&ea), KeyPart::Text(a));
        }

        #[test]
        fn text_with_nul_bytes(a in "[\\x00a]{0,6}", b in "[\\x00a]{0,6}") {
            let (ea, eb) = (enc(|o| encode_text(o, &a)), enc(|o| encode_text(o, &b)));
            prop_assert_eq!(ea.cmp(&eb), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(roundtrip(&ea), KeyPart::Text(a));
        }

        #[test]
        fn numeric_order_and_roundtrip(a in decimal(), b in decimal()) {
            let (ea, eb) = (enc(|o| encode_numeric(o, a)), enc(|o| encode_numeric(o, b)));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b), "{} vs {}", a, b);
            match roundtrip(&ea) {
                KeyPart::Numeric(x) => prop_assert_eq!(x, a),
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn composite_keys_order_by_first_column_then_second(a: (i64, String), b: (i64, String)) {
            let key = |(i, s): &(i64, String)| enc(|o| { encode_int(o, *i); encode_text(o, s) });
            let want = a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()));
            prop_assert_eq!(key(&a).cmp(&key(&b)), want);
        }

        #[test]
        fn null_sorts_after_every_value(a: i64, s: String) {
            let null = enc(encode_null);
            prop_assert_eq!(enc(|o| encode_int(o, a)).cmp(&null), Ordering::Less);
            prop_assert_eq!(enc(|o| encode_text(o, &s)).cmp(&null), Ordering::Less);
        }
    }

    #[test]
    fn numerically_equal_decimals_encode_equally() {
        let a = Decimal::new(150, 2);
        let b = Decimal::new(15, 1);
        assert_eq!(enc(|o| encode_numeric(o, a)), enc(|o| encode_numeric(o, b)));
    }

    #[test]
    fn special_floats() {
        let order = [
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            1e-300,
            1.0,
            f64::INFINITY,
            f64::NAN,
        ];
        let encoded: Vec<_> = order.iter().map(|f| enc(|o| encode_float(o, *f))).collect();
        assert!(encoded.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            enc(|o| encode_float(o, -0.0)),
            enc(|o| encode_float(o, 0.0))
        );
        assert!(encoded[5] < encoded[6], "NaN sorts above +inf");
    }

    #[test]
    fn bools_and_null_roundtrip() {
        assert_eq!(
            roundtrip(&enc(|o| encode_bool(o, true))),
            KeyPart::Bool(true)
        );
        assert!(enc(|o| encode_bool(o, false)) < enc(|o| encode_bool(o, true)));
        assert_eq!(roundtrip(&enc(encode_null)), KeyPart::Null);
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0x20, 1],
            &[0x40, b'a'],
            &[0x99],
            &[0x32, 0x80, 0x00, 77],
        ] {
            let mut input = bytes;
            assert!(decode(&mut input).is_err(), "{bytes:?}");
        }
    }
}
