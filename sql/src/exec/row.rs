//! The lean row-at-a-time path, for plans that read at most one row by a
//! point get (and as the baseline the vectorized path is measured
//! against).

use std::collections::{HashMap, HashSet};

use kv::{Error, Result, bail};

use super::agg::Acc;
use super::{ExecCtx, Row, compare_rows, row_key, row_size};
use crate::expr::Expr;
use crate::plan::{AggCall, Plan};
use crate::types::Value;

impl ExecCtx<'_> {
    /// Runs a plan row at a time. Joins, set operations and VALUES go to
    /// the vectorized path.
    pub fn query_rows(&self, plan: &Plan, outer: &[&[Value]]) -> Result<Vec<Row>> {
        Ok(match plan {
            Plan::Unit => vec![Vec::new()],
            Plan::Scan(s) => self.scan(s, outer)?.into_iter().map(|(_, r)| r).collect(),
            Plan::Filter { input, predicate } => {
                let rows = self.query_rows(input, outer)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    if predicate.is_true(&self.env(&r, outer))? {
                        out.push(r);
                    }
                }
                out
            }
            Plan::Project { input, exprs, .. } => {
                let rows = self.query_rows(input, outer)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let env = self.env(&r, outer);
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
                ..
            } => {
                let rows = self.query_rows(input, outer)?;
                self.aggregate_rows(rows, group_by, aggs, outer)?
            }
            Plan::Distinct { input } => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for r in self.query_rows(input, outer)? {
                    if seen.insert(row_key(&r)) {
                        out.push(r);
                    }
                }
                out
            }
            Plan::Sort { input, keys } => {
                let mut rows = self.query_rows(input, outer)?;
                rows.sort_by(|a, b| compare_rows(a, b, keys));
                rows
            }
            Plan::Limit {
                input,
                limit,
                offset,
            } => {
                let rows = self.query_rows(input, outer)?;
                let (skip, take) = self.limit_offset(limit, offset, outer)?;
                rows.into_iter().skip(skip).take(take).collect()
            }
            Plan::Values { .. }
            | Plan::Series { .. }
            | Plan::System(_)
            | Plan::Unnest { .. }
            | Plan::Window { .. }
            | Plan::Join { .. }
            | Plan::LookupJoin { .. }
            | Plan::SetOp { .. } => self.query(plan, outer)?,
        })
    }

    /// Evaluates LIMIT and OFFSET: (rows to skip, rows to return).
    pub(super) fn limit_offset(
        &self,
        limit: &Option<Expr>,
        offset: &Option<Expr>,
        outer: &[&[Value]],
    ) -> Result<(usize, usize)> {
        let count = |e: &Option<Expr>, what: &str| -> Result<Option<usize>> {
            match e.as_ref().map(|e| self.eval_const(e, outer)).transpose()? {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Int(n)) if n < 0 => {
                    bail!(InvalidRowCount, "{what} must not be negative")
                }
                Some(Value::Int(n)) => Ok(Some(n as usize)),
                Some(other) => Err(Error::internal(format!("{what} is {other:?}"))),
            }
        };
        Ok((
            count(offset, "OFFSET")?.unwrap_or(0),
            count(limit, "LIMIT")?.unwrap_or(usize::MAX),
        ))
    }

    fn aggregate_rows(
        &self,
        rows: Vec<Row>,
        group_by: &[Expr],
        aggs: &[AggCall],
        outer: &[&[Value]],
    ) -> Result<Vec<Row>> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Row, Vec<Acc>)> = Vec::new();
        if group_by.is_empty() {
            groups.push((Vec::new(), aggs.iter().map(Acc::new).collect()));
        }
        for r in &rows {
            let env = self.env(r, outer);
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
                        self.memory
                            .charge(k.len() + row_size(&key) + 64 * aggs.len())?;
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
}
