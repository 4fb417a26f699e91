//! Aggregate accumulators, shared by the row and vectorized paths.

use std::cmp::Ordering;
use std::collections::HashSet;

use kv::{Error, ErrorKind, Result};
use rust_decimal::Decimal;

use crate::plan::{AggCall, AggFunc};
use crate::types::ops::numeric_div;
use crate::types::text::{check_int_range, int_out_of_range, to_float4};
use crate::types::{DataType, Value};

use super::row_key;

/// An aggregate's running state.
#[derive(Clone)]
pub(super) enum Acc {
    /// Rows counted.
    Count(i64),
    /// Sum of integers (exact), and whether any row was added.
    SumInt(i128, bool),
    /// Sum of numerics.
    SumNumeric(Option<Decimal>),
    /// Sum of floats.
    SumFloat(Option<f64>),
    /// Smallest or largest value so far.
    Extreme(Option<Value>),
    /// Average of integers: exact sum and count.
    AvgInt(i128, i64),
    /// Average of numerics: exact sum and count.
    AvgExact(Decimal, i64),
    /// Average of floats.
    AvgFloat(f64, i64),
    /// Values seen so far, for `DISTINCT` aggregates.
    Distinct(Box<Acc>, HashSet<Vec<u8>>),
    /// `string_agg`'s values, in arrival order (sorted at the end when the
    /// call says `ORDER BY`).
    Strings(Vec<std::sync::Arc<str>>),
    /// `bool_and` / `bool_or` so far.
    Bool(Option<bool>),
}

impl Acc {
    pub(super) fn new(call: &AggCall) -> Acc {
        let base = match (call.func, call.arg_ty) {
            (AggFunc::Count, _) => Acc::Count(0),
            (AggFunc::Sum, t) if t.is_integer() => Acc::SumInt(0, false),
            (AggFunc::Sum, t) if t.is_float() => Acc::SumFloat(None),
            (AggFunc::Sum, _) => Acc::SumNumeric(None),
            (AggFunc::Min | AggFunc::Max, _) => Acc::Extreme(None),
            (AggFunc::Avg, t) if t.is_float() => Acc::AvgFloat(0.0, 0),
            (AggFunc::Avg, t) if t.is_integer() => Acc::AvgInt(0, 0),
            (AggFunc::Avg, _) => Acc::AvgExact(Decimal::ZERO, 0),
            (AggFunc::StringAgg, _) => Acc::Strings(Vec::new()),
            (AggFunc::BoolAnd | AggFunc::BoolOr, _) => Acc::Bool(None),
        };
        if call.distinct {
            Acc::Distinct(Box::new(base), HashSet::new())
        } else {
            base
        }
    }

    pub(super) fn add(&mut self, v: Value, call: &AggCall) -> Result<()> {
        if v.is_null() {
            return Ok(());
        }
        let overflow = || {
            Error::new(
                ErrorKind::NumericOutOfRange,
                "value overflows numeric format",
            )
        };
        match (self, v) {
            (Acc::Distinct(inner, seen), v) => {
                if seen.insert(row_key(std::slice::from_ref(&v))) {
                    inner.add(v, call)?;
                }
            }
            (Acc::Count(n), _) => *n += 1,
            (Acc::SumInt(s, any), Value::Int(i)) => {
                *s += i as i128;
                *any = true;
            }
            (Acc::SumNumeric(s), Value::Numeric(d)) => {
                *s = Some(match s {
                    Some(x) => x.checked_add(d).ok_or_else(overflow)?,
                    None => d,
                })
            }
            (Acc::SumFloat(s), Value::Float(f)) => *s = Some(s.unwrap_or(0.0) + f),
            (Acc::Extreme(cur), v) => {
                let replace = match cur {
                    None => true,
                    Some(c) => {
                        let o = v.cmp_non_null(c);
                        if call.func == AggFunc::Min {
                            o == Ordering::Less
                        } else {
                            o == Ordering::Greater
                        }
                    }
                };
                if replace {
                    *cur = Some(v);
                }
            }
            (Acc::AvgInt(s, n), Value::Int(i)) => {
                *s += i as i128;
                *n += 1;
            }
            (Acc::AvgExact(s, n), Value::Int(i)) => {
                *s = s.checked_add(Decimal::from(i)).ok_or_else(overflow)?;
                *n += 1;
            }
            (Acc::AvgExact(s, n), Value::Numeric(d)) => {
                *s = s.checked_add(d).ok_or_else(overflow)?;
                *n += 1;
            }
            (Acc::AvgFloat(s, n), Value::Float(f)) => {
                *s += f;
                *n += 1;
            }
            (Acc::Strings(v), Value::Text(t)) => v.push(t),
            (Acc::Bool(b), Value::Bool(x)) => {
                *b = Some(match (call.func, *b) {
                    (_, None) => x,
                    (AggFunc::BoolAnd, Some(y)) => x && y,
                    (_, Some(y)) => x || y,
                })
            }
            (_, v) => {
                return Err(Error::internal(format!(
                    "aggregate {} got {v:?}",
                    call.func.name()
                )));
            }
        }
        Ok(())
    }

    pub(super) fn finish(self, call: &AggCall) -> Result<Value> {
        Ok(match self {
            Acc::Distinct(inner, _) => inner.finish(call)?,
            Acc::Count(n) => Value::Int(n),
            Acc::SumInt(_, false) => Value::Null,
            Acc::SumInt(s, true) => match call.ty {
                DataType::Int8 => Value::Int(check_int_range(
                    i64::try_from(s).map_err(|_| int_out_of_range(DataType::Int8))?,
                    DataType::Int8,
                )?),
                _ => Value::Numeric(Decimal::try_from_i128_with_scale(s, 0).map_err(|_| {
                    Error::new(
                        ErrorKind::NumericOutOfRange,
                        "value overflows numeric format",
                    )
                })?),
            },
            Acc::SumNumeric(s) => s.map_or(Value::Null, Value::Numeric),
            Acc::SumFloat(s) => match s {
                None => Value::Null,
                Some(f) if call.ty == DataType::Float4 => Value::Float(to_float4(f)?),
                Some(f) => Value::Float(f),
            },
            Acc::Extreme(v) => v.unwrap_or(Value::Null),
            Acc::AvgExact(_, 0) | Acc::AvgFloat(_, 0) | Acc::AvgInt(_, 0) => Value::Null,
            Acc::AvgInt(s, n) => {
                let sum = Decimal::try_from_i128_with_scale(s, 0).map_err(|_| {
                    Error::new(
                        ErrorKind::NumericOutOfRange,
                        "value overflows numeric format",
                    )
                })?;
                Value::Numeric(numeric_div(sum, Decimal::from(n))?)
            }
            Acc::AvgExact(s, n) => Value::Numeric(numeric_div(s, Decimal::from(n))?),
            Acc::AvgFloat(s, n) => Value::Float(s / n as f64),
            Acc::Strings(v) if v.is_empty() => Value::Null,
            Acc::Strings(mut v) => {
                match call.order {
                    Some(false) => v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes())),
                    Some(true) => v.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes())),
                    None => {}
                }
                let delimiter = call.delimiter.as_deref().unwrap_or("");
                let len: usize = v.iter().map(|s| s.len() + delimiter.len()).sum();
                crate::expr::check_text_len(len)?;
                Value::text(v.join(delimiter))
            }
            Acc::Bool(b) => b.map_or(Value::Null, Value::Bool),
        })
    }
}
