//! Reading a table through its access path: the plan's bound values are
//! evaluated, converted to the key columns' types and encoded into key
//! ranges.

use std::ops::Bound as KeyBound;

use kv::keycode::{component_len, prefix_end};
use kv::keys;
use kv::{Error, Result};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use txn::KeyRange;

use super::{ExecCtx, Row};
use crate::catalog::encode_key_value;
use crate::expr::Expr;
use crate::plan::{Access, Scan};
use crate::rowcodec::decode_row_of;
use crate::types::{DataType, Value};

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

/// A key range over `prefix` (already holding the equal leading columns)
/// with bounds on the next column; `None` when no key can match.
fn bounded_range(
    ctx: &ExecCtx<'_>,
    outer: &[&[Value]],
    key: Vec<u8>,
    next_type: DataType,
    lower: &Option<(Expr, bool)>,
    upper: &Option<(Expr, bool)>,
) -> Result<Option<KeyRange>> {
    let with = |v: &Value| {
        let mut k = key.clone();
        encode_key_value(&mut k, v);
        k
    };
    let after = |k: Vec<u8>| prefix_end(&k).map_or(KeyBound::Unbounded, KeyBound::Included);
    let before = |k: Vec<u8>| prefix_end(&k).map_or(KeyBound::Unbounded, KeyBound::Excluded);
    let start = match lower {
        None => KeyBound::Included(key.clone()),
        Some((e, inclusive)) => match key_value(ctx.eval_const(e, outer)?, next_type) {
            KeyValue::Exact(v) if *inclusive => KeyBound::Included(with(&v)),
            KeyValue::Exact(v) => after(with(&v)),
            KeyValue::Between(_, ceil) => KeyBound::Included(with(&ceil)),
            KeyValue::BelowAll => KeyBound::Included(key.clone()),
            KeyValue::Never | KeyValue::AboveAll => return Ok(None),
        },
    };
    let end = match upper {
        // NULLs sort after every value: a lower bound alone must not
        // reach them (`b >= 1` is not true of NULL).
        None if lower.is_some() => KeyBound::Excluded(with(&Value::Null)),
        None => before(key.clone()),
        Some((e, inclusive)) => match key_value(ctx.eval_const(e, outer)?, next_type) {
            KeyValue::Exact(v) if *inclusive => before(with(&v)),
            KeyValue::Exact(v) => KeyBound::Excluded(with(&v)),
            KeyValue::Between(floor, _) => before(with(&floor)),
            KeyValue::AboveAll => before(key.clone()),
            KeyValue::Never | KeyValue::BelowAll => return Ok(None),
        },
    };
    Ok(Some(KeyRange { start, end }))
}

impl ExecCtx<'_> {
    /// Evaluates a row-independent expression (key bounds, LIMIT).
    pub(super) fn eval_const(&self, e: &Expr, outer: &[&[Value]]) -> Result<Value> {
        e.eval(&self.env(&[], outer))
    }

    /// Appends the key encodings of equality values to `key`; `None` when
    /// some value can equal no key (NULL, fractional for an integer key).
    /// Returns the partition hash of the first value when `first` is set.
    fn encode_prefix(
        &self,
        outer: &[&[Value]],
        key: &mut Vec<u8>,
        values: &[Expr],
        types: &[DataType],
    ) -> Result<Option<Option<u64>>> {
        let mut hash = None;
        for (i, (e, ty)) in values.iter().zip(types).enumerate() {
            let KeyValue::Exact(v) = key_value(self.eval_const(e, outer)?, *ty) else {
                return Ok(None);
            };
            let start = key.len();
            encode_key_value(key, &v);
            if i == 0 {
                hash = Some(keys::partition_hash(&key[start..]));
            }
        }
        Ok(Some(hash))
    }

    /// Reads the rows an access path covers, with their keys.
    pub fn scan(&self, scan: &Scan, outer: &[&[Value]]) -> Result<Vec<(Vec<u8>, Row)>> {
        let entries = self.scan_raw(scan, outer)?;
        let width = scan.table.columns.len();
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            out.push((k, decode_row_of(&v, width)?));
        }
        Ok(out)
    }

    /// Reads the stored rows an access path covers, undecoded.
    pub fn scan_raw(&self, scan: &Scan, outer: &[&[Value]]) -> Result<Vec<txn::Entry>> {
        self.scan_raw_limited(scan, outer, None)
    }

    /// Like [`ExecCtx::scan_raw`], stopping after `limit` rows in the scan's
    /// order (only that part of the range joins the read set).
    pub fn scan_raw_limited(
        &self,
        scan: &Scan,
        outer: &[&[Value]],
        limit: Option<usize>,
    ) -> Result<Vec<txn::Entry>> {
        let reverse = scan.reverse;
        let table = &scan.table;
        let pk_types: Vec<DataType> = table
            .primary_key
            .iter()
            .map(|&c| table.columns[c].ty)
            .collect();
        let entries = match &scan.access {
            Access::Full => {
                let range = txn::prefix_range(&table.row_prefix());
                self.with_txn(|t| {
                    t.scan_ordered(&range, table.scan_placement(None), limit, reverse)
                })?
            }
            Access::Point { key } => {
                let mut values = Vec::with_capacity(key.len());
                for (e, ty) in key.iter().zip(&pk_types) {
                    match key_value(self.eval_const(e, outer)?, *ty) {
                        KeyValue::Exact(v) => values.push(v),
                        _ => return Ok(Vec::new()),
                    }
                }
                let (k, placement) = table.key_for(&values);
                match self.with_txn(|t| t.get(&k, placement))? {
                    Some(v) => vec![(k, v)],
                    None => Vec::new(),
                }
            }
            Access::Points { keys } => {
                let mut wanted = Vec::with_capacity(keys.len());
                'keys: for key in keys {
                    let mut values = Vec::with_capacity(key.len());
                    for (e, ty) in key.iter().zip(&pk_types) {
                        match key_value(self.eval_const(e, outer)?, *ty) {
                            KeyValue::Exact(v) => values.push(v),
                            _ => continue 'keys,
                        }
                    }
                    wanted.push(table.key_for(&values));
                }
                // Key order (the order the access promises), each key once.
                wanted.sort_by(|a, b| a.0.cmp(&b.0));
                wanted.dedup_by(|a, b| a.0 == b.0);
                if reverse {
                    wanted.reverse();
                }
                let mut found = Vec::new();
                for (k, placement) in wanted {
                    if let Some(v) = self.with_txn(|t| t.get(&k, placement))? {
                        found.push((k, v));
                        if limit.is_some_and(|l| found.len() >= l) {
                            break;
                        }
                    }
                }
                found
            }
            Access::Range {
                prefix,
                lower,
                upper,
            } => {
                let mut key = table.row_prefix();
                let Some(hash) = self.encode_prefix(outer, &mut key, prefix, &pk_types)? else {
                    return Ok(Vec::new());
                };
                let placement = table.scan_placement(hash);
                let Some(range) =
                    bounded_range(self, outer, key, pk_types[prefix.len()], lower, upper)?
                else {
                    return Ok(Vec::new());
                };
                self.with_txn(|t| t.scan_ordered(&range, placement, limit, reverse))?
            }
            Access::Index {
                index,
                prefix,
                lower,
                upper,
                partition,
            } => {
                let types: Vec<DataType> =
                    index.columns.iter().map(|&c| table.columns[c].ty).collect();
                let mut key = table.index_prefix(index);
                if self
                    .encode_prefix(outer, &mut key, prefix, &types)?
                    .is_none()
                {
                    return Ok(Vec::new());
                }
                let placement = match partition {
                    None => table.scan_placement(None),
                    Some(e) => match key_value(self.eval_const(e, outer)?, pk_types[0]) {
                        KeyValue::Exact(v) => {
                            let mut k = Vec::new();
                            encode_key_value(&mut k, &v);
                            table.scan_placement(Some(keys::partition_hash(&k)))
                        }
                        _ => return Ok(Vec::new()),
                    },
                };
                let next = types
                    .get(prefix.len())
                    .copied()
                    .unwrap_or(DataType::Unknown);
                let Some(range) = bounded_range(self, outer, key, next, lower, upper)? else {
                    return Ok(Vec::new());
                };
                let index_entries =
                    self.with_txn(|t| t.scan_ordered(&range, placement, limit, reverse))?;
                let mut rows = Vec::with_capacity(index_entries.len());
                for (entry, _) in index_entries {
                    // Skip the prefix and the indexed values: the rest is the
                    // row's primary key.
                    let mut rest = &entry[keys::INDEX_PREFIX_LEN..];
                    for _ in &index.columns {
                        let n = component_len(rest)?;
                        rest = &rest[n..];
                    }
                    let mut row_key = table.row_prefix();
                    row_key.extend_from_slice(rest);
                    let placement = table.placement_of_key(&row_key)?;
                    match self.with_txn(|t| t.get(&row_key, placement))? {
                        Some(v) => rows.push((row_key, v)),
                        None => {
                            return Err(Error::internal(format!(
                                "index {} has an entry for a missing row",
                                index.name
                            )));
                        }
                    }
                }
                rows
            }
        };
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
        self.memory.charge(bytes)?;
        Ok(entries)
    }
}
