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
//! - otherwise → [`Access::Full`].
//!
//! The whole predicate is still applied to every row read, so the access
//! path only has to cover the matching rows, never to be exact. Values are
//! converted to the key column's type at execution (see `exec::keys`);
//! float key columns never get ranges, because float comparisons with other
//! numeric types are not exact.

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
                    || (from.is_string() && *to == DataType::Text) =>
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

/// Chooses how to read `table`'s rows for `predicate`.
pub fn choose_access(table: &Table, predicate: Option<&Expr>) -> Access {
    let Some(predicate) = predicate else {
        return Access::Full;
    };
    if table.primary_key.is_empty() {
        return Access::Full;
    }
    let conjuncts = predicate.conjuncts();
    let comparisons = column_comparisons(&conjuncts, table);
    let find = |col: usize, ops: &[CmpOp]| {
        comparisons
            .iter()
            .find(|(c, op, _)| *c == col && ops.contains(op))
            .map(|(_, op, v)| (*op, (*v).clone()))
    };
    let mut prefix = Vec::new();
    for &col in &table.primary_key {
        match find(col, &[CmpOp::Eq]) {
            Some((_, v)) => prefix.push(v),
            None => break,
        }
    }
    if prefix.len() == table.primary_key.len() {
        return Access::Point { key: prefix };
    }
    let next = table.primary_key[prefix.len()];
    let lower = find(next, &[CmpOp::Gt, CmpOp::GtEq]).map(|(op, v)| (v, op == CmpOp::GtEq));
    let upper = find(next, &[CmpOp::Lt, CmpOp::LtEq]).map(|(op, v)| (v, op == CmpOp::LtEq));
    if prefix.is_empty() && lower.is_none() && upper.is_none() {
        return Access::Full;
    }
    Access::Range {
        prefix,
        lower,
        upper,
    }
}
