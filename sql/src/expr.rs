//! Bound expressions: typed, resolved against a row layout, ready to
//! evaluate.
//!
//! The binder produces these from sqlparser's AST. Column references are
//! positions in the input row; `$n` parameters are positions in the
//! parameter list; operands of operators already have matching types (the
//! binder inserted casts). Evaluation follows SQL's three-valued logic.

use std::cmp::Ordering;
use std::fmt::Write as _;

use kv::{Error, ErrorKind, Result};

use crate::types::cast::cast;
use crate::types::ops::{ArithOp, arith, negate};
use crate::types::text::format_value;
use crate::types::{DataType, Value};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CmpOp {
    /// The SQL spelling.
    pub fn symbol(&self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }

    /// The operator with its operands swapped (`a < b` ⇔ `b > a`).
    pub fn flip(&self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
            other => *other,
        }
    }

    fn holds(&self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::NotEq => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::LtEq => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::GtEq => o != Ordering::Less,
        }
    }
}

/// A scalar function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `abs(x)`
    Abs,
    /// `length(s)` / `char_length(s)`
    Length,
    /// `lower(s)`
    Lower,
    /// `upper(s)`
    Upper,
    /// `version()`
    Version,
}

impl Func {
    /// The SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Length => "length",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Version => "version",
        }
    }
}

/// A bound expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant.
    Const(Value),
    /// A column of the input row.
    Column(usize),
    /// A `$n` parameter (0-based here).
    Param(usize),
    /// A conversion (explicit casts truncate over-long strings).
    Cast {
        /// The operand.
        expr: Box<Expr>,
        /// Its type.
        from: DataType,
        /// The target type.
        to: DataType,
        /// True for `CAST`/`::`.
        explicit: bool,
    },
    /// Arithmetic on operands of type `ty`, producing `ty`.
    Arith {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
        /// Operand and result type.
        ty: DataType,
    },
    /// Unary minus.
    Neg(Box<Expr>, DataType),
    /// A comparison of two operands of the same type.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `a AND b`
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`
    Or(Box<Expr>, Box<Expr>),
    /// `NOT a`
    Not(Box<Expr>),
    /// `a IS [NOT] NULL`
    IsNull(Box<Expr>, bool),
    /// `a IS [NOT] DISTINCT FROM b`; the flag is true for `NOT`.
    IsDistinct(Box<Expr>, Box<Expr>, bool),
    /// `a || b` on text.
    Concat(Box<Expr>, Box<Expr>),
    /// A scalar function call.
    Func(Func, Vec<Expr>, DataType),
}

/// What an expression is evaluated against.
pub struct Env<'a> {
    /// The input row.
    pub row: &'a [Value],
    /// The statement's parameters.
    pub params: &'a [Value],
}

fn truth(v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(Error::internal(format!("boolean expected, got {other:?}"))),
    }
}

fn from_truth(t: Option<bool>) -> Value {
    t.map_or(Value::Null, Value::Bool)
}

impl Expr {
    /// A constant expression.
    pub fn constant(v: Value) -> Expr {
        Expr::Const(v)
    }

    /// Evaluates the expression.
    pub fn eval(&self, env: &Env<'_>) -> Result<Value> {
        Ok(match self {
            Expr::Const(v) => v.clone(),
            Expr::Column(i) => env.row[*i].clone(),
            Expr::Param(i) => env.params.get(*i).cloned().ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedParameter,
                    format!("there is no parameter ${}", i + 1),
                )
            })?,
            Expr::Cast {
                expr,
                from,
                to,
                explicit,
            } => cast(expr.eval(env)?, *from, *to, *explicit)?,
            Expr::Arith {
                op,
                left,
                right,
                ty,
            } => {
                let l = left.eval(env)?;
                if l.is_null() {
                    return Ok(Value::Null);
                }
                arith(*op, &l, &right.eval(env)?, *ty)?
            }
            Expr::Neg(e, ty) => negate(&e.eval(env)?, *ty)?,
            Expr::Cmp(op, l, r) => {
                let l = l.eval(env)?;
                if l.is_null() {
                    return Ok(Value::Null);
                }
                let r = r.eval(env)?;
                if r.is_null() {
                    return Ok(Value::Null);
                }
                Value::Bool(op.holds(l.cmp_non_null(&r)))
            }
            Expr::And(a, b) => {
                let x = truth(&a.eval(env)?)?;
                if x == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let y = truth(&b.eval(env)?)?;
                from_truth(match (x, y) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            }
            Expr::Or(a, b) => {
                let x = truth(&a.eval(env)?)?;
                if x == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let y = truth(&b.eval(env)?)?;
                from_truth(match (x, y) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            }
            Expr::Not(a) => from_truth(truth(&a.eval(env)?)?.map(|b| !b)),
            Expr::IsNull(e, negated) => Value::Bool(e.eval(env)?.is_null() != *negated),
            Expr::IsDistinct(a, b, negated) => {
                let (x, y) = (a.eval(env)?, b.eval(env)?);
                let distinct = match (x.is_null(), y.is_null()) {
                    (true, true) => false,
                    (true, false) | (false, true) => true,
                    (false, false) => x.cmp_non_null(&y) != Ordering::Equal,
                };
                Value::Bool(distinct != *negated)
            }
            Expr::Concat(a, b) => match (a.eval(env)?, b.eval(env)?) {
                (Value::Text(x), Value::Text(y)) => Value::text(format!("{x}{y}")),
                _ => Value::Null,
            },
            Expr::Func(f, args, ty) => eval_func(*f, args, *ty, env)?,
        })
    }

    /// Evaluates a predicate: NULL counts as false.
    pub fn is_true(&self, env: &Env<'_>) -> Result<bool> {
        Ok(truth(&self.eval(env)?)? == Some(true))
    }

    /// True when the expression reads no column (constants and parameters
    /// only), so it can be evaluated before any row is read.
    pub fn is_row_independent(&self) -> bool {
        let mut independent = true;
        self.walk(&mut |e| {
            if matches!(e, Expr::Column(_)) {
                independent = false;
            }
        });
        independent
    }

    /// Visits every node, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Const(_) | Expr::Column(_) | Expr::Param(_) => {}
            Expr::Cast { expr, .. }
            | Expr::Neg(expr, _)
            | Expr::Not(expr)
            | Expr::IsNull(expr, _) => expr.walk(f),
            Expr::Arith { left, right, .. }
            | Expr::Cmp(_, left, right)
            | Expr::And(left, right)
            | Expr::Or(left, right)
            | Expr::IsDistinct(left, right, _)
            | Expr::Concat(left, right) => {
                left.walk(f);
                right.walk(f);
            }
            Expr::Func(_, args, _) => args.iter().for_each(|a| a.walk(f)),
        }
    }

    /// Splits a predicate into its top-level `AND`ed parts.
    pub fn conjuncts(&self) -> Vec<&Expr> {
        match self {
            Expr::And(a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            other => vec![other],
        }
    }

    /// Renders the expression for EXPLAIN, naming columns with `names`.
    pub fn display(&self, names: &[String]) -> String {
        let mut s = String::new();
        self.write(&mut s, names);
        s
    }

    fn write(&self, s: &mut String, names: &[String]) {
        match self {
            Expr::Const(v) => match v {
                Value::Text(t) => {
                    let _ = write!(s, "'{}'", t.replace('\'', "''"));
                }
                Value::Timestamp(_) => {
                    let _ = write!(
                        s,
                        "'{}'",
                        format_value(v, DataType::Timestamp).unwrap_or_default()
                    );
                }
                other => {
                    s.push_str(&format_value(other, DataType::Float8).unwrap_or("NULL".into()))
                }
            },
            Expr::Column(i) => s.push_str(names.get(*i).map_or("?", |n| n.as_str())),
            Expr::Param(i) => {
                let _ = write!(s, "${}", i + 1);
            }
            Expr::Cast {
                expr, to, explicit, ..
            } => {
                expr.write(s, names);
                if *explicit {
                    let _ = write!(s, "::{}", to.sql_name());
                }
            }
            Expr::Arith {
                op, left, right, ..
            } => {
                s.push('(');
                left.write(s, names);
                let _ = write!(s, " {} ", op.symbol());
                right.write(s, names);
                s.push(')');
            }
            Expr::Neg(e, _) => {
                s.push('-');
                e.write(s, names);
            }
            Expr::Cmp(op, l, r) => {
                l.write(s, names);
                let _ = write!(s, " {} ", op.symbol());
                r.write(s, names);
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let word = if matches!(self, Expr::And(..)) {
                    "AND"
                } else {
                    "OR"
                };
                s.push('(');
                a.write(s, names);
                let _ = write!(s, " {word} ");
                b.write(s, names);
                s.push(')');
            }
            Expr::Not(a) => {
                s.push_str("NOT ");
                a.write(s, names);
            }
            Expr::IsNull(e, negated) => {
                e.write(s, names);
                s.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Expr::IsDistinct(a, b, negated) => {
                a.write(s, names);
                s.push_str(if *negated {
                    " IS NOT DISTINCT FROM "
                } else {
                    " IS DISTINCT FROM "
                });
                b.write(s, names);
            }
            Expr::Concat(a, b) => {
                a.write(s, names);
                s.push_str(" || ");
                b.write(s, names);
            }
            Expr::Func(f, args, _) => {
                s.push_str(f.name());
                s.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    a.write(s, names);
                }
                s.push(')');
            }
        }
    }
}

fn eval_func(f: Func, args: &[Expr], ty: DataType, env: &Env<'_>) -> Result<Value> {
    let vals = args
        .iter()
        .map(|a| a.eval(env))
        .collect::<Result<Vec<_>>>()?;
    if f != Func::Version && vals.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    Ok(match (f, vals.as_slice()) {
        (Func::Abs, [Value::Int(i)]) => Value::Int(crate::types::text::check_int_range(
            i.checked_abs()
                .ok_or_else(|| crate::types::text::int_out_of_range(ty))?,
            ty,
        )?),
        (Func::Abs, [Value::Numeric(d)]) => Value::Numeric(d.abs()),
        (Func::Abs, [Value::Float(x)]) => Value::Float(x.abs()),
        (Func::Length, [Value::Text(s)]) => Value::Int(s.chars().count() as i64),
        (Func::Lower, [Value::Text(s)]) => Value::text(s.to_lowercase()),
        (Func::Upper, [Value::Text(s)]) => Value::text(s.to_uppercase()),
        (Func::Version, []) => Value::text(crate::VERSION_STRING),
        _ => return Err(Error::internal(format!("bad arguments to {}", f.name()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: Option<bool>) -> Expr {
        Expr::Const(from_truth(v))
    }

    fn eval(e: &Expr) -> Value {
        e.eval(&Env {
            row: &[],
            params: &[],
        })
        .unwrap()
    }

    #[test]
    fn three_valued_logic() {
        let vals = [Some(true), Some(false), None];
        for x in vals {
            for y in vals {
                let and = eval(&Expr::And(Box::new(b(x)), Box::new(b(y))));
                let or = eval(&Expr::Or(Box::new(b(x)), Box::new(b(y))));
                let want_and = match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                let want_or = match (x, y) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                };
                assert_eq!(and, from_truth(want_and), "{x:?} AND {y:?}");
                assert_eq!(or, from_truth(want_or), "{x:?} OR {y:?}");
            }
        }
        assert_eq!(eval(&Expr::Not(Box::new(b(None)))), Value::Null);
    }

    #[test]
    fn null_comparisons_are_null() {
        let e = Expr::Cmp(
            CmpOp::Eq,
            Box::new(Expr::Const(Value::Null)),
            Box::new(Expr::Const(Value::Int(1))),
        );
        assert_eq!(eval(&e), Value::Null);
        let d = Expr::IsDistinct(
            Box::new(Expr::Const(Value::Null)),
            Box::new(Expr::Const(Value::Null)),
            false,
        );
        assert_eq!(eval(&d), Value::Bool(false));
    }
}
