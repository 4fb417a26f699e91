//! Arithmetic with PostgreSQL's rules: integer results are checked against
//! their type's range, integer division truncates, division by zero is an
//! error for every type, numeric scales follow PostgreSQL (`+`/`-`: the larger
//! input scale; `*`: the sum; `/`: `select_div_scale`), and float results
//! that overflow or underflow are errors.

use kv::{Error, ErrorKind, Result};
use rust_decimal::{Decimal, RoundingStrategy};

use super::text::{check_int_range, int_out_of_range, to_float4};
use super::{DataType, Value};

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

impl ArithOp {
    /// The operator's SQL spelling.
    pub fn symbol(&self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

pub fn division_by_zero() -> Error {
    Error::new(ErrorKind::DivisionByZero, "division by zero")
}

fn numeric_overflow() -> Error {
    Error::new(
        ErrorKind::NumericOutOfRange,
        "value overflows numeric format",
    )
}

/// Applies `op` to two non-null operands already converted to `ty`.
pub fn arith(op: ArithOp, a: &Value, b: &Value, ty: DataType) -> Result<Value> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(x), Value::Int(y)) => int_arith(op, *x, *y, ty).map(Value::Int),
        (Value::Numeric(x), Value::Numeric(y)) => numeric_arith(op, *x, *y).map(Value::Numeric),
        (Value::Float(x), Value::Float(y)) => float_arith(op, *x, *y, ty).map(Value::Float),
        _ => Err(Error::internal(format!(
            "arithmetic on mismatched values {a:?} {} {b:?}",
            op.symbol()
        ))),
    }
}

pub fn int_arith(op: ArithOp, x: i64, y: i64, ty: DataType) -> Result<i64> {
    let r = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div => {
            if y == 0 {
                return Err(division_by_zero());
            }
            x.checked_div(y)
        }
        ArithOp::Mod => {
            if y == 0 {
                return Err(division_by_zero());
            }
            Some(x.checked_rem(y).unwrap_or(0))
        }
    };
    check_int_range(r.ok_or_else(|| int_out_of_range(ty))?, ty)
}

fn numeric_arith(op: ArithOp, x: Decimal, y: Decimal) -> Result<Decimal> {
    match op {
        ArithOp::Add => x.checked_add(y).ok_or_else(numeric_overflow),
        ArithOp::Sub => x.checked_sub(y).ok_or_else(numeric_overflow),
        ArithOp::Mul => x.checked_mul(y).ok_or_else(numeric_overflow),
        ArithOp::Div => numeric_div(x, y),
        ArithOp::Mod => {
            if y.is_zero() {
                return Err(division_by_zero());
            }
            x.checked_rem(y).ok_or_else(numeric_overflow)
        }
    }
}

/// The weight (position of the leading base-10000 digit group) and the value
/// of that group, as in PostgreSQL's base-10000 NUMERIC representation.
fn weight_and_first_digit(d: Decimal) -> (i64, i128) {
    let m = d.mantissa().unsigned_abs();
    if m == 0 {
        return (0, 0);
    }
    let scale = d.scale() as i64;
    let leading = m.ilog10() as i64 - scale; // floor(log10(|d|))
    let weight = leading.div_euclid(4);
    let k = -scale - 4 * weight;
    let first = if k >= 0 {
        m * 10u128.pow(k as u32)
    } else {
        m / 10u128.pow((-k) as u32)
    };
    (weight, first as i128)
}

/// PostgreSQL's `select_div_scale`: at least 16 significant digits, and no
/// fewer fractional digits than either input.
fn div_scale(x: Decimal, y: Decimal) -> u32 {
    let (w1, f1) = weight_and_first_digit(x);
    let (w2, f2) = weight_and_first_digit(y);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4)
        .max(x.scale() as i64)
        .max(y.scale() as i64)
        .max(0);
    // rust_decimal keeps at most 28 fractional digits.
    rscale.min(28) as u32
}

/// Numeric division with PostgreSQL's result scale.
pub fn numeric_div(x: Decimal, y: Decimal) -> Result<Decimal> {
    if y.is_zero() {
        return Err(division_by_zero());
    }
    let scale = div_scale(x, y);
    let q = x.checked_div(y).ok_or_else(numeric_overflow)?;
    let mut r = q.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    Ok(r)
}

pub fn float_arith(op: ArithOp, x: f64, y: f64, ty: DataType) -> Result<f64> {
    let single = ty == DataType::Float4;
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div => {
            if y == 0.0 {
                return Err(division_by_zero());
            }
            x / y
        }
        ArithOp::Mod => {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("operator does not exist: {0} % {0}", ty.pg_name()),
            ));
        }
    };
    let r = if single { (r as f32) as f64 } else { r };
    if r.is_infinite() && x.is_finite() && y.is_finite() {
        return Err(Error::new(
            ErrorKind::NumericOutOfRange,
            "value out of range: overflow",
        ));
    }
    if r == 0.0
        && ((op == ArithOp::Mul && x != 0.0 && y != 0.0) || (op == ArithOp::Div && x != 0.0))
        && y.is_finite()
    {
        return Err(Error::new(
            ErrorKind::NumericOutOfRange,
            "value out of range: underflow",
        ));
    }
    if single { to_float4(r) } else { Ok(r) }
}

/// Unary minus.
pub fn negate(v: &Value, ty: DataType) -> Result<Value> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Int(check_int_range(
            i.checked_neg().ok_or_else(|| int_out_of_range(ty))?,
            ty,
        )?),
        Value::Numeric(d) => Value::Numeric(-*d),
        Value::Float(f) => Value::Float(-f),
        other => {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("operator does not exist: - {other:?}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    fn n(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn division_scale_matches_postgres() {
        assert_eq!(
            numeric_div(n("1.0"), n("3")).unwrap().to_string(),
            "0.33333333333333333333"
        );
        assert_eq!(
            numeric_div(n("1000000"), n("3.0")).unwrap().to_string(),
            "333333.333333333333"
        );
        assert_eq!(
            numeric_div(n("3"), n("2")).unwrap().to_string(),
            "1.5000000000000000"
        );
        assert_eq!(
            numeric_div(n("7.50"), n("2")).unwrap().to_string(),
            "3.7500000000000000"
        );
        assert_eq!(
            numeric_div(n("2"), n("3")).unwrap().to_string(),
            "0.66666666666666666667"
        );
    }

    #[test]
    fn integer_rules() {
        assert_eq!(int_arith(ArithOp::Div, -7, 2, Int4).unwrap(), -3);
        assert_eq!(int_arith(ArithOp::Mod, -7, 3, Int4).unwrap(), -1);
        assert_eq!(
            int_arith(ArithOp::Add, i32::MAX as i64, 1, Int4)
                .unwrap_err()
                .message,
            "integer out of range"
        );
        assert_eq!(
            int_arith(ArithOp::Add, i64::MAX, 1, Int8)
                .unwrap_err()
                .message,
            "bigint out of range"
        );
        assert_eq!(
            int_arith(ArithOp::Div, 1, 0, Int4).unwrap_err().kind,
            ErrorKind::DivisionByZero
        );
        assert_eq!(
            int_arith(ArithOp::Div, i64::MIN, -1, Int8)
                .unwrap_err()
                .kind,
            ErrorKind::NumericOutOfRange
        );
        assert_eq!(int_arith(ArithOp::Mod, i64::MIN, -1, Int8).unwrap(), 0);
        assert!(negate(&Value::Int(i32::MIN as i64), Int4).is_err());
    }

    #[test]
    fn float_rules() {
        assert_eq!(
            float_arith(ArithOp::Div, 1.0, 0.0, Float8)
                .unwrap_err()
                .kind,
            ErrorKind::DivisionByZero
        );
        assert_eq!(
            float_arith(ArithOp::Mul, 1e300, 1e300, Float8)
                .unwrap_err()
                .kind,
            ErrorKind::NumericOutOfRange
        );
        assert_eq!(
            float_arith(ArithOp::Add, 0.1, 0.2, Float4).unwrap(),
            (0.1f32 + 0.2f32) as f64
        );
    }

    #[test]
    fn numeric_scales() {
        assert_eq!(
            numeric_arith(ArithOp::Add, n("1.50"), n("1"))
                .unwrap()
                .to_string(),
            "2.50"
        );
        assert_eq!(
            numeric_arith(ArithOp::Mul, n("1.5"), n("2.25"))
                .unwrap()
                .to_string(),
            "3.375"
        );
        assert_eq!(
            numeric_arith(ArithOp::Mod, n("7.5"), n("2"))
                .unwrap()
                .to_string(),
            "1.5"
        );
    }
}
