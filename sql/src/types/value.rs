//! Runtime values.

use std::cmp::Ordering;
use std::sync::Arc;

use rust_decimal::Decimal;

/// A SQL value. See the module docs of `types` for how types are tracked.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type (range-checked against its SQL type by operations).
    Int(i64),
    /// An exact numeric.
    Numeric(Decimal),
    /// A float (REAL values are kept rounded to f32 precision).
    Float(f64),
    /// A string; CHAR(n) values are kept without trailing blanks.
    Text(Arc<str>),
    /// A date, timestamp or timestamptz: microseconds since 1970-01-01
    /// 00:00:00 (UTC for timestamptz; midnight for a date).
    Timestamp(i64),
    /// An interval.
    Interval(super::datetime::Interval),
}

impl Value {
    /// True for NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A text value.
    pub fn text(s: impl Into<Arc<str>>) -> Value {
        Value::Text(s.into())
    }

    /// Compares two non-null values of the same representation, in SQL
    /// order (NaN sorts above every other float, as in PostgreSQL). Values of
    /// different representations compare by representation, which the binder
    /// never lets happen for user-visible comparisons.
    pub fn cmp_non_null(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Numeric(a), Value::Numeric(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => cmp_f64(*a, *b),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Interval(a), Value::Interval(b)) => a.span().cmp(&b.span()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    /// Total order for sorting: NULL compares greater than every value
    /// (PostgreSQL's default `NULLS LAST` for ascending order).
    pub fn cmp_nulls_last(&self, other: &Value) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.cmp_non_null(other),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Numeric(_) => 3,
            Value::Float(_) => 4,
            Value::Text(_) => 5,
            Value::Timestamp(_) => 6,
            Value::Interval(_) => 7,
        }
    }
}

/// Float comparison with NaN equal to itself and above everything.
pub fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).expect("not NaN"),
    }
}
