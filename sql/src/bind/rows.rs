//! Comparisons beyond two scalars: row constructors (`(a, b) < (c, d)`,
//! `(a, b) IN (…)`), `ANY`/`ALL` over an array's text form, and long
//! AND/OR chains built as balanced trees so that nothing nests deeply.

use super::*;
use crate::expr::CmpOp;

/// The most fields a row constructor may have in a comparison (PostgreSQL's
/// limit on a target list); an ordering comparison nests one level per
/// field.
const MAX_ROW_FIELDS: usize = 1664;

/// The fields of both sides when a comparison is between two row
/// constructors (`(a, b)`, `ROW(a, b)`); an error when only one side is,
/// or their lengths differ.
pub(super) fn row_operands<'e>(
    l: &'e ast::Expr,
    r: &'e ast::Expr,
) -> Result<Option<(&'e [ast::Expr], &'e [ast::Expr])>> {
    fn fields(e: &ast::Expr) -> Option<&[ast::Expr]> {
        match e {
            ast::Expr::Tuple(items) => Some(items),
            ast::Expr::Nested(inner) => fields(inner),
            _ => None,
        }
    }
    match (fields(l), fields(r)) {
        (None, None) => Ok(None),
        (Some(a), _) if a.len() > MAX_ROW_FIELDS => Err(Error::new(
            ErrorKind::ProgramLimitExceeded,
            format!("row expressions can have at most {MAX_ROW_FIELDS} entries"),
        )),
        (Some(a), Some(b)) if a.len() == b.len() && !a.is_empty() => Ok(Some((a, b))),
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::Syntax,
            "unequal number of entries in row expressions",
        )),
        _ => Err(Error::new(
            ErrorKind::UndefinedFunction,
            format!("operator does not exist: a row compared with a single value: {l} and {r}"),
        )),
    }
}

/// `a OR b OR …` as a balanced tree: an IN list of n items nests log2(n)
/// deep, so that every recursive walk of it (evaluation, planning,
/// EXPLAIN) stays shallow however long the list (OR is associative).
pub(super) fn balanced_or(items: Vec<Expr>) -> Option<Expr> {
    balanced(items, |a, b| Expr::Or(Box::new(a), Box::new(b)))
}

/// The AND of `items` as a balanced tree (see [`balanced_or`]).
pub(super) fn balanced_and(items: Vec<Expr>) -> Option<Expr> {
    balanced(items, |a, b| Expr::And(Box::new(a), Box::new(b)))
}

/// `items` joined pairwise by `join`, level by level: a tree of depth
/// log2(n), so that long lists cannot nest deeply.
fn balanced(mut items: Vec<Expr>, join: impl Fn(Expr, Expr) -> Expr) -> Option<Expr> {
    while items.len() > 1 {
        let mut pairs = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            pairs.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        items = pairs;
    }
    items.pop()
}

impl Binder<'_> {
    /// `x = ANY (a)` / `x <> ALL (a)` over an array held in its text form
    /// (the system catalog's array columns, `ARRAY(subquery)`): true when
    /// an element's text equals `x`'s, with SQL's NULL rules.
    pub(super) fn any_of_array_text(
        &mut self,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        array: &ast::Expr,
        all: bool,
        scope: &Scope,
    ) -> Result<Typed> {
        let negated = match (op, all) {
            (ast::BinaryOperator::Eq, false) => false,
            (ast::BinaryOperator::NotEq, true) => true,
            _ => bail!(
                FeatureNotSupported,
                "{op} {} over an array value is not supported yet (only = ANY and <> ALL)",
                if all { "ALL" } else { "ANY" }
            ),
        };
        let a = self.expr(array, scope)?;
        if !(a.1.is_string() || a.1 == DataType::Unknown) {
            bail!(
                FeatureNotSupported,
                "ANY/ALL over a value of type {} is not supported yet",
                a.1.pg_name()
            );
        }
        let a = self.text_operand(a)?;
        let x = self.expr(left, scope)?;
        let x = self.explicit_cast(x, DataType::Text)?.0;
        let contains = Expr::Func(crate::expr::Func::ArrayContains, vec![a, x], DataType::Bool);
        Ok((
            if negated {
                Expr::Not(Box::new(contains))
            } else {
                contains
            },
            DataType::Bool,
        ))
    }

    /// A comparison of two row constructors, `(a, b) op (c, d)`, as
    /// PostgreSQL defines it: `=` holds when every pair is equal, `<>`
    /// when any differs; `<`, `<=`, `>`, `>=` compare lexicographically
    /// (the first unequal pair decides). So `(a, b) IN ((1, 2), (3, 4))`
    /// is an OR of ANDs of equalities, which the planner turns into key
    /// lookups.
    pub(super) fn compare_rows(
        &mut self,
        (left, right): (&[ast::Expr], &[ast::Expr]),
        op: CmpOp,
        scope: &Scope,
    ) -> Result<Expr> {
        let pairs: Vec<(&ast::Expr, &ast::Expr)> = left.iter().zip(right).collect();
        let and = |a: Expr, b: Expr| Expr::And(Box::new(a), Box::new(b));
        let or = |a: Expr, b: Expr| Expr::Or(Box::new(a), Box::new(b));
        match op {
            CmpOp::Eq | CmpOp::NotEq => {
                let mut terms = Vec::new();
                for (a, b) in &pairs {
                    terms.push(self.compare(a, op, b, scope)?);
                }
                let joined = if op == CmpOp::Eq {
                    balanced_and(terms)
                } else {
                    balanced_or(terms)
                };
                joined.ok_or_else(|| Error::new(ErrorKind::Syntax, "empty row comparison"))
            }
            _ => {
                // (a1, …, an) < (b1, …, bn): a1 < b1 OR (a1 = b1 AND (…)),
                // the last pair compared with `op` itself (so `<=` admits
                // equal rows).
                let strict = match op {
                    CmpOp::Lt | CmpOp::LtEq => CmpOp::Lt,
                    _ => CmpOp::Gt,
                };
                let (last_a, last_b) = pairs[pairs.len() - 1];
                let mut acc = self.compare(last_a, op, last_b, scope)?;
                for (a, b) in pairs[..pairs.len() - 1].iter().rev() {
                    let first = self.compare(a, strict, b, scope)?;
                    let equal = self.compare(a, CmpOp::Eq, b, scope)?;
                    acc = or(first, and(equal, acc));
                }
                Ok(acc)
            }
        }
    }
}
