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

mod func;
mod math;
mod textforms;
pub(crate) use textforms::array_items;
mod like;

/// The longest text value, in bytes: PostgreSQL's limit on any field.
pub const MAX_TEXT: usize = (1 << 30) - 1;

/// Refuses (54000) to build a text value of `len` bytes past [`MAX_TEXT`],
/// before its memory is taken.
pub(crate) fn check_text_len(len: usize) -> Result<()> {
    if len > MAX_TEXT {
        return Err(Error::new(
            ErrorKind::ProgramLimitExceeded,
            format!("string is too long: {len} bytes, at most {MAX_TEXT} (as in PostgreSQL)"),
        ));
    }
    Ok(())
}

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

pub use func::Func;

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
    /// A scalar function call with its result type.
    Func(Func, Vec<Expr>, DataType),
    /// A column of an enclosing query's current row, in a correlated
    /// subquery: `(levels up, column)`, 1 being the immediately enclosing
    /// query.
    Outer(usize, usize),
    /// `CASE WHEN c THEN r ... ELSE e END` (a simple `CASE x WHEN v` is
    /// bound as `x = v` conditions).
    Case {
        /// Conditions and results, in order.
        whens: Vec<(Expr, Expr)>,
        /// The result when no condition holds (NULL if absent).
        otherwise: Option<Box<Expr>>,
    },
    /// `COALESCE(a, b, ...)`: the first non-NULL argument.
    Coalesce(Vec<Expr>),
    /// `s [NOT] LIKE|ILIKE pattern [ESCAPE e]`.
    Like {
        /// The string.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
        /// `ILIKE`.
        case_insensitive: bool,
        /// The escape character (`\` by default, `None` after `ESCAPE ''`).
        escape: Option<char>,
    },
    /// A subquery used as an expression.
    Subquery(Box<Subquery>),
}

/// How a subquery's rows become a value.
#[derive(Clone, Debug, PartialEq)]
pub enum SubqueryKind {
    /// `(SELECT x ...)`: the single value of the single row, NULL if none.
    Scalar,
    /// `EXISTS (SELECT ...)`.
    Exists,
    /// `ARRAY(SELECT x ...)`: the values in PostgreSQL's array text form
    /// (`{a,b}`), as text, with the values formatted as `elem`.
    Array {
        /// The column's type.
        elem: crate::types::DataType,
    },
    /// `probe [NOT] IN (SELECT x ...)`, with SQL's NULL rules.
    In {
        /// The value looked for.
        probe: Box<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
}

/// A subquery inside an expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Subquery {
    /// Unique within the statement; results of uncorrelated subqueries are
    /// cached by it.
    pub id: usize,
    /// What the rows mean.
    pub kind: SubqueryKind,
    /// The subquery's plan.
    pub plan: crate::plan::Plan,
    /// True when the plan reads columns of enclosing queries, so it runs
    /// once per outer row instead of once per statement.
    pub correlated: bool,
}

/// Column names for rendering expressions: the current row's, and those of
/// enclosing queries' rows (innermost last).
struct Names<'a> {
    row: &'a [String],
    outer: &'a [Vec<String>],
}

/// Runs subqueries for expression evaluation (the executor implements it).
pub trait SubqueryRunner {
    /// Returns the rows of `sq` evaluated with `outer` as the enclosing
    /// rows (innermost last).
    fn rows(&self, sq: &Subquery, outer: &[&[Value]]) -> Result<std::rc::Rc<Vec<Vec<Value>>>>;

    /// The statement's memory limit: no single value may be larger.
    fn memory_limit(&self) -> usize {
        usize::MAX
    }

    /// Calls a function the executor answers (see
    /// [`Func::is_executor_call`]): the sequence functions, which need the
    /// database and the session, and the catalog functions.
    fn call(&self, f: Func, args: &[Value]) -> Result<Value> {
        let _ = args;
        Err(Error::unsupported(format!(
            "{}() cannot be called here",
            f.name()
        )))
    }
}

/// What an expression is evaluated against.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The input row.
    pub row: &'a [Value],
    /// The statement's parameters.
    pub params: &'a [Value],
    /// Rows of enclosing queries (correlated subqueries), innermost last.
    pub outer: &'a [&'a [Value]],
    /// Runs subqueries; `None` where none can appear.
    pub runner: Option<&'a dyn SubqueryRunner>,
    /// The transaction's start (`now()`), microseconds since 1970.
    pub now: i64,
}

impl<'a> Env<'a> {
    /// Refuses (53200) a value of `bytes` larger than the statement's
    /// memory limit, where a statement runs this expression.
    fn check_value_size(&self, bytes: usize) -> Result<()> {
        let limit = self.runner.map_or(usize::MAX, |r| r.memory_limit());
        if bytes > limit {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!(
                    "a value of {bytes} bytes is larger than the statement's memory limit of {limit} bytes (setting mako.statement_memory)"
                ),
            ));
        }
        Ok(())
    }

    /// An environment with just parameters (constants, key bounds).
    pub fn params(params: &'a [Value]) -> Env<'a> {
        Env {
            row: &[],
            params,
            outer: &[],
            runner: None,
            now: wall_clock_micros(),
        }
    }

    /// The same environment over another row.
    pub fn with_row(&self, row: &'a [Value]) -> Env<'a> {
        Env { row, ..*self }
    }
}

/// The wall clock in microseconds since the Unix epoch.
pub fn wall_clock_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
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
        crate::interrupt::check_stack()?;
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
                (Value::Text(x), Value::Text(y)) => {
                    let len = x.len().saturating_add(y.len());
                    check_text_len(len)?;
                    env.check_value_size(len)?;
                    Value::text(format!("{x}{y}"))
                }
                _ => Value::Null,
            },
            Expr::Func(func::Func::Now, _, ty) => Value::Timestamp(match ty {
                // current_date: today's midnight.
                DataType::Date => {
                    env.now - env.now.rem_euclid(crate::types::datetime::MICROS_PER_DAY)
                }
                _ => env.now,
            }),
            Expr::Func(func::Func::ClockTimestamp, _, _) => Value::Timestamp(wall_clock_micros()),
            Expr::Func(f, args, _) if f.is_executor_call() => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(env))
                    .collect::<Result<Vec<_>>>()?;
                if *f != func::Func::LastVal && vals.iter().any(Value::is_null) {
                    return Ok(Value::Null);
                }
                match env.runner {
                    Some(r) => r.call(*f, &vals)?,
                    None => {
                        return Err(Error::unsupported(format!(
                            "{}() cannot be called here",
                            f.name()
                        )));
                    }
                }
            }
            Expr::Func(f, args, ty) => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(env))
                    .collect::<Result<Vec<_>>>()?;
                let v = func::call(*f, &vals, *ty)?;
                if let Value::Text(s) = &v {
                    env.check_value_size(s.len())?;
                }
                v
            }
            Expr::Outer(level, i) => {
                let row = env
                    .outer
                    .len()
                    .checked_sub(*level)
                    .and_then(|d| env.outer.get(d))
                    .ok_or_else(|| Error::internal("outer reference without an outer row"))?;
                row[*i].clone()
            }
            Expr::Case { whens, otherwise } => {
                for (cond, result) in whens {
                    if cond.is_true(env)? {
                        return result.eval(env);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(env)?,
                    None => Value::Null,
                }
            }
            Expr::Coalesce(args) => {
                for a in args {
                    let v = a.eval(env)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
                escape,
            } => match (expr.eval(env)?, pattern.eval(env)?) {
                (Value::Text(s), Value::Text(p)) => {
                    let m = like::matches(&s, &p, *case_insensitive, *escape)?;
                    Value::Bool(m != *negated)
                }
                _ => Value::Null,
            },
            Expr::Subquery(sq) => eval_subquery(sq, env)?,
        })
    }

    /// Evaluates a predicate: NULL counts as false.
    pub fn is_true(&self, env: &Env<'_>) -> Result<bool> {
        Ok(truth(&self.eval(env)?)? == Some(true))
    }

    /// True when the expression reads no column of the current row
    /// (constants, parameters and outer-row columns only), so it can be
    /// evaluated before any row is read. Subqueries count as row-dependent.
    pub fn is_row_independent(&self) -> bool {
        let mut independent = true;
        self.walk(&mut |e| {
            if matches!(e, Expr::Column(_) | Expr::Subquery(_)) {
                independent = false;
            }
        });
        independent
    }

    /// The columns of the current row the expression reads.
    pub fn columns_used(&self, out: &mut Vec<usize>) {
        self.walk(&mut |e| {
            if let Expr::Column(i) = e {
                out.push(*i);
            }
        });
    }

    /// Rewrites column references with `f` (used when operators move
    /// columns around, e.g. join inputs).
    pub fn map_columns(&self, f: &dyn Fn(usize) -> usize) -> Expr {
        crate::interrupt::grow(|| self.map_columns_here(f))
    }

    fn map_columns_here(&self, f: &dyn Fn(usize) -> usize) -> Expr {
        let m = |e: &Expr| Box::new(e.map_columns(f));
        match self {
            Expr::Column(i) => Expr::Column(f(*i)),
            Expr::Const(_) | Expr::Param(_) | Expr::Outer(..) => self.clone(),
            // Only the probe of `x IN (subquery)` reads the current row; a
            // correlated subquery's outer references are never remapped (the
            // planner keeps such predicates where columns are in written
            // order).
            Expr::Subquery(sq) => match &sq.kind {
                SubqueryKind::In { probe, negated } => {
                    let mut sq = sq.as_ref().clone();
                    sq.kind = SubqueryKind::In {
                        probe: m(probe),
                        negated: *negated,
                    };
                    Expr::Subquery(Box::new(sq))
                }
                _ => self.clone(),
            },
            Expr::Cast {
                expr,
                from,
                to,
                explicit,
            } => Expr::Cast {
                expr: m(expr),
                from: *from,
                to: *to,
                explicit: *explicit,
            },
            Expr::Arith {
                op,
                left,
                right,
                ty,
            } => Expr::Arith {
                op: *op,
                left: m(left),
                right: m(right),
                ty: *ty,
            },
            Expr::Neg(e, ty) => Expr::Neg(m(e), *ty),
            Expr::Cmp(op, l, r) => Expr::Cmp(*op, m(l), m(r)),
            Expr::And(a, b) => Expr::And(m(a), m(b)),
            Expr::Or(a, b) => Expr::Or(m(a), m(b)),
            Expr::Not(a) => Expr::Not(m(a)),
            Expr::IsNull(e, n) => Expr::IsNull(m(e), *n),
            Expr::IsDistinct(a, b, n) => Expr::IsDistinct(m(a), m(b), *n),
            Expr::Concat(a, b) => Expr::Concat(m(a), m(b)),
            Expr::Func(func, args, ty) => {
                Expr::Func(*func, args.iter().map(|a| a.map_columns(f)).collect(), *ty)
            }
            Expr::Case { whens, otherwise } => Expr::Case {
                whens: whens
                    .iter()
                    .map(|(c, r)| (c.map_columns(f), r.map_columns(f)))
                    .collect(),
                otherwise: otherwise.as_ref().map(|o| m(o)),
            },
            Expr::Coalesce(args) => Expr::Coalesce(args.iter().map(|a| a.map_columns(f)).collect()),
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
                escape,
            } => Expr::Like {
                expr: m(expr),
                pattern: m(pattern),
                negated: *negated,
                case_insensitive: *case_insensitive,
                escape: *escape,
            },
        }
    }

    /// Joins predicates with AND (`None` for an empty list).
    pub fn and_all(mut parts: Vec<Expr>) -> Option<Expr> {
        let first = if parts.is_empty() {
            return None;
        } else {
            parts.remove(0)
        };
        Some(
            parts
                .into_iter()
                .fold(first, |acc, p| Expr::And(Box::new(acc), Box::new(p))),
        )
    }

    /// Visits every node, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        crate::interrupt::grow(|| self.walk_here(f));
    }

    fn walk_here(&self, f: &mut dyn FnMut(&Expr)) {
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
            Expr::Func(_, args, _) | Expr::Coalesce(args) => args.iter().for_each(|a| a.walk(f)),
            Expr::Outer(..) => {}
            Expr::Case { whens, otherwise } => {
                for (c, r) in whens {
                    c.walk(f);
                    r.walk(f);
                }
                if let Some(o) = otherwise {
                    o.walk(f);
                }
            }
            Expr::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
            Expr::Subquery(sq) => {
                if let SubqueryKind::In { probe, .. } = &sq.kind {
                    probe.walk(f);
                }
            }
        }
    }

    /// True when evaluating can raise an error on some rows (arithmetic,
    /// casts, functions, subqueries): such an expression must not be
    /// evaluated on rows an enclosing AND/OR has already decided.
    pub fn can_fail(&self) -> bool {
        let mut fails = false;
        self.walk(&mut |e| {
            if matches!(
                e,
                Expr::Arith { .. }
                    | Expr::Neg(..)
                    | Expr::Cast { .. }
                    | Expr::Func(..)
                    | Expr::Subquery(_)
                    | Expr::Like { .. }
            ) {
                fails = true;
            }
        });
        fails
    }

    /// True when evaluating needs a subquery runner or outer rows, which
    /// the vectorized evaluator leaves to the row-at-a-time path.
    pub fn needs_context(&self) -> bool {
        let mut needs = false;
        self.walk(&mut |e| {
            if matches!(e, Expr::Subquery(_) | Expr::Outer(..)) {
                needs = true;
            }
        });
        needs
    }

    /// True when the expression contains a subquery.
    pub fn has_subquery(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            if matches!(e, Expr::Subquery(_)) {
                found = true;
            }
        });
        found
    }

    /// Splits a predicate into its top-level `AND`ed parts.
    /// The branches of an OR tree (the expression itself when it is not
    /// an OR).
    pub fn disjuncts(&self) -> Vec<&Expr> {
        crate::interrupt::grow(|| match self {
            Expr::Or(a, b) => {
                let mut v = a.disjuncts();
                v.extend(b.disjuncts());
                v
            }
            other => vec![other],
        })
    }

    pub fn conjuncts(&self) -> Vec<&Expr> {
        crate::interrupt::grow(|| self.conjuncts_here())
    }

    fn conjuncts_here(&self) -> Vec<&Expr> {
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
        self.display_in(&[], names)
    }

    /// Like [`Expr::display`], naming the columns of enclosing queries'
    /// rows with `outer` (innermost last).
    pub fn display_in(&self, outer: &[Vec<String>], names: &[String]) -> String {
        let mut s = String::new();
        self.write(&mut s, &Names { row: names, outer });
        s
    }

    fn write(&self, s: &mut String, names: &Names<'_>) {
        crate::interrupt::grow(|| self.write_here(s, names));
    }

    fn write_here(&self, s: &mut String, names: &Names<'_>) {
        match self {
            Expr::Const(v) => match v {
                Value::Text(t) => {
                    let _ = write!(s, "'{}'", t.replace('\'', "''"));
                }
                Value::Timestamp(_) | Value::Interval(_) => {
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
            Expr::Column(i) => s.push_str(names.row.get(*i).map_or("?", |n| n.as_str())),
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
            Expr::Outer(level, i) => {
                let name = names
                    .outer
                    .len()
                    .checked_sub(*level)
                    .and_then(|d| names.outer.get(d))
                    .and_then(|row| row.get(*i));
                match name {
                    Some(n) => {
                        let _ = write!(s, "outer.{n}");
                    }
                    None => {
                        let _ = write!(s, "outer{level}.${i}");
                    }
                }
            }
            Expr::Case { whens, otherwise } => {
                s.push_str("CASE");
                for (c, r) in whens {
                    s.push_str(" WHEN ");
                    c.write(s, names);
                    s.push_str(" THEN ");
                    r.write(s, names);
                }
                if let Some(o) = otherwise {
                    s.push_str(" ELSE ");
                    o.write(s, names);
                }
                s.push_str(" END");
            }
            Expr::Coalesce(args) => {
                s.push_str("COALESCE(");
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    a.write(s, names);
                }
                s.push(')');
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
                ..
            } => {
                expr.write(s, names);
                let op = if *case_insensitive { "ILIKE" } else { "LIKE" };
                let _ = write!(s, " {}{op} ", if *negated { "NOT " } else { "" });
                pattern.write(s, names);
            }
            Expr::Subquery(sq) => {
                let kind = match &sq.kind {
                    SubqueryKind::Scalar => "",
                    SubqueryKind::Exists => "EXISTS ",
                    SubqueryKind::Array { .. } => "ARRAY",
                    SubqueryKind::In { negated: false, .. } => "IN ",
                    SubqueryKind::In { negated: true, .. } => "NOT IN ",
                };
                if let SubqueryKind::In { probe, .. } = &sq.kind {
                    probe.write(s, names);
                    s.push(' ');
                }
                let _ = write!(s, "{kind}(subquery {})", sq.id);
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

/// One element of an array's text form: NULL, or the value's text,
/// double-quoted when it is empty, `NULL`, or holds a delimiter, brace,
/// quote, backslash or white space.
fn array_item(v: &Value, ty: crate::types::DataType) -> String {
    let Some(text) = crate::types::text::format_value(v, ty) else {
        return "NULL".into();
    };
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("null")
        && !text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if plain {
        text
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn eval_subquery(sq: &Subquery, env: &Env<'_>) -> Result<Value> {
    let runner = env
        .runner
        .ok_or_else(|| Error::unsupported("subqueries are not allowed here"))?;
    let mut stack: Vec<&[Value]> = env.outer.to_vec();
    stack.push(env.row);
    let rows = runner.rows(sq, &stack)?;
    Ok(match &sq.kind {
        SubqueryKind::Exists => Value::Bool(!rows.is_empty()),
        SubqueryKind::Array { elem } => {
            let items: Vec<String> = rows
                .iter()
                .map(|r| array_item(r.first().unwrap_or(&Value::Null), *elem))
                .collect();
            Value::text(format!("{{{}}}", items.join(",")))
        }
        SubqueryKind::Scalar => match rows.len() {
            0 => Value::Null,
            1 => rows[0].first().cloned().unwrap_or(Value::Null),
            _ => {
                return Err(Error::new(
                    ErrorKind::CardinalityViolation,
                    "more than one row returned by a subquery used as an expression",
                ));
            }
        },
        SubqueryKind::In { probe, negated } => {
            let x = probe.eval(env)?;
            let mut found = Some(false);
            if rows.is_empty() {
                found = Some(false);
            } else if x.is_null() {
                found = None;
            } else {
                for r in rows.iter() {
                    match &r[0] {
                        Value::Null => found = None,
                        v if v.cmp_non_null(&x) == Ordering::Equal => {
                            found = Some(true);
                            break;
                        }
                        _ => {}
                    }
                }
            }
            from_truth(found.map(|f| f != *negated))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: Option<bool>) -> Expr {
        Expr::Const(from_truth(v))
    }

    fn eval(e: &Expr) -> Value {
        e.eval(&Env::params(&[])).unwrap()
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
