//! Window functions: each call sorts the input rows by its partition and
//! order keys, walks the partitions, and gives every row its value; the
//! rows come out in their input order with one more column per call.

use std::cmp::Ordering;

use kv::{Result, bail};

use super::agg::Acc;
use super::{ExecCtx, Row, compare_rows};
use crate::plan::{AggCall, FrameBound, SortKey, WindowCall, WindowFunc};
use crate::types::{DataType, Value};

/// A partition's rows (input indices in window order) and where each
/// row's peer group (rows equal in the ORDER BY) starts and ends.
struct Partition<'a> {
    rows: &'a [usize],
    /// For each position, the first position of its peer group.
    peer_start: Vec<usize>,
    /// For each position, one past the last position of its peer group.
    peer_end: Vec<usize>,
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

impl ExecCtx<'_> {
    /// The input rows, each extended with one value per call.
    pub(super) fn window(
        &self,
        mut rows: Vec<Row>,
        calls: &[WindowCall],
        outer: &[&[Value]],
    ) -> Result<Vec<Row>> {
        let mut values: Vec<Vec<Value>> = Vec::with_capacity(calls.len());
        for call in calls {
            values.push(self.window_call(&rows, call, outer)?);
        }
        for (i, row) in rows.iter_mut().enumerate() {
            for v in &mut values {
                row.push(std::mem::replace(&mut v[i], Value::Null));
            }
        }
        Ok(rows)
    }

    /// One call's value for each input row.
    fn window_call(
        &self,
        rows: &[Row],
        call: &WindowCall,
        outer: &[&[Value]],
    ) -> Result<Vec<Value>> {
        let np = call.partition.len();
        // Per row: partition values then order values, and the arguments.
        let mut keys: Vec<Row> = Vec::with_capacity(rows.len());
        let mut args: Vec<Row> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            self.check_interrupt_at(i)?;
            let env = self.env(row, outer);
            let mut k = Vec::with_capacity(np + call.order.len());
            for e in call
                .partition
                .iter()
                .chain(call.order.iter().map(|(e, _, _)| e))
            {
                k.push(e.eval(&env)?);
            }
            keys.push(k);
            args.push(
                call.args
                    .iter()
                    .map(|e| e.eval(&env))
                    .collect::<Result<Row>>()?,
            );
        }
        let part_keys: Vec<SortKey> = (0..np)
            .map(|c| SortKey {
                column: c,
                desc: false,
                nulls_first: false,
            })
            .collect();
        let order_keys: Vec<SortKey> = call
            .order
            .iter()
            .enumerate()
            .map(|(j, (_, desc, nulls_first))| SortKey {
                column: np + j,
                desc: *desc,
                nulls_first: *nulls_first,
            })
            .collect();
        let all_keys: Vec<SortKey> = part_keys.iter().chain(&order_keys).cloned().collect();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| compare_rows(&keys[a], &keys[b], &all_keys));
        let mut out = vec![Value::Null; rows.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && compare_rows(&keys[order[start]], &keys[order[end]], &part_keys)
                    == Ordering::Equal
            {
                end += 1;
            }
            let slice = &order[start..end];
            let n = slice.len();
            let mut peer_start = vec![0; n];
            let mut peer_end = vec![n; n];
            let mut g = 0;
            for p in 1..=n {
                let same = p < n
                    && compare_rows(&keys[slice[p - 1]], &keys[slice[p]], &order_keys)
                        == Ordering::Equal;
                if !same {
                    for q in g..p {
                        peer_start[q] = g;
                        peer_end[q] = p;
                    }
                    g = p;
                }
            }
            let part = Partition {
                rows: slice,
                peer_start,
                peer_end,
            };
            self.window_partition(&part, call, &args, &mut out)?;
            start = end;
        }
        Ok(out)
    }

    /// The frame of position `p` of a partition of `n` rows: `[lo, hi)`.
    fn frame(call: &WindowCall, part: &Partition<'_>, p: usize) -> (usize, usize) {
        let n = part.rows.len();
        if call.order.is_empty() && !call.frame.rows {
            // RANGE without ORDER BY: every row is a peer of every other.
            return (0, n);
        }
        let k = |k: u64| usize::try_from(k).unwrap_or(usize::MAX);
        let lo = match call.frame.start {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(o) => p.saturating_sub(k(o)),
            FrameBound::CurrentRow if call.frame.rows => p,
            FrameBound::CurrentRow => part.peer_start[p],
            FrameBound::Following(o) => p.saturating_add(k(o)).min(n),
            FrameBound::UnboundedFollowing => n,
        };
        let hi = match call.frame.end {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(o) => (p + 1).saturating_sub(k(o)),
            FrameBound::CurrentRow if call.frame.rows => p + 1,
            FrameBound::CurrentRow => part.peer_end[p],
            FrameBound::Following(o) => (p + 1).saturating_add(k(o)).min(n),
            FrameBound::UnboundedFollowing => n,
        };
        (lo, hi.max(lo))
    }

    fn window_partition(
        &self,
        part: &Partition<'_>,
        call: &WindowCall,
        args: &[Row],
        out: &mut [Value],
    ) -> Result<()> {
        let n = part.rows.len();
        let arg = |p: usize, j: usize| args[part.rows[p]].get(j).cloned().unwrap_or(Value::Null);
        // A frame that starts at the partition's first row only grows:
        // one running accumulator serves every row (a running sum is
        // linear, not quadratic, in the partition's size).
        let mut running: Option<(Acc, usize)> = match (call.func, &call.agg) {
            (WindowFunc::Agg(_), Some(agg))
                if call.frame.start == FrameBound::UnboundedPreceding =>
            {
                Some((Acc::new(agg), 0))
            }
            _ => None,
        };
        let mut dense = 0i64;
        for p in 0..n {
            self.check_interrupt_at(p)?;
            let row = part.rows[p];
            let rank = part.peer_start[p] as i64 + 1;
            if part.peer_start[p] == p {
                dense += 1;
            }
            out[row] = match call.func {
                WindowFunc::RowNumber => Value::Int(p as i64 + 1),
                WindowFunc::Rank => Value::Int(rank),
                WindowFunc::DenseRank => Value::Int(dense),
                WindowFunc::PercentRank => Value::Float(if n > 1 {
                    (rank - 1) as f64 / (n - 1) as f64
                } else {
                    0.0
                }),
                WindowFunc::CumeDist => Value::Float(part.peer_end[p] as f64 / n as f64),
                WindowFunc::Ntile => {
                    let buckets = match int(&arg(p, 0)) {
                        Some(b) if b > 0 => b as usize,
                        Some(_) => bail!(
                            InvalidArgumentForNtile,
                            "argument of ntile must be greater than zero"
                        ),
                        None => {
                            out[row] = Value::Null;
                            continue;
                        }
                    };
                    // The first n % buckets buckets get one row more.
                    let size = n / buckets;
                    let extra = n % buckets;
                    let big = extra * (size + 1);
                    let bucket = if p < big {
                        p / (size + 1)
                    } else {
                        extra + (p - big) / size.max(1)
                    };
                    Value::Int(bucket as i64 + 1)
                }
                WindowFunc::Lag | WindowFunc::Lead => {
                    let offset = match call.args.len() {
                        1 => Some(1),
                        _ => int(&arg(p, 1)),
                    };
                    match offset {
                        None => Value::Null,
                        Some(k) => {
                            let target = if call.func == WindowFunc::Lag {
                                (p as i64).checked_sub(k)
                            } else {
                                (p as i64).checked_add(k)
                            };
                            if let Some(t) = target.filter(|t| (0..n as i64).contains(t)) {
                                arg(t as usize, 0)
                            } else if call.args.len() > 2 {
                                arg(p, 2)
                            } else {
                                Value::Null
                            }
                        }
                    }
                }
                WindowFunc::FirstValue | WindowFunc::LastValue | WindowFunc::NthValue => {
                    let (lo, hi) = Self::frame(call, part, p);
                    let at = match call.func {
                        WindowFunc::FirstValue => Some(lo),
                        WindowFunc::LastValue => hi.checked_sub(1),
                        _ => match int(&arg(p, 1)) {
                            Some(k) if k > 0 => {
                                usize::try_from(k - 1).ok().and_then(|k| lo.checked_add(k))
                            }
                            Some(_) => bail!(
                                InvalidArgumentForNthValue,
                                "argument of nth_value must be greater than zero"
                            ),
                            None => None,
                        },
                    };
                    match at {
                        Some(i) if i >= lo && i < hi => arg(i, 0),
                        _ => Value::Null,
                    }
                }
                WindowFunc::Agg(_) => {
                    let agg = call
                        .agg
                        .as_ref()
                        .expect("aggregate windows carry their call");
                    let (lo, hi) = Self::frame(call, part, p);
                    if let Some((acc, added)) = &mut running {
                        while *added < hi {
                            acc.add(Self::agg_input(&args[part.rows[*added]]), agg)?;
                            *added += 1;
                        }
                        out[row] = Self::agg_output(acc.clone().finish(agg)?, agg);
                        continue;
                    }
                    // Rows whose frame is the same as the previous row's
                    // (peers, or a frame fixed at the partition) share it.
                    if p > 0 {
                        let prev = Self::frame(call, part, p - 1);
                        if prev == (lo, hi) {
                            out[row] = out[part.rows[p - 1]].clone();
                            continue;
                        }
                    }
                    self.frame_aggregate(agg, part, args, lo, hi)?
                }
            };
        }
        Ok(())
    }

    fn frame_aggregate(
        &self,
        agg: &AggCall,
        part: &Partition<'_>,
        args: &[Row],
        lo: usize,
        hi: usize,
    ) -> Result<Value> {
        let mut acc = Acc::new(agg);
        for (i, &r) in part.rows[lo..hi].iter().enumerate() {
            self.check_interrupt_at(i)?;
            acc.add(Self::agg_input(&args[r]), agg)?;
        }
        Ok(Self::agg_output(acc.finish(agg)?, agg))
    }

    /// What a row adds to a window aggregate (`count(*)` counts rows).
    fn agg_input(args: &Row) -> Value {
        match args.first() {
            Some(v) => v.clone(),
            None => Value::Bool(true),
        }
    }

    /// A finished window aggregate: `count` over no rows is 0.
    fn agg_output(v: Value, agg: &AggCall) -> Value {
        match v {
            Value::Null if agg.func == crate::plan::AggFunc::Count && agg.ty == DataType::Int8 => {
                Value::Int(0)
            }
            v => v,
        }
    }
}
