//! Vectorized expression evaluation over Arrow arrays.
//!
//! Column references, constants, parameters, comparisons, arithmetic,
//! AND/OR/NOT and IS NULL run as tight loops over whole columns, with
//! PostgreSQL's semantics (integer range checks by SQL type, division by
//! zero, three-valued logic). Everything else falls back to evaluating the
//! expression row by row on values taken from the batch, so every
//! expression works on this path; only the common ones are fast.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_array::builder::BooleanBuilder;
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, Float64Array, Int64Array, StringArray,
};
use kv::{Error, Result};
use rust_decimal::Decimal;

use super::ExecCtx;
use super::vector::{Batch, array_from_values, value_at};
use crate::expr::{CmpOp, Expr};
use crate::types::ops::{float_arith, int_arith};
use crate::types::value::cmp_f64;
use crate::types::{DataType, Value};

/// A column-at-a-time value: a whole column, or one value for every row.
#[derive(Clone, Debug)]
pub(super) enum Col {
    /// One value per row.
    Array(ArrayRef),
    /// The same value for every row.
    Scalar(Value),
}

/// Typed views of a column for the fast loops.
enum Src<'a, A> {
    Arr(&'a A),
    Val(Option<Value>),
}

fn i64_src(c: &Col) -> Option<Src<'_, Int64Array>> {
    match c {
        Col::Array(a) => a.as_any().downcast_ref::<Int64Array>().map(Src::Arr),
        Col::Scalar(v @ (Value::Int(_) | Value::Timestamp(_) | Value::Null)) => {
            Some(Src::Val(Some(v.clone())))
        }
        _ => None,
    }
}

fn f64_src(c: &Col) -> Option<Src<'_, Float64Array>> {
    match c {
        Col::Array(a) => a.as_any().downcast_ref::<Float64Array>().map(Src::Arr),
        Col::Scalar(v @ (Value::Float(_) | Value::Null)) => Some(Src::Val(Some(v.clone()))),
        _ => None,
    }
}

fn str_src(c: &Col) -> Option<Src<'_, StringArray>> {
    match c {
        Col::Array(a) => a.as_any().downcast_ref::<StringArray>().map(Src::Arr),
        Col::Scalar(v @ (Value::Text(_) | Value::Null)) => Some(Src::Val(Some(v.clone()))),
        _ => None,
    }
}

fn dec_src(c: &Col) -> Option<Src<'_, FixedSizeBinaryArray>> {
    match c {
        Col::Array(a) => a
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .map(Src::Arr),
        Col::Scalar(v @ (Value::Numeric(_) | Value::Null)) => Some(Src::Val(Some(v.clone()))),
        _ => None,
    }
}

impl Src<'_, Int64Array> {
    fn get(&self, i: usize) -> Option<i64> {
        match self {
            Src::Arr(a) => a.is_valid(i).then(|| a.value(i)),
            Src::Val(Some(Value::Int(v) | Value::Timestamp(v))) => Some(*v),
            Src::Val(_) => None,
        }
    }
}

impl Src<'_, Float64Array> {
    fn get(&self, i: usize) -> Option<f64> {
        match self {
            Src::Arr(a) => a.is_valid(i).then(|| a.value(i)),
            Src::Val(Some(Value::Float(v))) => Some(*v),
            Src::Val(_) => None,
        }
    }
}

impl Src<'_, StringArray> {
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            Src::Arr(a) => a.is_valid(i).then(|| a.value(i)),
            Src::Val(Some(Value::Text(s))) => Some(s),
            Src::Val(_) => None,
        }
    }
}

impl Src<'_, FixedSizeBinaryArray> {
    fn get(&self, i: usize) -> Option<Decimal> {
        match self {
            Src::Arr(a) => a
                .is_valid(i)
                .then(|| Decimal::deserialize(a.value(i).try_into().expect("16 bytes"))),
            Src::Val(Some(Value::Numeric(d))) => Some(*d),
            Src::Val(_) => None,
        }
    }
}

fn compare_loop<T>(
    n: usize,
    op: CmpOp,
    get: impl Fn(usize) -> Option<(T, T)>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> ArrayRef {
    let mut b = BooleanBuilder::with_capacity(n);
    for i in 0..n {
        b.append_option(get(i).map(|(x, y)| holds(op, cmp(&x, &y))));
    }
    Arc::new(b.finish())
}

fn holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::NotEq => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::LtEq => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::GtEq => o != Ordering::Less,
    }
}

fn bool_array(c: &Col, n: usize) -> Result<BooleanArray> {
    match c {
        Col::Array(a) => match a.as_any().downcast_ref::<BooleanArray>() {
            Some(b) => Ok(b.clone()),
            None if a.null_count() == a.len() => Ok(BooleanArray::new_null(a.len())),
            None => Err(Error::internal("boolean column expected")),
        },
        Col::Scalar(Value::Bool(b)) => Ok(BooleanArray::from(vec![*b; n])),
        Col::Scalar(Value::Null) => Ok(BooleanArray::new_null(n)),
        Col::Scalar(other) => Err(Error::internal(format!("boolean expected, got {other:?}"))),
    }
}

fn arrow_err(e: arrow_schema::ArrowError) -> Error {
    Error::internal(format!("arrow: {e}"))
}

impl ExecCtx<'_> {
    /// Evaluates `e` over every row of `batch`.
    pub(super) fn eval_col(&self, e: &Expr, batch: &Batch, outer: &[&[Value]]) -> Result<Col> {
        crate::interrupt::check_stack()?;
        let n = batch.rows;
        Ok(match e {
            Expr::Column(i) => Col::Array(batch.columns[*i].clone()),
            Expr::Const(v) => Col::Scalar(v.clone()),
            Expr::Param(_) | Expr::Outer(..) => Col::Scalar(e.eval(&self.env(&[], outer))?),
            Expr::Cmp(op, l, r) => {
                let (a, b) = (
                    self.eval_col(l, batch, outer)?,
                    self.eval_col(r, batch, outer)?,
                );
                if matches!(a, Col::Scalar(Value::Null)) || matches!(b, Col::Scalar(Value::Null)) {
                    return Ok(Col::Scalar(Value::Null));
                }
                if let (Some(x), Some(y)) = (i64_src(&a), i64_src(&b)) {
                    Col::Array(compare_loop(
                        n,
                        *op,
                        |i| Some((x.get(i)?, y.get(i)?)),
                        |p, q| p.cmp(q),
                    ))
                } else if let (Some(x), Some(y)) = (f64_src(&a), f64_src(&b)) {
                    Col::Array(compare_loop(
                        n,
                        *op,
                        |i| Some((x.get(i)?, y.get(i)?)),
                        |p, q| cmp_f64(*p, *q),
                    ))
                } else if let (Some(x), Some(y)) = (str_src(&a), str_src(&b)) {
                    Col::Array(compare_loop(
                        n,
                        *op,
                        |i| Some((x.get(i)?, y.get(i)?)),
                        |p, q| p.as_bytes().cmp(q.as_bytes()),
                    ))
                } else if let (Some(x), Some(y)) = (dec_src(&a), dec_src(&b)) {
                    Col::Array(compare_loop(
                        n,
                        *op,
                        |i| Some((x.get(i)?, y.get(i)?)),
                        |p, q| p.cmp(q),
                    ))
                } else {
                    self.fallback(e, batch, outer)?
                }
            }
            Expr::Arith {
                op,
                left,
                right,
                ty,
            } => {
                let (a, b) = (
                    self.eval_col(left, batch, outer)?,
                    self.eval_col(right, batch, outer)?,
                );
                if let (Some(x), Some(y)) = (i64_src(&a), i64_src(&b))
                    && ty.is_integer()
                {
                    let mut out = Vec::with_capacity(n);
                    let mut valid = Vec::with_capacity(n);
                    for i in 0..n {
                        match (x.get(i), y.get(i)) {
                            (Some(p), Some(q)) => {
                                out.push(int_arith(*op, p, q, *ty)?);
                                valid.push(true);
                            }
                            _ => {
                                out.push(0);
                                valid.push(false);
                            }
                        }
                    }
                    Col::Array(Arc::new(Int64Array::new(out.into(), Some(valid.into()))))
                } else if let (Some(x), Some(y)) = (f64_src(&a), f64_src(&b))
                    && ty.is_float()
                {
                    let mut out = Vec::with_capacity(n);
                    for i in 0..n {
                        out.push(match (x.get(i), y.get(i)) {
                            (Some(p), Some(q)) => Some(float_arith(*op, p, q, *ty)?),
                            _ => None,
                        });
                    }
                    Col::Array(Arc::new(Float64Array::from(out)))
                } else {
                    self.fallback(e, batch, outer)?
                }
            }
            // SQL evaluates AND/OR lazily; when the right side could fail on
            // a row the left side decides (`b <> 0 AND a / b > 1`), go row by
            // row so that it is never evaluated there.
            Expr::And(_, r) | Expr::Or(_, r) if r.can_fail() => self.fallback(e, batch, outer)?,
            Expr::And(l, r) | Expr::Or(l, r) => {
                let a = bool_array(&self.eval_col(l, batch, outer)?, n)?;
                let b = bool_array(&self.eval_col(r, batch, outer)?, n)?;
                let out = if matches!(e, Expr::And(..)) {
                    and_kleene(&a, &b)
                } else {
                    or_kleene(&a, &b)
                };
                Col::Array(Arc::new(out.map_err(arrow_err)?))
            }
            Expr::Not(a) => {
                let a = bool_array(&self.eval_col(a, batch, outer)?, n)?;
                Col::Array(Arc::new(not(&a).map_err(arrow_err)?))
            }
            Expr::IsNull(a, negated) => match self.eval_col(a, batch, outer)? {
                Col::Scalar(v) => Col::Scalar(Value::Bool(v.is_null() != *negated)),
                Col::Array(arr) => {
                    let r = if *negated {
                        is_not_null(&arr)
                    } else {
                        is_null(&arr)
                    };
                    Col::Array(Arc::new(r.map_err(arrow_err)?))
                }
            },
            _ => self.fallback(e, batch, outer)?,
        })
    }

    /// Row-at-a-time evaluation of `e` over the batch.
    fn fallback(&self, e: &Expr, batch: &Batch, outer: &[&[Value]]) -> Result<Col> {
        // Correlated subqueries read the whole row (as their outer row).
        let mut used = Vec::new();
        if e.needs_context() {
            used.extend(0..batch.columns.len());
        } else {
            e.columns_used(&mut used);
            used.sort_unstable();
            used.dedup();
        }
        let mut row = vec![Value::Null; batch.columns.len()];
        let mut out = Vec::with_capacity(batch.rows);
        for i in 0..batch.rows {
            for &c in &used {
                row[c] = value_at(&batch.columns[c], i, batch.types[c]);
            }
            out.push(e.eval(&self.env(&row, outer))?);
        }
        let ty = natural_type(&out);
        Ok(Col::Array(array_from_values(out.iter(), ty)))
    }

    /// Evaluates `e` into an array of SQL type `ty`.
    pub(super) fn eval_array(
        &self,
        e: &Expr,
        batch: &Batch,
        outer: &[&[Value]],
        ty: DataType,
    ) -> Result<ArrayRef> {
        Ok(match self.eval_col(e, batch, outer)? {
            Col::Scalar(v) => array_from_values(std::iter::repeat_n(&v, batch.rows), ty),
            Col::Array(a) if a.data_type() == &super::vector::arrow_type(ty) => a,
            Col::Array(a) => {
                // A fallback result whose values were all NULL, or an
                // expression whose natural type differs: rebuild.
                let from = natural_type_of_array(&a, ty);
                let values: Vec<Value> = (0..a.len()).map(|i| value_at(&a, i, from)).collect();
                array_from_values(values.iter(), ty)
            }
        })
    }

    /// Evaluates a predicate: true rows only (NULL counts as false).
    pub(super) fn eval_mask(
        &self,
        e: &Expr,
        batch: &Batch,
        outer: &[&[Value]],
    ) -> Result<BooleanArray> {
        let b = bool_array(&self.eval_col(e, batch, outer)?, batch.rows)?;
        if b.null_count() == 0 {
            return Ok(b);
        }
        Ok((0..b.len())
            .map(|i| Some(b.is_valid(i) && b.value(i)))
            .collect())
    }

    /// Evaluates `e` into one value per row.
    pub(super) fn eval_values(
        &self,
        e: &Expr,
        batch: &Batch,
        outer: &[&[Value]],
        ty: DataType,
    ) -> Result<Vec<Value>> {
        Ok(match self.eval_col(e, batch, outer)? {
            Col::Scalar(v) => vec![v; batch.rows],
            Col::Array(a) => {
                let from = natural_type_of_array(&a, ty);
                (0..a.len()).map(|i| value_at(&a, i, from)).collect()
            }
        })
    }
}

/// The SQL type to build an array of values in (by their representation).
fn natural_type(values: &[Value]) -> DataType {
    match values.iter().find(|v| !v.is_null()) {
        Some(Value::Bool(_)) => DataType::Bool,
        Some(Value::Int(_)) => DataType::Int8,
        Some(Value::Numeric(_)) => DataType::Numeric(None),
        Some(Value::Float(_)) => DataType::Float8,
        Some(Value::Text(_)) => DataType::Text,
        Some(Value::Timestamp(_)) => DataType::Timestamp,
        Some(Value::Interval(_)) => DataType::Interval,
        Some(Value::Null) | None => DataType::Unknown,
    }
}

/// How to read values out of an array whose representation may not match
/// the SQL type expected of it.
fn natural_type_of_array(a: &ArrayRef, expected: DataType) -> DataType {
    use arrow_schema::DataType as A;
    match a.data_type() {
        A::Int64 if expected.is_datetime() => DataType::Timestamp,
        A::Binary => DataType::Interval,
        A::Int64 => DataType::Int8,
        A::Float64 => DataType::Float8,
        A::Utf8 => DataType::Text,
        A::Boolean => DataType::Bool,
        A::FixedSizeBinary(_) => DataType::Numeric(None),
        _ => DataType::Unknown,
    }
}
