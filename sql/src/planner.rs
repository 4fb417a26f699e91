//! Access-path selection: turning predicates on the primary key into
//! key-range plans.
//!
//! From the WHERE clause's top-level conjuncts of the form
//! `key_column <op> value` (value independent of the row: constants and
//! parameters), the planner takes equalities on a prefix of the primary key
//! and then at most a lower and an upper bound on the next key column:
//!
//! - every key column fixed → [`Access::Point`] (one point read);
//! - a prefix fixed and/or the next column bounded → [`Access::Range`] (one
//!   range scan; on one shard when the first key column is fixed, since rows
//!   are partitioned by it);
//! - otherwise the same test on the columns of each secondary index →
//!   [`Access::Index`] (a range of index entries, each leading to its row;
//!   on one shard when the predicate also fixes the first key column);
//! - otherwise → [`Access::Full`].
//!
//! The whole predicate is applied to every row read, so the access path
//! only has to cover the matching rows. Once a query is planned,
//! [`residual`] drops the conjuncts the chosen path enforces exactly (so a
//! `LIMIT` can stop the scan early). Values are converted to the key
//! column's type at execution (see `exec::scan`); float key columns never
//! get ranges, because float comparisons with other numeric types are not
//! exact.

use crate::catalog::Table;
use crate::expr::{CmpOp, Expr};
use crate::plan::Access;
use crate::types::DataType;

/// The key column a side of a comparison reads, if it is a column of the
/// key, possibly under an exact widening cast.
fn key_column(e: &Expr, table: &Table) -> Option<usize> {
    let col = match e {
        Expr::Column(c) => *c,
        Expr::Cast {
            expr,
            from,
            to,
            explicit: false,
        } => match expr.as_ref() {
            Expr::Column(c)
                if (from.is_integer()
                    && (to.is_integer() || matches!(to, DataType::Numeric(_))))
                    || (from.is_string()
                        && matches!(to, DataType::Text | DataType::Varchar(None))) =>
            {
                *c
            }
            _ => return None,
        },
        _ => return None,
    };
    let ty = table.columns.get(col)?.ty;
    (!ty.is_float()).then_some(col)
}

/// Comparisons `column op value` among the conjuncts, normalized so the
/// column is on the left.
fn column_comparisons<'a>(conjuncts: &[&'a Expr], table: &Table) -> Vec<(usize, CmpOp, &'a Expr)> {
    let mut out = Vec::new();
    for c in conjuncts {
        if let Expr::Cmp(op, l, r) = c {
            if let Some(col) = key_column(l, table) {
                if r.is_row_independent() && !operand_is_float(r) {
                    out.push((col, *op, r.as_ref()));
                }
            } else if let Some(col) = key_column(r, table)
                && l.is_row_independent()
                && !operand_is_float(l)
            {
                out.push((col, op.flip(), l.as_ref()));
            }
        }
    }
    out
}

/// Comparisons done in float arithmetic cannot be turned into exact keys.
fn operand_is_float(e: &Expr) -> bool {
    match e {
        Expr::Const(crate::types::Value::Float(_)) => true,
        Expr::Cast { to, .. } => to.is_float(),
        Expr::Arith { ty, .. } | Expr::Neg(_, ty) => ty.is_float(),
        _ => false,
    }
}

/// Finds a comparison of a column with one of the given operators.
type FindComparison<'a> = dyn Fn(usize, &[CmpOp]) -> Option<(CmpOp, Expr)> + 'a;

/// Equalities on a prefix of `columns`, then bounds on the next column.
type KeyRange = (Vec<Expr>, Option<(Expr, bool)>, Option<(Expr, bool)>);

fn key_range(columns: &[usize], find: &FindComparison<'_>) -> KeyRange {
    let mut prefix = Vec::new();
    for &col in columns {
        match find(col, &[CmpOp::Eq]) {
            Some((_, v)) => prefix.push(v),
            None => break,
        }
    }
    let Some(&next) = columns.get(prefix.len()) else {
        return (prefix, None, None);
    };
    let lower = find(next, &[CmpOp::Gt, CmpOp::GtEq]).map(|(op, v)| (v, op == CmpOp::GtEq));
    let upper = find(next, &[CmpOp::Lt, CmpOp::LtEq]).map(|(op, v)| (v, op == CmpOp::LtEq));
    (prefix, lower, upper)
}

/// The most branches an OR may have to be read as point gets.
const MAX_POINTS: usize = 1000;

/// When one conjunct is an OR whose branches (each with the other
/// conjuncts) fix every primary-key column by equality, and the other
/// conjuncts alone do not: the key of each branch. Branches that repeat a
/// key are read once (the executor drops duplicate keys).
fn point_keys(table: &Table, conjuncts: &[&Expr]) -> Option<Vec<Vec<Expr>>> {
    if table.primary_key.is_empty() {
        return None;
    }
    for (i, c) in conjuncts.iter().enumerate() {
        if !matches!(c, Expr::Or(..)) {
            continue;
        }
        let branches = c.disjuncts();
        if branches.len() > MAX_POINTS {
            continue;
        }
        let others: Vec<&Expr> = conjuncts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| *e)
            .collect();
        let mut keys = Vec::with_capacity(branches.len());
        for b in &branches {
            let mut parts = b.conjuncts();
            parts.extend(others.iter().copied());
            let comparisons = column_comparisons(&parts, table);
            let key: Option<Vec<Expr>> = table
                .primary_key
                .iter()
                .map(|&col| {
                    comparisons
                        .iter()
                        .find(|(c, op, _)| *c == col && *op == CmpOp::Eq)
                        .map(|(_, _, v)| (*v).clone())
                })
                .collect();
            keys.push(key?);
        }
        return Some(keys);
    }
    None
}

/// Chooses how to read `table`'s rows for `predicate`: the primary key when
/// the predicate fixes its first column, else the secondary index whose
/// leading columns it constrains most, else a full scan.
pub fn choose_access(table: &Table, predicate: Option<&Expr>) -> Access {
    let Some(predicate) = predicate else {
        return Access::Full;
    };
    let conjuncts = predicate.conjuncts();
    let comparisons = column_comparisons(&conjuncts, table);
    let find = |col: usize, ops: &[CmpOp]| {
        comparisons
            .iter()
            .find(|(c, op, _)| *c == col && ops.contains(op))
            .map(|(_, op, v)| (*op, (*v).clone()))
    };
    let mut pk_range = None;
    if !table.primary_key.is_empty() {
        let (prefix, lower, upper) = key_range(&table.primary_key, &find);
        if prefix.len() == table.primary_key.len() {
            return Access::Point { key: prefix };
        }
        // Not fixed by the conjuncts alone: perhaps by each branch of an OR.
        if let Some(keys) = point_keys(table, &conjuncts) {
            return Access::Points { keys };
        }
        if !prefix.is_empty() || lower.is_some() || upper.is_some() {
            pk_range = Some(Access::Range {
                prefix,
                lower,
                upper,
            });
        }
    }
    let partition = table
        .primary_key
        .first()
        .and_then(|&c| find(c, &[CmpOp::Eq]))
        .map(|(_, v)| v);
    let best = table
        .indexes
        .iter()
        .map(|index| (index, key_range(&index.columns, &find)))
        .filter(|(_, (prefix, lower, upper))| {
            !prefix.is_empty() || lower.is_some() || upper.is_some()
        })
        .max_by_key(|(index, (prefix, lower, upper))| {
            (
                prefix.len(),
                lower.is_some() as usize + upper.is_some() as usize,
                index.unique,
                std::cmp::Reverse(index.id),
            )
        });
    // An index wins when it fixes more leading columns than the primary
    // key does (each entry costs one more read, but fewer rows are read).
    let pk_prefix = match &pk_range {
        Some(Access::Range { prefix, .. }) => prefix.len(),
        _ => 0,
    };
    match best {
        Some((index, (prefix, lower, upper)))
            if prefix.len() > pk_prefix || (pk_range.is_none() && prefix.len() == pk_prefix) =>
        {
            Access::Index {
                index: index.clone(),
                prefix,
                lower,
                upper,
                partition,
            }
        }
        _ => pk_range.unwrap_or(Access::Full),
    }
}

/// The part of `predicate` that rows read through `access` still have to
/// be checked against: without the comparisons the key range enforces
/// exactly (equalities of the fixed prefix and the bounds used on the next
/// column). `CHAR(n)` columns, compared ignoring trailing blanks, keep
/// their conjuncts.
pub fn residual(table: &Table, access: &Access, predicate: Expr) -> Option<Expr> {
    let none = None;
    let (columns, prefix, lower, upper) = match access {
        Access::Point { key } => (&table.primary_key, key, &none, &none),
        Access::Range {
            prefix,
            lower,
            upper,
        } => (&table.primary_key, prefix, lower, upper),
        Access::Index {
            index,
            prefix,
            lower,
            upper,
            ..
        } => (&index.columns, prefix, lower, upper),
        // Each row read is checked against the whole predicate.
        Access::Full | Access::Points { .. } => return Some(predicate),
    };
    // (column, operator, value) of each comparison the access path applies.
    let mut slots: Vec<(usize, CmpOp, &Expr)> = Vec::new();
    for (col, v) in columns.iter().zip(prefix.iter()) {
        slots.push((*col, CmpOp::Eq, v));
    }
    if let Some(&next) = columns.get(prefix.len()) {
        if let Some((v, inclusive)) = lower {
            slots.push((next, if *inclusive { CmpOp::GtEq } else { CmpOp::Gt }, v));
        }
        if let Some((v, inclusive)) = upper {
            slots.push((next, if *inclusive { CmpOp::LtEq } else { CmpOp::Lt }, v));
        }
    }
    let mut used = vec![false; slots.len()];
    let kept: Vec<Expr> = predicate
        .conjuncts()
        .into_iter()
        .filter(|c| {
            let Some(&(col, op, v)) = column_comparisons(&[c], table).first() else {
                return true;
            };
            if matches!(table.columns[col].ty, DataType::Char(_)) {
                return true;
            }
            let slot = slots
                .iter()
                .enumerate()
                .position(|(i, s)| !used[i] && s.0 == col && s.1 == op && s.2 == v);
            match slot {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            }
        })
        .cloned()
        .collect();
    Expr::and_all(kept)
}
