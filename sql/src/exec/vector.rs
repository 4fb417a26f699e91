//! The vectorized path: operators over batches of Arrow arrays.
//!
//! Representation of SQL types in Arrow: every integer width and TIMESTAMP
//! as `Int64` (range checks use the SQL type, carried beside the arrays),
//! REAL and DOUBLE PRECISION as `Float64`, strings as `Utf8`, BOOLEAN as
//! `Boolean`, and NUMERIC as 16-byte fixed-size binaries holding
//! `rust_decimal` values, because PostgreSQL's NUMERIC keeps a scale per
//! value, which Arrow's fixed-scale decimals cannot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int64Builder,
    StringBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int64Array,
    StringArray, UInt32Array, new_null_array,
};
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use arrow_schema::DataType as ArrowType;
use arrow_select::{concat::concat, filter::filter, take::take};
use kv::{Error, Result};
use rust_decimal::Decimal;

use super::agg::Acc;
use super::{ExecCtx, Row, row_key, row_size};
use crate::catalog::encode_key_value;
use crate::expr::Expr;
use crate::plan::{AggCall, AggFunc, JoinKind, Plan, SetOpKind, SortKey};
use crate::rowcodec::{Cell, for_each_cell};
use crate::types::{DataType, Value};

/// Rows per batch produced by scans and VALUES.
pub const BATCH_ROWS: usize = 4096;

/// The most row pairs a cross product makes between two checks of the
/// memory budget and of cancellation.
const PAIRS_PER_STEP: usize = 1 << 16;

/// A batch of rows as columns.
#[derive(Clone, Debug)]
pub struct Batch {
    /// One array per column.
    pub columns: Vec<ArrayRef>,
    /// The SQL type of each column.
    pub types: Vec<DataType>,
    /// The number of rows (needed when there are no columns).
    pub rows: usize,
}

impl Batch {
    fn memory(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.get_array_memory_size())
            .sum::<usize>()
            + 64
    }

    /// The batch cut into batches of at most `rows` rows (views of it, not
    /// copies).
    fn split(&self, rows: usize) -> Vec<Batch> {
        let rows = rows.max(1);
        (0..self.rows)
            .step_by(rows)
            .map(|start| {
                let n = rows.min(self.rows - start);
                Batch {
                    columns: self.columns.iter().map(|c| c.slice(start, n)).collect(),
                    types: self.types.clone(),
                    rows: n,
                }
            })
            .collect()
    }

    /// The rows at `indices` (a `None` index gives a row of NULLs).
    fn take(&self, indices: &UInt32Array) -> Result<Batch> {
        let columns = self
            .columns
            .iter()
            .map(|c| take(c.as_ref(), indices, None).map_err(arrow_err))
            .collect::<Result<_>>()?;
        Ok(Batch {
            columns,
            types: self.types.clone(),
            rows: indices.len(),
        })
    }

    fn concat(batches: &[Batch], types: &[DataType]) -> Result<Batch> {
        let rows = batches.iter().map(|b| b.rows).sum();
        let mut columns = Vec::with_capacity(types.len());
        for (c, ty) in types.iter().enumerate() {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.columns[c].as_ref()).collect();
            columns.push(if parts.is_empty() {
                array_from_values(std::iter::empty(), *ty)
            } else {
                concat(&parts).map_err(arrow_err)?
            });
        }
        Ok(Batch {
            columns,
            types: types.to_vec(),
            rows,
        })
    }

    /// The canonical key of each row (for grouping, DISTINCT, set
    /// operations).
    fn row_keys(&self) -> Vec<Vec<u8>> {
        (0..self.rows)
            .map(|i| {
                let mut k = Vec::new();
                for (c, ty) in self.columns.iter().zip(&self.types) {
                    encode_key_value(&mut k, &value_at(c, i, *ty));
                }
                k
            })
            .collect()
    }
}

fn arrow_err(e: arrow_schema::ArrowError) -> Error {
    Error::internal(format!("arrow: {e}"))
}

/// The Arrow type holding a SQL type.
pub fn arrow_type(ty: DataType) -> ArrowType {
    match ty {
        DataType::Bool => ArrowType::Boolean,
        DataType::Int2
        | DataType::Int4
        | DataType::Int8
        | DataType::Timestamp
        | DataType::TimestampTz
        | DataType::Date => ArrowType::Int64,
        DataType::Interval => ArrowType::Binary,
        DataType::Float4 | DataType::Float8 => ArrowType::Float64,
        DataType::Numeric(_) => ArrowType::FixedSizeBinary(16),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => {
            ArrowType::Utf8
        }
    }
}

/// Builds an array of SQL type `ty` from values.
pub fn array_from_values<'a>(values: impl Iterator<Item = &'a Value>, ty: DataType) -> ArrayRef {
    match arrow_type(ty) {
        ArrowType::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in values {
                b.append_option(match v {
                    Value::Bool(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ArrowType::Int64 => {
            let mut b = Int64Builder::new();
            for v in values {
                b.append_option(match v {
                    Value::Int(x) | Value::Timestamp(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ArrowType::Float64 => {
            let mut b = Float64Builder::new();
            for v in values {
                b.append_option(match v {
                    Value::Float(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ArrowType::Binary => {
            let mut b = BinaryBuilder::new();
            for v in values {
                match v {
                    Value::Interval(iv) => b.append_value(iv.to_bytes()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ArrowType::FixedSizeBinary(_) => {
            let mut b = FixedSizeBinaryBuilder::new(16);
            for v in values {
                match v {
                    Value::Numeric(d) => b.append_value(d.serialize()).expect("16 bytes"),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Text(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The value at row `i` of an array holding SQL type `ty`.
pub fn value_at(a: &ArrayRef, i: usize, ty: DataType) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    let any = a.as_any();
    if let Some(x) = any.downcast_ref::<Int64Array>() {
        let v = x.value(i);
        return if ty.is_datetime() {
            Value::Timestamp(v)
        } else {
            Value::Int(v)
        };
    }
    if let Some(x) = any.downcast_ref::<Float64Array>() {
        return Value::Float(x.value(i));
    }
    if let Some(x) = any.downcast_ref::<StringArray>() {
        return Value::text(x.value(i));
    }
    if let Some(x) = any.downcast_ref::<BooleanArray>() {
        return Value::Bool(x.value(i));
    }
    if let Some(x) = any.downcast_ref::<BinaryArray>() {
        return match x.value(i).try_into() {
            Ok(b) => Value::Interval(crate::types::datetime::Interval::from_bytes(b)),
            Err(_) => Value::Null,
        };
    }
    if let Some(x) = any.downcast_ref::<FixedSizeBinaryArray>() {
        return Value::Numeric(Decimal::deserialize(
            x.value(i).try_into().expect("16 bytes"),
        ));
    }
    Value::Null
}

/// Splits rows into batches.
pub fn batches_from_rows(rows: &[Row], types: &[DataType]) -> Vec<Batch> {
    if types.is_empty() {
        return if rows.is_empty() {
            Vec::new()
        } else {
            vec![Batch {
                columns: Vec::new(),
                types: Vec::new(),
                rows: rows.len(),
            }]
        };
    }
    rows.chunks(BATCH_ROWS)
        .map(|chunk| Batch {
            columns: types
                .iter()
                .enumerate()
                .map(|(c, ty)| array_from_values(chunk.iter().map(|r| &r[c]), *ty))
                .collect(),
            types: types.to_vec(),
            rows: chunk.len(),
        })
        .collect()
}

/// Builders for one batch's columns, filled straight from stored rows.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Numeric(FixedSizeBinaryBuilder),
    Text(StringBuilder),
    Interval(BinaryBuilder),
}

impl Builder {
    fn new(ty: DataType, rows: usize) -> Builder {
        match arrow_type(ty) {
            ArrowType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            ArrowType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
            ArrowType::Float64 => Builder::Float(Float64Builder::with_capacity(rows)),
            ArrowType::FixedSizeBinary(_) => {
                Builder::Numeric(FixedSizeBinaryBuilder::with_capacity(rows, 16))
            }
            ArrowType::Binary => Builder::Interval(BinaryBuilder::with_capacity(rows, rows * 16)),
            _ => Builder::Text(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Int(b), Cell::Int(v) | Cell::Timestamp(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
            (Builder::Numeric(b), Cell::Numeric(v)) => b.append_value(v).expect("16 bytes"),
            (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
            (Builder::Interval(b), Cell::Interval(v)) => b.append_value(v),
            (Builder::Interval(b), _) => b.append_null(),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Numeric(b), _) => b.append_null(),
            (Builder::Text(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Numeric(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Interval(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes stored rows directly into a batch.
fn decode_batch(entries: &[txn::Entry], types: &[DataType]) -> Result<Batch> {
    let mut builders: Vec<Builder> = types
        .iter()
        .map(|t| Builder::new(*t, entries.len()))
        .collect();
    for (_, bytes) in entries {
        let mut width = 0;
        for_each_cell(bytes, |i, cell| {
            if let Some(b) = builders.get_mut(i) {
                b.push(cell);
            }
            width = i + 1;
        })?;
        if width > types.len() {
            return Err(Error::internal("stored row does not match its table"));
        }
        // Columns added after the row was stored read NULL.
        for b in &mut builders[width..] {
            b.push(Cell::Null);
        }
    }
    Ok(Batch {
        columns: builders.into_iter().map(Builder::finish).collect(),
        types: types.to_vec(),
        rows: entries.len(),
    })
}

/// Turns batches back into rows.
/// About the memory [`rows_from_batches`] takes for `batches`: a value
/// per column and row, and the bytes of their variable-length values.
pub fn rows_memory(batches: &[Batch]) -> usize {
    batches
        .iter()
        .map(|b| {
            // Only the slice's own text bytes: a batch may be a view of a
            // larger one, whose buffers `Batch::memory` would count.
            let text: usize = b
                .columns
                .iter()
                .filter_map(|c| c.as_any().downcast_ref::<StringArray>())
                .map(|a| {
                    let o = a.value_offsets();
                    (o[o.len() - 1] - o[0]) as usize
                })
                .sum();
            b.rows
                .saturating_mul(24 + 32 * b.columns.len())
                .saturating_add(text)
        })
        .sum()
}

pub fn rows_from_batches(batches: &[Batch], types: &[DataType]) -> Vec<Row> {
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.rows).sum());
    for b in batches {
        for i in 0..b.rows {
            rows.push(
                b.columns
                    .iter()
                    .zip(types)
                    .map(|(c, ty)| value_at(c, i, *ty))
                    .collect(),
            );
        }
    }
    rows
}

/// A sortable form of a sort-key column: numerics and intervals (stored as
/// bytes that do not sort) become their order-preserving key encoding.
fn sortable(a: &ArrayRef, ty: DataType) -> ArrayRef {
    if !matches!(ty, DataType::Numeric(_) | DataType::Interval) {
        return a.clone();
    }
    let mut b = BinaryBuilder::new();
    for i in 0..a.len() {
        match value_at(a, i, ty) {
            Value::Null => b.append_null(),
            v => {
                let mut k = Vec::new();
                encode_key_value(&mut k, &v);
                b.append_value(k);
            }
        }
    }
    Arc::new(b.finish())
}

impl ExecCtx<'_> {
    fn charge(&self, batches: &[Batch]) -> Result<()> {
        self.memory.charge(batches.iter().map(Batch::memory).sum())
    }

    /// Evaluates `exprs` over every batch.
    fn project(
        &self,
        input: Vec<Batch>,
        exprs: &[Expr],
        types: &[DataType],
        outer: &[&[Value]],
    ) -> Result<Vec<Batch>> {
        input
            .into_iter()
            .map(|b| {
                let columns = exprs
                    .iter()
                    .zip(types)
                    .map(|(e, ty)| self.eval_array(e, &b, outer, *ty))
                    .collect::<Result<_>>()?;
                Ok(Batch {
                    columns,
                    types: types.to_vec(),
                    rows: b.rows,
                })
            })
            .collect()
    }

    /// Runs `plan` reading only its first `limit` rows when it is a scan
    /// under projections (each row out is one row read, in scan order);
    /// `None` for other plans.
    fn limited_scan(
        &self,
        plan: &Plan,
        outer: &[&[Value]],
        limit: usize,
    ) -> Result<Option<Vec<Batch>>> {
        match plan {
            Plan::Scan(s) => {
                let entries = self.scan_raw_limited(s, outer, Some(limit))?;
                let types = plan.output_types();
                let batches = entries
                    .chunks(BATCH_ROWS)
                    .map(|chunk| decode_batch(chunk, &types))
                    .collect::<Result<_>>()?;
                Ok(Some(batches))
            }
            Plan::Project {
                input,
                exprs,
                types,
            } => match self.limited_scan(input, outer, limit)? {
                Some(batches) => Ok(Some(self.project(batches, exprs, types, outer)?)),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Runs a plan on the vectorized path.
    pub fn query_batches(&self, plan: &Plan, outer: &[&[Value]]) -> Result<Vec<Batch>> {
        crate::interrupt::check_stack()?;
        self.check_interrupt()?;
        // What the inputs held is freed once this node has its output
        // (arrays the output shares are counted in it): a chain of nodes
        // holds its widest step, not the sum of all of them.
        let mark = self.memory.used();
        let out = match plan {
            Plan::Unit => vec![Batch {
                columns: Vec::new(),
                types: Vec::new(),
                rows: 1,
            }],
            Plan::Values { rows, types } => {
                let env = self.env(&[], outer);
                let values: Vec<Row> = rows
                    .iter()
                    .map(|r| r.iter().map(|e| e.eval(&env)).collect::<Result<Row>>())
                    .collect::<Result<_>>()?;
                batches_from_rows(&values, types)
            }
            Plan::Series {
                start,
                stop,
                step,
                ty,
            } => self.series(start, stop, step.as_ref(), *ty, outer)?,
            Plan::System(t) => {
                let rows = self.system_rows(*t)?;
                batches_from_rows(&rows, &plan.output_types())
            }
            Plan::Unnest { array } => {
                let rows: Vec<Row> = match self.eval_const(array, outer)? {
                    Value::Null => Vec::new(),
                    Value::Text(a) => crate::expr::array_items(&a)?
                        .into_iter()
                        .map(|item| vec![item.map_or(Value::Null, Value::text)])
                        .collect(),
                    other => {
                        return Err(Error::internal(format!("unnest of {other:?}")));
                    }
                };
                let made = batches_from_rows(&rows, &[DataType::Text]);
                self.charge(&made)?;
                made
            }
            Plan::Scan(s) => {
                let entries = self.scan_raw(s, outer)?;
                let types = plan.output_types();
                entries
                    .chunks(BATCH_ROWS)
                    .map(|chunk| decode_batch(chunk, &types))
                    .collect::<Result<_>>()?
            }
            Plan::Filter { input, predicate } => {
                let mut out = Vec::new();
                for b in self.query_batches(input, outer)? {
                    self.check_interrupt()?;
                    let mask = self.eval_mask(predicate, &b, outer)?;
                    let kept = mask.true_count();
                    if kept == 0 {
                        continue;
                    }
                    if kept == b.rows {
                        out.push(b);
                        continue;
                    }
                    let columns = b
                        .columns
                        .iter()
                        .map(|c| filter(c.as_ref(), &mask).map_err(arrow_err))
                        .collect::<Result<_>>()?;
                    out.push(Batch {
                        columns,
                        types: b.types,
                        rows: kept,
                    });
                }
                out
            }
            Plan::Project {
                input,
                exprs,
                types,
            } => {
                let input = self.query_batches(input, outer)?;
                self.project(input, exprs, types, outer)?
            }
            Plan::Aggregate {
                input,
                group_by,
                group_types,
                aggs,
            } => {
                let batches = self.query_batches(input, outer)?;
                self.aggregate(
                    &batches,
                    group_by,
                    group_types,
                    aggs,
                    outer,
                    &plan.output_types(),
                )?
            }
            Plan::Distinct { input } => {
                let types = plan.output_types();
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for b in self.query_batches(input, outer)? {
                    self.check_interrupt()?;
                    let keep: Vec<u32> = b
                        .row_keys()
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, k)| seen.insert(k).then_some(i as u32))
                        .collect();
                    self.memory.charge(keep.len() * 64)?;
                    if !keep.is_empty() {
                        out.push(b.take(&UInt32Array::from(keep))?);
                    }
                }
                let _ = types;
                out
            }
            Plan::Window { input, calls } => {
                let in_types = input.output_types();
                let rows = rows_from_batches(&self.query_batches(input, outer)?, &in_types);
                self.memory
                    .charge(rows.iter().map(|r| super::row_size(r)).sum())?;
                let rows = self.window(rows, calls, outer)?;
                batches_from_rows(&rows, &plan.output_types())
            }
            Plan::Sort { input, keys } => {
                let types = plan.output_types();
                let batches = self.query_batches(input, outer)?;
                let sorted = self.sort(&batches, keys, &types)?;
                if sorted.rows == 0 {
                    Vec::new()
                } else {
                    vec![sorted]
                }
            }
            Plan::Limit {
                input,
                limit,
                offset,
            } => {
                let (mut skip, mut take_n) = self.limit_offset(limit, offset, outer)?;
                let input = match self.limited_scan(input, outer, skip.saturating_add(take_n))? {
                    Some(batches) => batches,
                    None => self.query_batches(input, outer)?,
                };
                let mut out = Vec::new();
                for b in input {
                    if take_n == 0 {
                        break;
                    }
                    if skip >= b.rows {
                        skip -= b.rows;
                        continue;
                    }
                    let n = (b.rows - skip).min(take_n);
                    let columns = b.columns.iter().map(|c| c.slice(skip, n)).collect();
                    out.push(Batch {
                        columns,
                        types: b.types,
                        rows: n,
                    });
                    take_n -= n;
                    skip = 0;
                }
                out
            }
            Plan::Join {
                kind,
                left,
                right,
                left_keys,
                right_keys,
                residual,
            } => {
                let l = self.query_batches(left, outer)?;
                let r = self.query_batches(right, outer)?;
                let lt = left.output_types();
                let rt = right.output_types();
                self.join(
                    *kind, &l, &r, &lt, &rt, left_keys, right_keys, residual, outer,
                )?
            }
            Plan::LookupJoin {
                left,
                table,
                key,
                residual,
            } => {
                let types = plan.output_types();
                let right_types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
                let key_types: Vec<DataType> = table
                    .primary_key
                    .iter()
                    .map(|&c| table.columns[c].ty)
                    .collect();
                let mut out = Vec::new();
                for lb in self.query_batches(left, outer)? {
                    self.check_interrupt()?;
                    let key_cols: Vec<Vec<Value>> = key
                        .iter()
                        .zip(&key_types)
                        .map(|(e, ty)| self.eval_values(e, &lb, outer, *ty))
                        .collect::<Result<_>>()?;
                    let mut li: Vec<u32> = Vec::new();
                    let mut right_rows: Vec<Row> = Vec::new();
                    for i in 0..lb.rows {
                        let values: Vec<Expr> =
                            key_cols.iter().map(|c| Expr::Const(c[i].clone())).collect();
                        let access = if values.len() == table.primary_key.len() {
                            crate::plan::Access::Point { key: values }
                        } else {
                            crate::plan::Access::Range {
                                prefix: values,
                                lower: None,
                                upper: None,
                            }
                        };
                        for (_, row) in self.scan(
                            &crate::plan::Scan {
                                table: table.clone(),
                                access,
                                reverse: false,
                            },
                            outer,
                        )? {
                            li.push(i as u32);
                            right_rows.push(row);
                        }
                    }
                    if li.is_empty() {
                        continue;
                    }
                    let l = lb.take(&UInt32Array::from(li))?;
                    let r = batches_from_rows(&right_rows, &right_types);
                    let r = Batch::concat(&r, &right_types)?;
                    let mut columns = l.columns;
                    columns.extend(r.columns);
                    let joined = Batch {
                        columns,
                        types: types.clone(),
                        rows: right_rows.len(),
                    };
                    match residual {
                        None => out.push(joined),
                        Some(f) => {
                            let mask = self.eval_mask(f, &joined, outer)?;
                            let kept = mask.true_count();
                            if kept > 0 {
                                let columns = joined
                                    .columns
                                    .iter()
                                    .map(|c| filter(c.as_ref(), &mask).map_err(arrow_err))
                                    .collect::<Result<_>>()?;
                                out.push(Batch {
                                    columns,
                                    types: types.clone(),
                                    rows: kept,
                                });
                            }
                        }
                    }
                }
                out
            }
            Plan::SetOp {
                op: SetOpKind::Union,
                all,
                ..
            } => {
                // A chain of UNIONs (`a UNION b UNION c …`, nested to the
                // left) runs as one n-ary union: each input once, one
                // de-duplication at the end, instead of de-duplicating
                // again at every level (quadratic in the chain's length).
                // Under a UNION, every UNION below can be merged; under a
                // UNION ALL, only UNION ALLs.
                let types = plan.output_types();
                let mut rights = Vec::new();
                let mut node = plan;
                while let Plan::SetOp {
                    op: SetOpKind::Union,
                    all: inner,
                    left,
                    right,
                } = node
                    && (!*all || *inner)
                {
                    rights.push(right.as_ref());
                    node = left.as_ref();
                }
                let mut inputs = Vec::new();
                for input in std::iter::once(node).chain(rights.into_iter().rev()) {
                    inputs.extend(self.query_batches(input, outer)?);
                }
                self.set_op(SetOpKind::Union, *all, inputs, Vec::new(), &types)?
            }
            Plan::SetOp {
                op,
                all,
                left,
                right,
            } => {
                let types = plan.output_types();
                let l = self.query_batches(left, outer)?;
                let r = self.query_batches(right, outer)?;
                self.set_op(*op, *all, l, r, &types)?
            }
        };
        self.memory.release_to(mark);
        self.charge(&out)?;
        Ok(out)
    }

    /// The rows of `generate_series(start, stop, step)`, in batches.
    fn series(
        &self,
        start: &Expr,
        stop: &Expr,
        step: Option<&Expr>,
        ty: DataType,
        outer: &[&[Value]],
    ) -> Result<Vec<Batch>> {
        let (a, b) = (
            self.eval_const(start, outer)?,
            self.eval_const(stop, outer)?,
        );
        let s = match step {
            Some(e) => self.eval_const(e, outer)?,
            None => Value::Int(1),
        };
        if a.is_null() || b.is_null() || s.is_null() {
            return Ok(Vec::new());
        }
        let zero_step = || {
            Error::new(
                kv::ErrorKind::InvalidParameterValue,
                "step size cannot equal zero",
            )
        };
        let mut values: Vec<Value> = Vec::new();
        let mut batches = Vec::new();
        let flush = |values: &mut Vec<Value>, batches: &mut Vec<Batch>| -> Result<()> {
            self.check_interrupt()?;
            let rows: Vec<Row> = values.drain(..).map(|v| vec![v]).collect();
            let made = batches_from_rows(&rows, &[ty]);
            self.charge(&made)?;
            batches.extend(made);
            Ok(())
        };
        match (a, b, s) {
            (Value::Int(a), Value::Int(b), Value::Int(s)) => {
                if s == 0 {
                    return Err(zero_step());
                }
                let mut v = a;
                while (s > 0 && v <= b) || (s < 0 && v >= b) {
                    values.push(Value::Int(v));
                    if values.len() == BATCH_ROWS {
                        flush(&mut values, &mut batches)?;
                    }
                    match v.checked_add(s) {
                        Some(n) => v = n,
                        None => break,
                    }
                }
            }
            (Value::Timestamp(a), Value::Timestamp(b), Value::Interval(iv)) => {
                if iv.span() == 0 {
                    return Err(zero_step());
                }
                let up = iv.span() > 0;
                let mut v = a;
                while (up && v <= b) || (!up && v >= b) {
                    values.push(Value::Timestamp(v));
                    if values.len() == BATCH_ROWS {
                        flush(&mut values, &mut batches)?;
                    }
                    v = crate::types::datetime::add_interval(v, &iv)?;
                }
            }
            (a, b, s) => {
                return Err(Error::internal(format!(
                    "generate_series over {a:?}, {b:?}, {s:?}"
                )));
            }
        }
        if !values.is_empty() {
            flush(&mut values, &mut batches)?;
        }
        Ok(batches)
    }

    fn sort(&self, batches: &[Batch], keys: &[SortKey], types: &[DataType]) -> Result<Batch> {
        let all = Batch::concat(batches, types)?;
        if all.rows <= 1 {
            return Ok(all);
        }
        let columns: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                values: sortable(&all.columns[k.column], types[k.column]),
                options: Some(SortOptions {
                    descending: k.desc,
                    nulls_first: k.nulls_first,
                }),
            })
            .collect();
        let indices = lexsort_to_indices(&columns, None).map_err(arrow_err)?;
        all.take(&indices)
    }

    fn aggregate(
        &self,
        batches: &[Batch],
        group_by: &[Expr],
        group_types: &[DataType],
        aggs: &[AggCall],
        outer: &[&[Value]],
        out_types: &[DataType],
    ) -> Result<Vec<Batch>> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Row, Vec<Acc>)> = Vec::new();
        if group_by.is_empty() {
            groups.push((Vec::new(), aggs.iter().map(Acc::new).collect()));
        }
        for b in batches {
            self.check_interrupt()?;
            // Group of each row.
            let gids: Vec<usize> = if group_by.is_empty() {
                Vec::new()
            } else {
                let keys: Vec<Vec<Value>> = group_by
                    .iter()
                    .zip(group_types)
                    .map(|(e, ty)| self.eval_values(e, b, outer, *ty))
                    .collect::<Result<_>>()?;
                let mut gids = Vec::with_capacity(b.rows);
                for i in 0..b.rows {
                    let row: Row = keys.iter().map(|k| k[i].clone()).collect();
                    let k = row_key(&row);
                    let g = match index.get(&k) {
                        Some(&g) => g,
                        None => {
                            self.memory
                                .charge(k.len() + row_size(&row) + 64 * aggs.len())?;
                            groups.push((row, aggs.iter().map(Acc::new).collect()));
                            index.insert(k, groups.len() - 1);
                            groups.len() - 1
                        }
                    };
                    gids.push(g);
                }
                gids
            };
            for (a, call) in aggs.iter().enumerate() {
                let Some(arg) = &call.arg else {
                    // count(*)
                    if group_by.is_empty() {
                        groups[0].1[a].add_count(b.rows as i64);
                    } else {
                        for &g in &gids {
                            groups[g].1[a].add_count(1);
                        }
                    }
                    continue;
                };
                let arr = self.eval_array(arg, b, outer, call.arg_ty)?;
                let group_of = |i: usize| if group_by.is_empty() { 0 } else { gids[i] };
                if let Some(ints) = arr.as_any().downcast_ref::<Int64Array>()
                    && !call.arg_ty.is_datetime()
                    && !call.distinct
                {
                    for i in 0..ints.len() {
                        if ints.is_valid(i) {
                            groups[group_of(i)].1[a].add_int(ints.value(i), call)?;
                        }
                    }
                } else if let Some(floats) = arr.as_any().downcast_ref::<Float64Array>()
                    && !call.distinct
                {
                    for i in 0..floats.len() {
                        if floats.is_valid(i) {
                            groups[group_of(i)].1[a].add(Value::Float(floats.value(i)), call)?;
                        }
                    }
                } else {
                    for i in 0..arr.len() {
                        groups[group_of(i)].1[a].add(value_at(&arr, i, call.arg_ty), call)?;
                    }
                }
            }
        }
        let rows: Vec<Row> = groups
            .into_iter()
            .map(|(mut key, accs)| {
                for (acc, call) in accs.into_iter().zip(aggs) {
                    key.push(acc.finish(call)?);
                }
                Ok(key)
            })
            .collect::<Result<_>>()?;
        Ok(batches_from_rows(&rows, out_types))
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        kind: JoinKind,
        left: &[Batch],
        right: &[Batch],
        lt: &[DataType],
        rt: &[DataType],
        left_keys: &[Expr],
        right_keys: &[Expr],
        residual: &Option<Expr>,
        outer: &[&[Value]],
    ) -> Result<Vec<Batch>> {
        let build = Batch::concat(right, rt)?;
        let mut types = lt.to_vec();
        types.extend_from_slice(rt);
        // Hash the build side on its keys (rows with a NULL key never match).
        let key_types: Vec<DataType> = vec![DataType::Unknown; right_keys.len()];
        let mut table: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        if !right_keys.is_empty() {
            let cols: Vec<Vec<Value>> = right_keys
                .iter()
                .zip(&key_types)
                .map(|(e, ty)| self.eval_values(e, &build, outer, *ty))
                .collect::<Result<_>>()?;
            for i in 0..build.rows {
                if let Some(k) = join_key(&cols, i) {
                    table.entry(k).or_default().push(i as u32);
                }
            }
            self.memory.charge(table.len() * 96 + build.rows * 4)?;
        }
        let mut right_matched = vec![false; build.rows];
        let mut out = Vec::new();
        // The output is charged as it grows, so that a join far larger than
        // the budget (a cross join of big tables) fails before it is built;
        // the caller charges the finished output again, so this is
        // released on the way out.
        let mark = self.memory.used();
        // A cross product goes a few left rows at a time, so that its
        // pairs are counted and cancellation is checked every
        // PAIRS_PER_STEP pairs.
        let pieces;
        let left = if right_keys.is_empty() && build.rows > PAIRS_PER_STEP / BATCH_ROWS {
            let step = PAIRS_PER_STEP / build.rows;
            pieces = left.iter().flat_map(|b| b.split(step)).collect::<Vec<_>>();
            &pieces[..]
        } else {
            left
        };
        for lb in left {
            self.check_interrupt()?;
            // The candidate pairs are held while the residual filters them;
            // what it keeps is held until the join ends.
            let held = self.memory.used();
            // Candidate pairs.
            let mut li: Vec<u32> = Vec::new();
            let mut ri: Vec<u32> = Vec::new();
            if right_keys.is_empty() {
                self.memory
                    .charge(lb.rows.saturating_mul(build.rows).saturating_mul(8))?;
                for i in 0..lb.rows as u32 {
                    for j in 0..build.rows as u32 {
                        li.push(i);
                        ri.push(j);
                    }
                }
            } else {
                let cols: Vec<Vec<Value>> = left_keys
                    .iter()
                    .zip(&key_types)
                    .map(|(e, ty)| self.eval_values(e, lb, outer, *ty))
                    .collect::<Result<_>>()?;
                for i in 0..lb.rows {
                    if let Some(k) = join_key(&cols, i)
                        && let Some(matches) = table.get(&k)
                    {
                        self.memory.charge(matches.len() * 8)?;
                        for &j in matches {
                            li.push(i as u32);
                            ri.push(j);
                        }
                    }
                }
            }
            let mut pairs = combine(lb, &build, &li, &ri, &types)?;
            self.memory.charge(pairs.memory())?;
            if let Some(r) = residual
                && pairs.rows > 0
            {
                let mask = self.eval_mask(r, &pairs, outer)?;
                let keep: Vec<usize> = (0..mask.len()).filter(|&i| mask.value(i)).collect();
                li = keep.iter().map(|&i| li[i]).collect();
                ri = keep.iter().map(|&i| ri[i]).collect();
                pairs = combine(lb, &build, &li, &ri, &types)?;
            }
            self.memory.release_to(held);
            self.memory.charge(pairs.memory())?;
            for &j in &ri {
                right_matched[j as usize] = true;
            }
            if pairs.rows > 0 {
                out.push(pairs);
            }
            if kind != JoinKind::Inner {
                // Left rows without a match, padded with NULLs.
                let mut matched = vec![false; lb.rows];
                for &i in &li {
                    matched[i as usize] = true;
                }
                let lonely: Vec<Option<u32>> = (0..lb.rows as u32)
                    .filter(|&i| !matched[i as usize])
                    .map(Some)
                    .collect();
                if !lonely.is_empty() {
                    let nulls: Vec<Option<u32>> = vec![None; lonely.len()];
                    out.push(combine_opt(lb, &build, &lonely, &nulls, &types)?);
                }
            }
        }
        if kind == JoinKind::Full {
            let lonely: Vec<Option<u32>> = (0..build.rows as u32)
                .filter(|&j| !right_matched[j as usize])
                .map(Some)
                .collect();
            if !lonely.is_empty() {
                let empty_left = Batch::concat(&[], lt)?;
                let nulls: Vec<Option<u32>> = vec![None; lonely.len()];
                out.push(combine_opt(&empty_left, &build, &nulls, &lonely, &types)?);
            }
        }
        self.memory.release_to(mark);
        Ok(out)
    }

    fn set_op(
        &self,
        op: SetOpKind,
        all: bool,
        left: Vec<Batch>,
        right: Vec<Batch>,
        types: &[DataType],
    ) -> Result<Vec<Batch>> {
        if op == SetOpKind::Union && all {
            let mut out = left;
            out.extend(right);
            return Ok(out);
        }
        let mut right_counts: HashMap<Vec<u8>, usize> = HashMap::new();
        if op != SetOpKind::Union {
            for b in &right {
                for k in b.row_keys() {
                    *right_counts.entry(k).or_default() += 1;
                }
            }
            self.memory.charge(right_counts.len() * 96)?;
        }
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        let sources: Vec<&Batch> = if op == SetOpKind::Union {
            left.iter().chain(right.iter()).collect()
        } else {
            left.iter().collect()
        };
        let mut out = Vec::new();
        for b in sources {
            let mut keep = Vec::new();
            for (i, k) in b.row_keys().into_iter().enumerate() {
                let emitted = seen.entry(k.clone()).or_default();
                let in_right = right_counts.get(&k).copied().unwrap_or(0);
                let take = match (op, all) {
                    (SetOpKind::Union, _) => *emitted == 0,
                    (SetOpKind::Intersect, false) => *emitted == 0 && in_right > 0,
                    (SetOpKind::Intersect, true) => *emitted < in_right,
                    (SetOpKind::Except, false) => *emitted == 0 && in_right == 0,
                    // EXCEPT ALL: the n-th copy survives when n > copies on the right.
                    (SetOpKind::Except, true) => {
                        *emitted += 1;
                        if *emitted > in_right {
                            keep.push(i as u32);
                        }
                        continue;
                    }
                };
                if take {
                    *emitted += 1;
                    keep.push(i as u32);
                }
            }
            self.memory.charge(keep.len() * 64)?;
            if !keep.is_empty() {
                out.push(b.take(&UInt32Array::from(keep))?);
            }
        }
        let _ = types;
        Ok(out)
    }
}

/// The hash key of row `i` over key columns; `None` if any key is NULL.
fn join_key(cols: &[Vec<Value>], i: usize) -> Option<Vec<u8>> {
    let mut k = Vec::new();
    for c in cols {
        if c[i].is_null() {
            return None;
        }
        encode_key_value(&mut k, &c[i]);
    }
    Some(k)
}

/// The joined rows for index pairs.
fn combine(
    left: &Batch,
    right: &Batch,
    li: &[u32],
    ri: &[u32],
    types: &[DataType],
) -> Result<Batch> {
    let l = left.take(&UInt32Array::from(li.to_vec()))?;
    let r = right.take(&UInt32Array::from(ri.to_vec()))?;
    let mut columns = l.columns;
    columns.extend(r.columns);
    Ok(Batch {
        columns,
        types: types.to_vec(),
        rows: li.len(),
    })
}

/// Like `combine`, with `None` indices giving NULLs.
fn combine_opt(
    left: &Batch,
    right: &Batch,
    li: &[Option<u32>],
    ri: &[Option<u32>],
    types: &[DataType],
) -> Result<Batch> {
    let side = |b: &Batch, idx: &[Option<u32>]| -> Result<Vec<ArrayRef>> {
        if idx.iter().all(Option::is_none) {
            return Ok(b
                .types
                .iter()
                .map(|t| new_null_array(&arrow_type(*t), idx.len()))
                .collect());
        }
        Ok(b.take(&UInt32Array::from(idx.to_vec()))?.columns)
    };
    let mut columns = side(left, li)?;
    columns.extend(side(right, ri)?);
    Ok(Batch {
        columns,
        types: types.to_vec(),
        rows: li.len(),
    })
}

impl Acc {
    /// `count(*)` over `n` rows.
    pub(super) fn add_count(&mut self, n: i64) {
        if let Acc::Count(c) = self {
            *c += n;
        }
    }

    /// Adds an integer without building a `Value` for the common cases.
    pub(super) fn add_int(&mut self, v: i64, call: &AggCall) -> Result<()> {
        match self {
            Acc::Count(c) => *c += 1,
            Acc::SumInt(s, any) => {
                *s += v as i128;
                *any = true;
            }
            Acc::AvgInt(s, n) => {
                *s += v as i128;
                *n += 1;
            }
            Acc::Extreme(Some(Value::Int(cur))) => {
                if (call.func == AggFunc::Min && v < *cur)
                    || (call.func == AggFunc::Max && v > *cur)
                {
                    *cur = v;
                }
            }
            other => other.add(Value::Int(v), call)?,
        }
        Ok(())
    }
}
