//! Execution of bound statements over a transaction.
//!
//! Operators materialize their output (`Vec` of rows). Scans turn the plan's
//! access path into key ranges here, after evaluating the bound values
//! (constants and parameters) and converting them to the key column's type.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound as KeyBound;
use std::sync::Arc;

use kv::keycode::prefix_end;
use kv::keys;
use kv::{Error, ErrorKind, Result, bail};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use txn::{KeyRange, Placement, ScanPlacement, Txn};

use crate::catalog::{Table, encode_key_value};
use crate::expr::{Env, Expr};
use crate::plan::{Access, AggCall, AggFunc, Plan, Scan, SortKey};
use crate::rowcodec::{decode_row, encode_row};
use crate::types::cast::cast;
use crate::types::ops::numeric_div;
use crate::types::text::{check_int_range, int_out_of_range, to_float4};
use crate::types::{DataType, Value};

/// A row of values.
pub type Row = Vec<Value>;

/// A value converted to a key column's type.
enum KeyValue {
    /// Represents the value exactly.
    Exact(Value),
    /// A non-integral value for an integer column: no key equals it; ranges
    /// use the neighbouring integers.
    Between(Value, Value),
    /// No row can match (NULL).
    Never,
    /// Greater than every value of the column's type.
    AboveAll,
    /// Less than every value of the column's type.
    BelowAll,
}

fn key_value(v: Value, col: DataType) -> KeyValue {
    match (v, col) {
        (Value::Null, _) => KeyValue::Never,
        (Value::Int(i), DataType::Numeric(_)) => KeyValue::Exact(Value::Numeric(Decimal::from(i))),
        (Value::Numeric(d), t) if t.is_integer() => {
            let (floor, ceil) = (d.floor(), d.ceil());
            match (floor.to_i64(), ceil.to_i64()) {
                (Some(f), Some(c)) if f == c => KeyValue::Exact(Value::Int(f)),
                (Some(f), Some(c)) => KeyValue::Between(Value::Int(f), Value::Int(c)),
                _ if d.is_sign_negative() => KeyValue::BelowAll,
                _ => KeyValue::AboveAll,
            }
        }
        (v, _) => KeyValue::Exact(v),
    }
}

/// Runs bound statements against one transaction.
pub struct Executor<'a> {
    /// The transaction every read and write goes through.
    pub txn: &'a mut Txn,
    /// The statement's parameter values.
    pub params: &'a [Value],
}

impl Executor<'_> {
    fn env<'r>(&'r self, row: &'r [Value]) -> Env<'r> {
        Env {
            row,
            params: self.params,
        }
    }

    fn eval_const(&self, e: &Expr) -> Result<Value> {
        e.eval(&self.env(&[]))
    }

    /// Reads the rows an access path covers, with their keys.
    pub fn scan(&mut self, scan: &Scan) -> Result<Vec<(Vec<u8>, Row)>> {
        let table = &scan.table;
        let key_type = |i: usize| table.columns[table.primary_key[i]].ty;
        let entries = match &scan.access {
            Access::Full => {
                let range = txn::prefix_range(&table.row_prefix());
                self.txn.scan(&range, ScanPlacement::AllShards, None)?
            }
            Access::Point { key } => {
                let mut values = Vec::with_capacity(key.len());
                for (i, e) in key.iter().enumerate() {
                    match key_value(self.eval_const(e)?, key_type(i)) {
                        KeyValue::Exact(v) => values.push(v),
                        _ => return Ok(Vec::new()),
                    }
                }
                let (k, placement) = table.key_for(&values);
                match self.txn.get(&k, placement)? {
                    Some(v) => vec![(k, v)],
                    None => Vec::new(),
                }
            }
            Access::Range {
                prefix,
                lower,
                upper,
            } => {
                let mut key = table.row_prefix();
                let mut placement = ScanPlacement::AllShards;
                for (i, e) in prefix.iter().enumerate() {
                    let KeyValue::Exact(v) = key_value(self.eval_const(e)?, key_type(i)) else {
                        return Ok(Vec::new());
                    };
                    let start = key.len();
                    encode_key_value(&mut key, &v);
                    if i == 0 {
                        placement = ScanPlacement::Partitioned(keys::partition_hash(&key[start..]));
                    }
                }
                let col_ty = key_type(prefix.len());
                let with = |v: &Value| {
                    let mut k = key.clone();
                    encode_key_value(&mut k, v);
                    k
                };
                let after =
                    |k: Vec<u8>| prefix_end(&k).map_or(KeyBound::Unbounded, KeyBound::Included);
                let start = match lower {
                    None => KeyBound::Included(key.clone()),
                    Some((e, inclusive)) => match key_value(self.eval_const(e)?, col_ty) {
                        KeyValue::Exact(v) if *inclusive => KeyBound::Included(with(&v)),
                        KeyValue::Exact(v) => after(with(&v)),
                        KeyValue::Between(_, ceil) => KeyBound::Included(with(&ceil)),
                        KeyValue::BelowAll => KeyBound::Included(key.clone()),
                        KeyValue::Never | KeyValue::AboveAll => return Ok(Vec::new()),
                    },
                };
                let before =
                    |k: Vec<u8>| prefix_end(&k).map_or(KeyBound::Unbounded, KeyBound::Excluded);
                let end = match upper {
                    None => before(key.clone()),
                    Some((e, inclusive)) => match key_value(self.eval_const(e)?, col_ty) {
                        KeyValue::Exact(v) if *inclusive => before(with(&v)),
                        KeyValue::Exact(v) => KeyBound::Excluded(with(&v)),
                        KeyValue::Between(floor, _) => before(with(&floor)),
                        KeyValue::AboveAll => before(key.clone()),
                        KeyValue::Never | KeyValue::BelowAll => return Ok(Vec::new()),
                    },
                };
                let range = KeyRange { start, end };
                self.txn.scan(&range, placement, None)?
            }
        };
        entries
            .into_iter()
            .map(|(k, v)| Ok((k, decode_row(&v)?)))
            .collect()
    }

    /// Runs a query plan.
    pub fn query(&mut self, plan: &Plan) -> Result<Vec<Row>> {
        Ok(match plan {
            Plan::Unit => vec![Vec::new()],
            Plan::Scan(s) => self.scan(s)?.into_iter().map(|(_, r)| r).collect(),
            Plan::Filter { input, predicate } => {
                let rows = self.query(input)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    if predicate.is_true(&self.env(&r))? {
                        out.push(r);
                    }
                }
                out
            }
            Plan::Project { input, exprs } => {
                let rows = self.query(input)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let env = self.env(&r);
                    out.push(
                        exprs
                            .iter()
                            .map(|e| e.eval(&env))
                            .collect::<Result<Row>>()?,
                    );
                }
                out
            }
            Plan::Aggregate {
                input,
                group_by,
                aggs,
            } => {
                let rows = self.query(input)?;
                self.aggregate(rows, group_by, aggs)?
            }
            Plan::Distinct { input } => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for r in self.query(input)? {
                    if seen.insert(row_key(&r)) {
                        out.push(r);
                    }
                }
                out
            }
            Plan::Sort { input, keys } => {
                let mut rows = self.query(input)?;
                rows.sort_by(|a, b| compare_rows(a, b, keys));
                rows
            }
            Plan::Limit {
                input,
                limit,
                offset,
            } => {
                let rows = self.query(input)?;
                let count = |e: &Option<Expr>, what: &str| -> Result<Option<usize>> {
                    match e.as_ref().map(|e| self.eval_const(e)).transpose()? {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::Int(n)) if n < 0 => {
                            bail!(InvalidRowCount, "{what} must not be negative")
                        }
                        Some(Value::Int(n)) => Ok(Some(n as usize)),
                        Some(other) => Err(Error::internal(format!("{what} is {other:?}"))),
                    }
                };
                let skip = count(offset, "OFFSET")?.unwrap_or(0);
                let take = count(limit, "LIMIT")?.unwrap_or(usize::MAX);
                rows.into_iter().skip(skip).take(take).collect()
            }
        })
    }

    fn aggregate(&self, rows: Vec<Row>, group_by: &[Expr], aggs: &[AggCall]) -> Result<Vec<Row>> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Row, Vec<Acc>)> = Vec::new();
        if group_by.is_empty() {
            groups.push((Vec::new(), aggs.iter().map(Acc::new).collect()));
        }
        for r in &rows {
            let env = self.env(r);
            let g = if group_by.is_empty() {
                0
            } else {
                let key: Row = group_by
                    .iter()
                    .map(|e| e.eval(&env))
                    .collect::<Result<_>>()?;
                let k = row_key(&key);
                match index.get(&k) {
                    Some(&i) => i,
                    None => {
                        groups.push((key, aggs.iter().map(Acc::new).collect()));
                        index.insert(k, groups.len() - 1);
                        groups.len() - 1
                    }
                }
            };
            for (acc, call) in groups[g].1.iter_mut().zip(aggs) {
                let v = match &call.arg {
                    Some(e) => e.eval(&env)?,
                    None => Value::Bool(true),
                };
                acc.add(v, call)?;
            }
        }
        groups
            .into_iter()
            .map(|(mut key, accs)| {
                for (acc, call) in accs.into_iter().zip(aggs) {
                    key.push(acc.finish(call)?);
                }
                Ok(key)
            })
            .collect()
    }

    /// Validates and stores a new row (INSERT): types and lengths, NOT NULL,
    /// and primary-key uniqueness.
    fn write_new_row(&mut self, table: &Table, row: &Row) -> Result<()> {
        let bytes: Arc<[u8]> = Arc::from(encode_row(row));
        if table.primary_key.is_empty() {
            loop {
                let (key, placement) = table.generated_key();
                if self.txn.get(&key, placement)?.is_none() {
                    self.txn.put(key, bytes, placement);
                    return Ok(());
                }
            }
        }
        let (key, placement) = table.key_of_row(row);
        if self.txn.get(&key, placement)?.is_some() {
            return Err(unique_violation(table, row));
        }
        self.txn.put(key, bytes, placement);
        Ok(())
    }

    /// Converts computed values to the columns' types and checks NOT NULL.
    fn conform(&self, table: &Table, values: Vec<(Value, DataType)>) -> Result<Row> {
        let mut row = Vec::with_capacity(values.len());
        for ((v, ty), col) in values.into_iter().zip(&table.columns) {
            let v = cast(v, ty, col.ty, false)?;
            if v.is_null() && !col.nullable {
                bail!(
                    NotNullViolation,
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name,
                    table.name
                );
            }
            row.push(v);
        }
        Ok(row)
    }

    /// INSERT: returns the number of rows inserted.
    pub fn insert(&mut self, table: &Table, rows: &[Vec<(Expr, DataType)>]) -> Result<u64> {
        for r in rows {
            let env = self.env(&[]);
            let values = r
                .iter()
                .map(|(e, ty)| Ok((e.eval(&env)?, *ty)))
                .collect::<Result<Vec<_>>>()?;
            let row = self.conform(table, values)?;
            self.write_new_row(table, &row)?;
        }
        Ok(rows.len() as u64)
    }

    fn matching(&mut self, scan: &Scan, filter: &Option<Expr>) -> Result<Vec<(Vec<u8>, Row)>> {
        let rows = self.scan(scan)?;
        let Some(f) = filter else {
            return Ok(rows);
        };
        let mut out = Vec::new();
        for (k, r) in rows {
            if f.is_true(&self.env(&r))? {
                out.push((k, r));
            }
        }
        Ok(out)
    }

    /// UPDATE: returns the number of rows updated.
    pub fn update(
        &mut self,
        scan: &Scan,
        filter: &Option<Expr>,
        sets: &[(usize, Expr, DataType)],
    ) -> Result<u64> {
        let table = scan.table.clone();
        let rows = self.matching(scan, filter)?;
        for (key, old) in &rows {
            let mut values: Vec<(Value, DataType)> = old
                .iter()
                .cloned()
                .zip(table.columns.iter().map(|c| c.ty))
                .collect();
            let env = self.env(old);
            let computed = sets
                .iter()
                .map(|(c, e, ty)| Ok((*c, e.eval(&env)?, *ty)))
                .collect::<Result<Vec<_>>>()?;
            for (c, v, ty) in computed {
                values[c] = (v, ty);
            }
            let new = self.conform(&table, values)?;
            let placement = placement_of_key(key)?;
            let bytes: Arc<[u8]> = Arc::from(encode_row(&new));
            if table.primary_key.is_empty() {
                self.txn.put(key.clone(), bytes, placement);
                continue;
            }
            let (new_key, new_placement) = table.key_of_row(&new);
            if new_key != *key {
                self.txn.delete(key.clone(), placement);
                if self.txn.get(&new_key, new_placement)?.is_some() {
                    return Err(unique_violation(&table, &new));
                }
            }
            self.txn.put(new_key, bytes, new_placement);
        }
        Ok(rows.len() as u64)
    }

    /// DELETE: returns the number of rows deleted.
    pub fn delete(&mut self, scan: &Scan, filter: &Option<Expr>) -> Result<u64> {
        let rows = self.matching(scan, filter)?;
        for (key, _) in &rows {
            let placement = placement_of_key(key)?;
            self.txn.delete(key.clone(), placement);
        }
        Ok(rows.len() as u64)
    }
}

/// The placement of a row key: the hash of its first key component.
fn placement_of_key(key: &[u8]) -> Result<Placement> {
    let rest = &key[keys::INDEX_PREFIX_LEN..];
    let n = kv::keycode::component_len(rest)?;
    Ok(Placement::Partitioned(keys::partition_hash(&rest[..n])))
}

fn unique_violation(table: &Table, row: &Row) -> Error {
    let cols: Vec<&str> = table
        .primary_key
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = table
        .primary_key
        .iter()
        .map(|&i| {
            crate::types::text::format_value(&row[i], table.columns[i].ty)
                .unwrap_or_else(|| "null".into())
        })
        .collect();
    Error::new(
        ErrorKind::UniqueViolation,
        format!(
            "duplicate key value violates unique constraint \"{}\" (Key ({})=({}) already exists.)",
            table.pkey_name(),
            cols.join(", "),
            vals.join(", ")
        ),
    )
}

/// A canonical byte form of a row, for grouping and DISTINCT (numerically
/// equal values group together, as do -0.0 and 0.0).
fn row_key(row: &[Value]) -> Vec<u8> {
    let mut k = Vec::new();
    for v in row {
        encode_key_value(&mut k, v);
    }
    k
}

fn compare_rows(a: &Row, b: &Row, keys: &[SortKey]) -> Ordering {
    for k in keys {
        let (x, y) = (&a[k.column], &b[k.column]);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = x.cmp_non_null(y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// An aggregate's running state.
enum Acc {
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
    /// Average of integers or numerics: exact sum and count.
    AvgExact(Decimal, i64),
    /// Average of floats.
    AvgFloat(f64, i64),
    /// Values seen so far, for `DISTINCT` aggregates.
    Distinct(Box<Acc>, HashSet<Vec<u8>>),
}

impl Acc {
    fn new(call: &AggCall) -> Acc {
        let base = match (call.func, call.arg_ty) {
            (AggFunc::Count, _) => Acc::Count(0),
            (AggFunc::Sum, t) if t.is_integer() => Acc::SumInt(0, false),
            (AggFunc::Sum, t) if t.is_float() => Acc::SumFloat(None),
            (AggFunc::Sum, _) => Acc::SumNumeric(None),
            (AggFunc::Min | AggFunc::Max, _) => Acc::Extreme(None),
            (AggFunc::Avg, t) if t.is_float() => Acc::AvgFloat(0.0, 0),
            (AggFunc::Avg, _) => Acc::AvgExact(Decimal::ZERO, 0),
        };
        if call.distinct {
            Acc::Distinct(Box::new(base), HashSet::new())
        } else {
            base
        }
    }

    fn add(&mut self, v: Value, call: &AggCall) -> Result<()> {
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
            (_, v) => {
                return Err(Error::internal(format!(
                    "aggregate {} got {v:?}",
                    call.func.name()
                )));
            }
        }
        Ok(())
    }

    fn finish(self, call: &AggCall) -> Result<Value> {
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
            Acc::AvgExact(_, 0) | Acc::AvgFloat(_, 0) => Value::Null,
            Acc::AvgExact(s, n) => Value::Numeric(numeric_div(s, Decimal::from(n))?),
            Acc::AvgFloat(s, n) => Value::Float(s / n as f64),
        })
    }
}
