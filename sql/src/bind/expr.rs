//! Binding expressions: name resolution, typing with PostgreSQL's rules,
//! literal and parameter type inference, aggregates.

use std::ops::ControlFlow;

use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;

use super::oids::{is_named_type, is_regclass, names_an_oid};
use super::rows::{balanced_and, balanced_or, row_operands};
use super::{Binder, Scope};
use crate::bind::OutputColumn;
use crate::expr::{CmpOp, Expr, Subquery, SubqueryKind};
use crate::plan::Plan;
use crate::plan::{AggCall, AggFunc};
use crate::types::cast::{can_cast, cast};
use crate::types::ops::ArithOp;
use crate::types::text::parse_numeric;
use crate::types::{DataType, Value};

/// A bound expression and its static type.
pub type Typed = (Expr, DataType);

/// Aggregation state while binding the select list of a grouped query.
#[derive(Debug)]
pub struct AggState {
    /// The scope the aggregate arguments and group keys are bound against.
    pub input: Scope,
    /// Bound GROUP BY expressions (output columns `0..n`).
    pub group_by: Vec<Typed>,
    /// Aggregates found so far (output columns `n..`).
    pub aggs: Vec<AggCall>,
}

/// Case-folds an identifier as PostgreSQL does: unquoted names are
/// lower-cased, quoted ones kept.
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The last part of an object name, case-folded (we have one schema).
pub fn object_name(n: &ast::ObjectName) -> Result<String> {
    match n.0.last() {
        Some(ast::ObjectNamePart::Identifier(i)) => Ok(ident(i)),
        _ => Err(Error::new(ErrorKind::Syntax, format!("invalid name: {n}"))),
    }
}

pub(super) fn is_aggregate_name(name: &str) -> Option<AggFunc> {
    Some(match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "avg" => AggFunc::Avg,
        "string_agg" => AggFunc::StringAgg,
        "bool_and" | "every" => AggFunc::BoolAnd,
        "bool_or" => AggFunc::BoolOr,
        _ => return None,
    })
}

pub(super) fn function_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_default()
}

/// True when the expression contains an aggregate call of its own query
/// (aggregates inside subqueries belong to the subquery).
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    struct Finder {
        depth: usize,
    }
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, x: &ast::Expr) -> ControlFlow<()> {
            // A window call (`sum(x) OVER …`) is not an aggregate of the
            // query; its arguments may hold one.
            if self.depth == 0
                && let ast::Expr::Function(f) = x
                && f.over.is_none()
                && is_aggregate_name(&function_name(f)).is_some()
            {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    ast::Visit::visit(e, &mut Finder { depth: 0 }).is_break()
}

/// Converts a type name from the AST.
pub fn data_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as A;
    let len = |l: &Option<ast::CharacterLength>| -> Result<Option<u32>> {
        match l {
            None => Ok(None),
            Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                if *length == 0 || *length > 10_485_760 {
                    bail!(
                        InvalidParameterValue,
                        "length for type varchar must be between 1 and 10485760"
                    );
                }
                Ok(Some(*length as u32))
            }
            Some(ast::CharacterLength::Max) => {
                Err(Error::unsupported("VARCHAR(MAX) is not supported"))
            }
        }
    };
    let numeric = |info: &ast::ExactNumberInfo| -> Result<DataType> {
        Ok(match info {
            ast::ExactNumberInfo::None => DataType::Numeric(None),
            ast::ExactNumberInfo::Precision(p) => numeric_typmod(*p as i64, 0)?,
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => numeric_typmod(*p as i64, *s)?,
        })
    };
    Ok(match t {
        A::Bool | A::Boolean => DataType::Bool,
        A::SmallInt(_) | A::Int2(_) => DataType::Int2,
        A::Int(_) | A::Integer(_) | A::Int4(_) => DataType::Int4,
        A::BigInt(_) | A::Int8(_) => DataType::Int8,
        A::Numeric(i) | A::Decimal(i) | A::Dec(i) => numeric(i)?,
        A::Real | A::Float4 => DataType::Float4,
        A::Float8 | A::DoublePrecision | A::Double(ast::ExactNumberInfo::None) => DataType::Float8,
        A::Float(ast::ExactNumberInfo::Precision(p)) if *p <= 24 => DataType::Float4,
        A::Float(_) => DataType::Float8,
        A::Text => DataType::Text,
        A::Varchar(l) | A::CharacterVarying(l) | A::CharVarying(l) => DataType::Varchar(len(l)?),
        A::Char(l) | A::Character(l) => DataType::Char(len(l)?.unwrap_or(1)),
        A::Timestamp(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp
        }
        A::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            DataType::TimestampTz
        }
        A::Date => DataType::Date,
        // A relation's OID (casts to it look the name up).
        A::Regclass => DataType::Int8,
        A::Interval { .. } => DataType::Interval,
        // Arrays are held in their text form (`{1,2}`) for now: the system
        // catalog's array columns are text.
        A::Array(_) => DataType::Text,
        A::Custom(name, mods) if mods.is_empty() => match object_name(name)?.as_str() {
            "int2" => DataType::Int2,
            "int4" => DataType::Int4,
            "int8" => DataType::Int8,
            "float4" => DataType::Float4,
            "float8" => DataType::Float8,
            "bool" => DataType::Bool,
            "bpchar" => DataType::Char(1),
            "varchar" => DataType::Varchar(None),
            "string" => DataType::Text,
            "timestamptz" => DataType::TimestampTz,
            "date" => DataType::Date,
            "interval" => DataType::Interval,
            "text" => DataType::Text,
            "numeric" => DataType::Numeric(None),
            "timestamp" => DataType::Timestamp,
            // The system catalog's types: OIDs are bigint here, names and
            // the one-byte "char" text (see `syscat`).
            "oid" | "regtype" | "regproc" | "regprocedure" | "regnamespace" | "regrole" | "xid" => {
                DataType::Int8
            }
            "regclass" => DataType::Int8,
            "name" | "char" => DataType::Text,
            other => bail!(FeatureNotSupported, "type \"{other}\" is not supported"),
        },
        other => bail!(FeatureNotSupported, "type {other} is not supported"),
    })
}

fn numeric_typmod(p: i64, s: i64) -> Result<DataType> {
    if !(1..=1000).contains(&p) {
        bail!(
            InvalidParameterValue,
            "NUMERIC precision {p} must be between 1 and 1000"
        );
    }
    if s < 0 || s > p {
        bail!(
            InvalidParameterValue,
            "NUMERIC scale {s} must be between 0 and precision {p}"
        );
    }
    Ok(DataType::Numeric(Some((p as u32, s as u32))))
}

/// The type of a numeric literal: integer if it fits in 32 bits, bigint if
/// in 64, numeric otherwise (as PostgreSQL's lexer decides).
fn number_literal(s: &str) -> Result<Typed> {
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && let Ok(i) = s.parse::<i64>()
    {
        let ty = if i32::try_from(i).is_ok() {
            DataType::Int4
        } else {
            DataType::Int8
        };
        return Ok((Expr::Const(Value::Int(i)), ty));
    }
    Ok((
        Expr::Const(Value::Numeric(parse_numeric(s)?)),
        DataType::Numeric(None),
    ))
}

/// The type values of several types are converted to when they meet in one
/// column (UNION, VALUES, CASE, COALESCE), with PostgreSQL's resolution:
/// unknown literals take the others' type, numerics widen, strings become
/// text, anything else must already agree.
pub fn common_type(types: &[DataType], context: &str) -> Result<DataType> {
    let mut result = DataType::Unknown;
    for &t in types {
        result = match (result, t) {
            (DataType::Unknown, t) => t,
            (r, DataType::Unknown) => r,
            (r, t) if r == t => r,
            (r, t) if r.is_numeric() && t.is_numeric() => {
                DataType::numeric_common(r, t).without_modifiers()
            }
            (r, t) if r.is_string() && t.is_string() => {
                if r.without_modifiers() == t.without_modifiers() {
                    r.without_modifiers()
                } else {
                    DataType::Text
                }
            }
            (r, t) if r.is_datetime() && t.is_datetime() => super::datetime::datetime_common(r, t),
            (r, t) => bail!(
                DatatypeMismatch,
                "{context} types {} and {} cannot be matched",
                r.pg_name(),
                t.pg_name()
            ),
        };
    }
    Ok(result)
}

pub(super) fn undefined_operator(l: DataType, op: &str, r: DataType) -> Error {
    Error::new(
        ErrorKind::UndefinedFunction,
        format!(
            "operator does not exist: {} {op} {}",
            l.pg_name(),
            r.pg_name()
        ),
    )
}

impl Binder<'_> {
    /// Converts an expression to `to` in an implicit context: unknown
    /// literals are parsed now, unknown parameters take the type, anything
    /// else gets a cast node (folded when constant).
    pub fn coerce(&mut self, (e, from): Typed, to: DataType) -> Result<Expr> {
        if from == to {
            return Ok(e);
        }
        match e {
            Expr::Param(i) if from == DataType::Unknown => {
                self.params[i] = Some(to);
                Ok(Expr::Param(i))
            }
            Expr::Const(v) => Ok(Expr::Const(cast(v, from, to, false)?)),
            e => Ok(Expr::Cast {
                expr: Box::new(e),
                from,
                to,
                explicit: false,
            }),
        }
    }

    /// Converts a value to a column's type in an assignment (INSERT, UPDATE,
    /// DEFAULT), with PostgreSQL's assignment-cast rules.
    pub fn coerce_assign(
        &mut self,
        (e, from): Typed,
        col: &crate::catalog::Column,
    ) -> Result<Expr> {
        let to = col.ty;
        let allowed = from == DataType::Unknown
            || from == to
            || (from.is_numeric() && to.is_numeric())
            || to.is_string()
            || (from.is_string() && to.is_string())
            || (from.is_datetime() && to.is_datetime())
            || from == to.without_modifiers();
        if !allowed {
            bail!(
                DatatypeMismatch,
                "column \"{}\" is of type {} but expression is of type {}",
                col.name,
                to.pg_name(),
                from.pg_name()
            );
        }
        // Typmods (length, precision) are enforced when the row is written.
        let target = match to {
            DataType::Numeric(_) | DataType::Varchar(_) => to.without_modifiers(),
            DataType::Char(_) => DataType::Text,
            other => other,
        };
        if from == DataType::Unknown && matches!(e, Expr::Const(_)) {
            // Parse against the full type so errors name it.
            if let Expr::Const(v) = e {
                return Ok(Expr::Const(cast(v, from, to, false)?));
            }
        }
        self.coerce((e, from), target)
    }

    /// Binds an expression that must be boolean (WHERE, HAVING, AND ...).
    pub fn predicate(&mut self, e: &ast::Expr, scope: &Scope, clause: &str) -> Result<Expr> {
        let typed = self.expr(e, scope)?;
        self.require_bool(typed, clause)
    }

    fn require_bool(&mut self, (e, ty): Typed, clause: &str) -> Result<Expr> {
        match ty {
            DataType::Bool => Ok(e),
            DataType::Unknown => self.coerce((e, ty), DataType::Bool),
            other => bail!(
                DatatypeMismatch,
                "argument of {clause} must be type boolean, not type {}",
                other.pg_name()
            ),
        }
    }

    /// Binds an expression against `scope`.
    pub fn expr(&mut self, e: &ast::Expr, scope: &Scope) -> Result<Typed> {
        crate::interrupt::check_stack()?;
        if self.agg.is_some()
            && let Some(found) = self.match_group_key(e)?
        {
            return Ok(found);
        }
        use ast::Expr as A;
        match e {
            A::Identifier(i) => self.column(None, &ident(i), scope),
            A::CompoundIdentifier(parts) => match parts.as_slice() {
                [t, c] => self.column(Some(&ident(t)), &ident(c), scope),
                [_, t, c] => self.column(Some(&ident(t)), &ident(c), scope),
                _ => bail!(FeatureNotSupported, "unsupported column reference {e}"),
            },
            A::Value(v) => self.literal(&v.value),
            A::Nested(inner) => self.expr(inner, scope),
            A::TypedString(ts) => {
                let to = data_type(&ts.data_type)?;
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => bail!(Syntax, "unexpected literal {other}"),
                };
                Ok((
                    Expr::Const(cast(Value::text(text), DataType::Unknown, to, true)?),
                    to,
                ))
            }
            A::Cast {
                expr: inner,
                data_type: t,
                ..
            } if data_type(t).is_ok_and(|d| d.is_string()) && names_an_oid(inner) => {
                // `x::regclass::text`, `to_regtype(x)::text`: the name, as
                // a regclass or regtype prints.
                use crate::expr::Func as F;
                let (oid, ty) = self.expr(inner, scope)?;
                let name = match oid {
                    Expr::Func(F::Regclass | F::ToRegclass, ..) => {
                        Expr::Func(F::RegclassName, vec![oid], DataType::Text)
                    }
                    Expr::Func(F::Regtype | F::ToRegtype, ..) => Expr::Func(
                        F::FormatType,
                        vec![oid, Expr::Const(Value::Null)],
                        DataType::Text,
                    ),
                    other => return self.explicit_cast((other, ty), data_type(t)?),
                };
                self.explicit_cast((name, DataType::Text), data_type(t)?)
            }
            A::Cast {
                expr, data_type: t, ..
            } if is_named_type(t, "regtype") => {
                // A type's OID from its name, or an OID's name.
                let (inner, from) = self.expr(expr, scope)?;
                if from.is_integer() {
                    let oid = self.explicit_cast((inner, from), DataType::Int8)?.0;
                    return Ok((
                        Expr::Func(
                            crate::expr::Func::FormatType,
                            vec![oid, Expr::Const(Value::Null)],
                            DataType::Text,
                        ),
                        DataType::Text,
                    ));
                }
                let name = self.text_operand((inner, from))?;
                Ok((
                    Expr::Func(crate::expr::Func::Regtype, vec![name], DataType::Int8),
                    DataType::Int8,
                ))
            }
            A::Cast {
                expr, data_type: t, ..
            } if is_regclass(t) => {
                // A relation's OID, from its name (42P01 when there is
                // none) or a number.
                let (inner, from) = self.expr(expr, scope)?;
                if from.is_integer() {
                    // An OID as regclass prints as the relation's name.
                    let oid = self.explicit_cast((inner, from), DataType::Int8)?.0;
                    return Ok((
                        Expr::Func(crate::expr::Func::RegclassName, vec![oid], DataType::Text),
                        DataType::Text,
                    ));
                }
                let name = self.text_operand((inner, from))?;
                Ok((
                    Expr::Func(crate::expr::Func::Regclass, vec![name], DataType::Int8),
                    DataType::Int8,
                ))
            }
            A::Cast {
                expr, data_type: t, ..
            } => {
                let to = data_type(t)?;
                let (inner, from) = self.expr(expr, scope)?;
                self.explicit_cast((inner, from), to)
            }
            A::UnaryOp { op, expr } => self.unary(*op, expr, scope),
            A::BinaryOp { left, op, right } => self.binary(left, op, right, scope),
            A::IsNull(x) | A::IsNotNull(x) => {
                let (inner, _) = self.expr(x, scope)?;
                Ok((
                    Expr::IsNull(Box::new(inner), matches!(e, A::IsNotNull(_))),
                    DataType::Bool,
                ))
            }
            A::IsTrue(x) | A::IsNotTrue(x) | A::IsFalse(x) | A::IsNotFalse(x) => {
                let inner = self.predicate(x, scope, "IS TRUE")?;
                let want = matches!(e, A::IsTrue(_) | A::IsNotFalse(_));
                let negated = matches!(e, A::IsNotTrue(_) | A::IsNotFalse(_));
                let is = Expr::IsDistinct(
                    Box::new(inner),
                    Box::new(Expr::Const(Value::Bool(if negated { !want } else { want }))),
                    !negated,
                );
                Ok((is, DataType::Bool))
            }
            A::IsDistinctFrom(a, b) | A::IsNotDistinctFrom(a, b) => {
                let (l, r, _) = self.comparable(a, b, "IS DISTINCT FROM", scope)?;
                let negated = matches!(e, A::IsNotDistinctFrom(..));
                Ok((
                    Expr::IsDistinct(Box::new(l), Box::new(r), negated),
                    DataType::Bool,
                ))
            }
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let ge = self.compare(expr, CmpOp::GtEq, low, scope)?;
                let le = self.compare(expr, CmpOp::LtEq, high, scope)?;
                let both = Expr::And(Box::new(ge), Box::new(le));
                Ok((
                    if *negated {
                        Expr::Not(Box::new(both))
                    } else {
                        both
                    },
                    DataType::Bool,
                ))
            }
            A::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let eqs = list
                    .iter()
                    .map(|item| self.compare(expr, CmpOp::Eq, item, scope))
                    .collect::<Result<Vec<_>>>()?;
                let any = balanced_or(eqs)
                    .ok_or_else(|| Error::new(ErrorKind::Syntax, "IN list must not be empty"))?;
                Ok((
                    if *negated {
                        Expr::Not(Box::new(any))
                    } else {
                        any
                    },
                    DataType::Bool,
                ))
            }
            A::Function(f) => self.function(f, scope),
            A::CompoundFieldAccess { root, access_chain } => {
                // `a[i]` over an array's text form: the element's text, as
                // an untyped literal (its context gives it a type).
                let [ast::AccessExpr::Subscript(ast::Subscript::Index { index })] =
                    access_chain.as_slice()
                else {
                    bail!(FeatureNotSupported, "{e} is not supported yet");
                };
                let array = self.expr(root, scope)?;
                if !(array.1.is_string() || array.1 == DataType::Unknown) {
                    bail!(
                        DatatypeMismatch,
                        "cannot subscript type {} because it does not support subscripting",
                        array.1.pg_name()
                    );
                }
                let array = self.text_operand(array)?;
                let index = self.expr(index, scope)?;
                let index = self.coerce_text_like(index, DataType::Int8)?;
                Ok((
                    Expr::Func(
                        crate::expr::Func::ArrayElement,
                        vec![array, index],
                        DataType::Unknown,
                    ),
                    DataType::Unknown,
                ))
            }
            A::Collate { expr, collation } => {
                // Text compares bytewise here (the C collation), which is
                // what these name.
                let name = object_name(collation)?;
                if !matches!(
                    name.as_str(),
                    "default" | "c" | "C" | "posix" | "POSIX" | "ucs_basic"
                ) {
                    bail!(
                        FeatureNotSupported,
                        "collation \"{name}\" is not supported: text compares bytewise (the C collation)"
                    );
                }
                let (inner, ty) = self.expr(expr, scope)?;
                if !(ty.is_string() || ty == DataType::Unknown) {
                    bail!(
                        DatatypeMismatch,
                        "collations are not supported by type {}",
                        ty.pg_name()
                    );
                }
                Ok((inner, ty))
            }
            A::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | A::AllOp {
                left,
                compare_op,
                right,
            } => {
                // `x op ANY (ARRAY[a, b])`: `x op a OR x op b` (ALL: AND).
                let all = matches!(e, A::AllOp { .. });
                let mut items = right.as_ref();
                while let A::Nested(inner) = items {
                    items = inner;
                }
                if let A::Subquery(q) = items {
                    // `= ANY (SELECT …)` is IN, `<> ALL (SELECT …)` NOT IN.
                    let negated = match (compare_op, all) {
                        (ast::BinaryOperator::Eq, false) => false,
                        (ast::BinaryOperator::NotEq, true) => true,
                        _ => bail!(
                            FeatureNotSupported,
                            "{compare_op} {} (subquery) is not supported yet",
                            if all { "ALL" } else { "ANY" }
                        ),
                    };
                    let as_in = A::In {
                        expr: left.clone(),
                        target: ast::InTarget::Subquery(q.clone()),
                        negated,
                        global: false,
                    };
                    return self.expr(&as_in, scope);
                }
                let A::Array(array) = items else {
                    return self.any_of_array_text(left, compare_op, items, all, scope);
                };
                let mut terms = Vec::new();
                for item in &array.elem {
                    let (t, _) = self.binary(left, compare_op, item, scope)?;
                    terms.push(t);
                }
                let joined = if all {
                    balanced_and(terms)
                } else {
                    balanced_or(terms)
                };
                // An empty array: ANY is false, ALL is true.
                Ok((
                    joined.unwrap_or(Expr::Const(Value::Bool(all))),
                    DataType::Bool,
                ))
            }
            A::Subquery(q) => {
                let (plan, columns, correlated) = self.expression_subquery(q, scope)?;
                if columns.len() != 1 {
                    bail!(Syntax, "subquery must return only one column");
                }
                let ty = columns[0].ty;
                Ok((
                    self.subquery_expr(SubqueryKind::Scalar, plan, correlated),
                    ty,
                ))
            }
            A::Exists { subquery, negated } => {
                let (plan, _, correlated) = self.expression_subquery(subquery, scope)?;
                let e = self.subquery_expr(SubqueryKind::Exists, plan, correlated);
                Ok((
                    if *negated { Expr::Not(Box::new(e)) } else { e },
                    DataType::Bool,
                ))
            }
            A::In {
                expr,
                target: ast::InTarget::Subquery(q),
                negated,
                ..
            } => {
                let probe = self.expr(expr, scope)?;
                let (plan, columns, correlated) = self.expression_subquery(q, scope)?;
                if columns.len() != 1 {
                    bail!(Syntax, "subquery has too many columns");
                }
                let ty = self.comparison_type(probe.1, columns[0].ty, "=")?;
                let ty = if let DataType::Char(_) = ty {
                    DataType::Text
                } else {
                    ty
                };
                let probe = self.coerce_text_like(probe, ty)?;
                let plan =
                    if columns[0].ty == ty || (ty == DataType::Text && columns[0].ty.is_string()) {
                        plan
                    } else {
                        self.convert_columns(plan, &columns, &[ty])?
                    };
                let kind = SubqueryKind::In {
                    probe: Box::new(probe),
                    negated: *negated,
                };
                Ok((self.subquery_expr(kind, plan, correlated), DataType::Bool))
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut whens = Vec::new();
                let mut results = Vec::new();
                for w in conditions {
                    let cond = match operand {
                        Some(op) => self.compare(op, CmpOp::Eq, &w.condition, scope)?,
                        None => self.predicate(&w.condition, scope, "CASE/WHEN")?,
                    };
                    whens.push(cond);
                    results.push(self.expr(&w.result, scope)?);
                }
                let otherwise = match else_result {
                    Some(e) => Some(self.expr(e, scope)?),
                    None => None,
                };
                let mut types: Vec<DataType> = results.iter().map(|r| r.1).collect();
                types.extend(otherwise.iter().map(|o| o.1));
                let ty = common_type(&types, "CASE")?;
                let mut arms = Vec::new();
                for (c, r) in whens.into_iter().zip(results) {
                    arms.push((c, self.coerce_text_like(r, ty)?));
                }
                let otherwise = match otherwise {
                    Some(o) => Some(Box::new(self.coerce_text_like(o, ty)?)),
                    None => None,
                };
                Ok((
                    Expr::Case {
                        whens: arms,
                        otherwise,
                    },
                    ty,
                ))
            }
            A::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            }
            | A::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => {
                let case_insensitive = matches!(e, A::ILike { .. });
                let s = self.expr(expr, scope)?;
                let p = self.expr(pattern, scope)?;
                for t in [s.1, p.1] {
                    if !t.is_string() && t != DataType::Unknown {
                        let op = if case_insensitive { "~~*" } else { "~~" };
                        return Err(undefined_operator(s.1, op, p.1));
                    }
                }
                let escape = match escape_char.as_deref() {
                    None => Some('\\'),
                    Some(ast::Expr::Value(v)) => match &v.value {
                        ast::Value::SingleQuotedString(e) if e.is_empty() => None,
                        ast::Value::SingleQuotedString(e) if e.chars().count() == 1 => {
                            e.chars().next()
                        }
                        _ => bail!(InvalidEscape, "invalid escape string"),
                    },
                    Some(_) => bail!(FeatureNotSupported, "ESCAPE must be a constant string"),
                };
                let expr = Box::new(self.coerce_text_like(s, DataType::Text)?);
                let pattern = Box::new(self.coerce_text_like(p, DataType::Text)?);
                Ok((
                    Expr::Like {
                        expr,
                        pattern,
                        negated: *negated,
                        case_insensitive,
                        escape,
                    },
                    DataType::Bool,
                ))
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr, scope)?];
                args.push(match substring_from {
                    Some(f) => self.expr(f, scope)?,
                    None => (Expr::Const(Value::Int(1)), DataType::Int4),
                });
                if let Some(n) = substring_for {
                    args.push(self.expr(n, scope)?);
                }
                self.scalar_function("substr", args)
            }
            A::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    bail!(FeatureNotSupported, "this form of TRIM is not supported");
                }
                let name = match trim_where {
                    None | Some(ast::TrimWhereField::Both) => "btrim",
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                };
                let mut args = vec![self.expr(expr, scope)?];
                if let Some(w) = trim_what {
                    args.push(self.expr(w, scope)?);
                }
                self.scalar_function(name, args)
            }
            A::Interval(iv) => self.interval_literal(iv, scope),
            A::Extract { field, expr, .. } => self.extract(field, expr, scope),
            A::AtTimeZone {
                timestamp,
                time_zone,
            } => self.at_time_zone(timestamp, time_zone, scope),
            A::Position { expr, r#in } => {
                let args = vec![self.expr(r#in, scope)?, self.expr(expr, scope)?];
                self.scalar_function("strpos", args)
            }
            A::Ceil {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            }
            | A::Floor {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            } => {
                let name = if matches!(e, A::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                let args = vec![self.expr(expr, scope)?];
                self.scalar_function(name, args)
            }
            other => Err(Error::unsupported(format!(
                "expression not supported yet: {other}"
            ))),
        }
    }

    /// In a grouped query, an expression equal to a GROUP BY key refers to
    /// that key's output column.
    fn match_group_key(&mut self, e: &ast::Expr) -> Result<Option<Typed>> {
        let Some(state) = self.agg.take() else {
            return Ok(None);
        };
        let saved_params = self.params.clone();
        let plain = self.expr(e, &state.input);
        let found = match plain {
            Ok((bound, _)) => state
                .group_by
                .iter()
                .position(|(g, _)| *g == bound)
                .map(|i| (Expr::Column(i), state.group_by[i].1)),
            Err(_) => {
                self.params = saved_params;
                None
            }
        };
        self.agg = Some(state);
        Ok(found)
    }

    fn column(&mut self, table: Option<&str>, name: &str, scope: &Scope) -> Result<Typed> {
        match scope.resolve(table, name) {
            Ok((i, ty)) => {
                if self.agg.is_some() {
                    // Only reached when the reference matched no GROUP BY key.
                    let full = table.map_or(name.to_string(), |t| format!("{t}.{name}"));
                    bail!(
                        Grouping,
                        "column \"{full}\" must appear in the GROUP BY clause or be used in an aggregate function"
                    );
                }
                Ok((Expr::Column(i), ty))
            }
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::UndefinedColumn | ErrorKind::UndefinedTable
                ) =>
            {
                // A column of an enclosing query: the subquery is correlated.
                for (level, outer) in self.outer_scopes.iter().rev().enumerate() {
                    if let Ok((i, ty)) = outer.resolve(table, name) {
                        let level = level + 1;
                        let n = self.correlated.len();
                        for c in &mut self.correlated[n.saturating_sub(level)..] {
                            *c = true;
                        }
                        return Ok((Expr::Outer(level, i), ty));
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Binds a subquery used in an expression of a query whose columns are
    /// `scope`; returns its plan, result columns and whether it is
    /// correlated.
    pub(super) fn expression_subquery(
        &mut self,
        q: &ast::Query,
        scope: &Scope,
    ) -> Result<(Plan, Vec<OutputColumn>, bool)> {
        if self.agg.is_some() {
            // Outer references would have to point at the grouped row.
            self.outer_scopes.push(Scope::default());
        } else {
            self.outer_scopes.push(scope.clone());
        }
        self.correlated.push(false);
        let saved_agg = self.agg.take();
        let saved_for_update = self.for_update;
        let result = self.query(q);
        self.for_update = saved_for_update;
        self.agg = saved_agg;
        let correlated = self.correlated.pop().unwrap_or(false);
        self.outer_scopes.pop();
        let (plan, columns) = result?;
        Ok((plan, columns, correlated))
    }

    /// Binds a subquery in FROM (or a view): it sees the same enclosing
    /// queries as the query it is in, but not that query's own FROM items.
    pub(super) fn subquery_plan(
        &mut self,
        q: &ast::Query,
        _lateral: bool,
    ) -> Result<(Plan, Vec<OutputColumn>)> {
        let saved_agg = self.agg.take();
        let saved_for_update = self.for_update;
        let result = self.query(q);
        self.for_update = saved_for_update;
        self.agg = saved_agg;
        result
    }

    pub(super) fn subquery_expr(
        &mut self,
        kind: SubqueryKind,
        plan: Plan,
        correlated: bool,
    ) -> Expr {
        self.next_subquery += 1;
        Expr::Subquery(Box::new(Subquery {
            id: self.next_subquery,
            kind,
            plan,
            correlated,
        }))
    }

    fn literal(&mut self, v: &ast::Value) -> Result<Typed> {
        use ast::Value as V;
        Ok(match v {
            V::Number(s, _) => number_literal(s)?,
            V::SingleQuotedString(s) | V::EscapedStringLiteral(s) => {
                (Expr::Const(Value::text(s.as_str())), DataType::Unknown)
            }
            V::DollarQuotedString(d) => (
                Expr::Const(Value::text(d.value.as_str())),
                DataType::Unknown,
            ),
            V::Boolean(b) => (Expr::Const(Value::Bool(*b)), DataType::Bool),
            V::Null => (Expr::Const(Value::Null), DataType::Unknown),
            V::Placeholder(p) => {
                let n: usize = p
                    .strip_prefix('$')
                    .and_then(|d| d.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Syntax,
                            format!("syntax error at or near \"{p}\""),
                        )
                    })?;
                if n > 65_535 {
                    bail!(Syntax, "parameter number {n} is out of range");
                }
                if self.params.len() < n {
                    self.params.resize(n, None);
                }
                let ty = self.params[n - 1].unwrap_or(DataType::Unknown);
                (Expr::Param(n - 1), ty)
            }
            other => bail!(FeatureNotSupported, "literal {other} is not supported"),
        })
    }

    pub(super) fn explicit_cast(&mut self, (e, from): Typed, to: DataType) -> Result<Typed> {
        if let Expr::Param(i) = e
            && from == DataType::Unknown
        {
            self.params[i] = Some(to);
            return Ok((Expr::Param(i), to));
        }
        if !can_cast(from, to) {
            bail!(
                CannotCoerce,
                "cannot cast type {} to {}",
                from.pg_name(),
                to.pg_name()
            );
        }
        if let Expr::Const(v) = e {
            return Ok((Expr::Const(cast(v, from, to, true)?), to));
        }
        Ok((
            Expr::Cast {
                expr: Box::new(e),
                from,
                to,
                explicit: true,
            },
            to,
        ))
    }

    fn unary(&mut self, op: ast::UnaryOperator, e: &ast::Expr, scope: &Scope) -> Result<Typed> {
        match op {
            ast::UnaryOperator::Not => {
                let inner = self.predicate(e, scope, "NOT")?;
                Ok((Expr::Not(Box::new(inner)), DataType::Bool))
            }
            ast::UnaryOperator::Minus => {
                // A negative numeric constant is one literal, as in
                // PostgreSQL's grammar (so -2147483648 is an integer).
                if let ast::Expr::Value(v) = e
                    && let ast::Value::Number(s, _) = &v.value
                {
                    return number_literal(&format!("-{s}"));
                }
                let (inner, ty) = self.expr(e, scope)?;
                if ty == DataType::Interval {
                    return Ok(self.negate_interval(inner));
                }
                let ty = if ty == DataType::Unknown {
                    DataType::Float8
                } else {
                    ty
                };
                if !ty.is_numeric() {
                    bail!(
                        UndefinedFunction,
                        "operator does not exist: - {}",
                        ty.pg_name()
                    );
                }
                let ty = ty.without_modifiers();
                if let Expr::Const(v) = &inner {
                    return Ok((Expr::Const(crate::types::ops::negate(v, ty)?), ty));
                }
                Ok((Expr::Neg(Box::new(inner), ty), ty))
            }
            ast::UnaryOperator::Plus => {
                let (inner, ty) = self.expr(e, scope)?;
                if !ty.is_numeric() && ty != DataType::Unknown {
                    bail!(
                        UndefinedFunction,
                        "operator does not exist: + {}",
                        ty.pg_name()
                    );
                }
                Ok((inner, ty))
            }
            other => Err(Error::unsupported(format!(
                "operator {other} is not supported"
            ))),
        }
    }

    fn binary(
        &mut self,
        l: &ast::Expr,
        op: &ast::BinaryOperator,
        r: &ast::Expr,
        scope: &Scope,
    ) -> Result<Typed> {
        use ast::BinaryOperator as B;
        let arith = |op| Some(op);
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::NotEq),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::LtEq),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(c) = cmp {
            return Ok((self.compare(l, c, r, scope)?, DataType::Bool));
        }
        let aop = match op {
            B::Plus => arith(ArithOp::Add),
            B::Minus => arith(ArithOp::Sub),
            B::Multiply => arith(ArithOp::Mul),
            B::Divide => arith(ArithOp::Div),
            B::Modulo => arith(ArithOp::Mod),
            _ => None,
        };
        if let Some(a) = aop {
            return self.arithmetic(l, a, r, scope);
        }
        match op {
            B::And | B::Or => {
                let word = if *op == B::And { "AND" } else { "OR" };
                let a = self.predicate(l, scope, word)?;
                let b = self.predicate(r, scope, word)?;
                let e = if *op == B::And {
                    Expr::And(Box::new(a), Box::new(b))
                } else {
                    Expr::Or(Box::new(a), Box::new(b))
                };
                Ok((e, DataType::Bool))
            }
            B::PGRegexMatch | B::PGRegexIMatch | B::PGRegexNotMatch | B::PGRegexNotIMatch => {
                let a = self.expr(l, scope)?;
                let b = self.expr(r, scope)?;
                let word = op.to_string();
                if !(a.1.is_string() || a.1 == DataType::Unknown)
                    || !(b.1.is_string() || b.1 == DataType::Unknown)
                {
                    return Err(undefined_operator(a.1, &word, b.1));
                }
                let a = self.text_operand(a)?;
                let b = self.text_operand(b)?;
                let ci = matches!(op, B::PGRegexIMatch | B::PGRegexNotIMatch);
                let m = Expr::Func(
                    crate::expr::Func::RegexMatch,
                    vec![a, b, Expr::Const(crate::types::Value::Bool(ci))],
                    DataType::Bool,
                );
                let negated = matches!(op, B::PGRegexNotMatch | B::PGRegexNotIMatch);
                Ok((
                    if negated { Expr::Not(Box::new(m)) } else { m },
                    DataType::Bool,
                ))
            }
            B::StringConcat => {
                let a = self.expr(l, scope)?;
                let b = self.expr(r, scope)?;
                let a = self.text_operand(a)?;
                let b = self.text_operand(b)?;
                Ok((Expr::Concat(Box::new(a), Box::new(b)), DataType::Text))
            }
            B::PGCustomBinaryOperator(parts) => {
                // `OPERATOR(pg_catalog.~)`: a built-in operator by its
                // qualified name, as psql writes them.
                let (schema, name) = match parts.as_slice() {
                    [name] => (None, name),
                    [schema, name] => (Some(schema.as_str()), name),
                    _ => bail!(Syntax, "improper qualified name: {op}"),
                };
                let plain = match name.as_str() {
                    "~" => Some(B::PGRegexMatch),
                    "~*" => Some(B::PGRegexIMatch),
                    "!~" => Some(B::PGRegexNotMatch),
                    "!~*" => Some(B::PGRegexNotIMatch),
                    "=" => Some(B::Eq),
                    "<>" | "!=" => Some(B::NotEq),
                    "<" => Some(B::Lt),
                    "<=" => Some(B::LtEq),
                    ">" => Some(B::Gt),
                    ">=" => Some(B::GtEq),
                    "+" => Some(B::Plus),
                    "-" => Some(B::Minus),
                    "*" => Some(B::Multiply),
                    "/" => Some(B::Divide),
                    "%" => Some(B::Modulo),
                    "||" => Some(B::StringConcat),
                    _ => None,
                };
                match plain {
                    Some(p) if matches!(schema, None | Some("pg_catalog")) => {
                        self.binary(l, &p, r, scope)
                    }
                    _ => bail!(UndefinedFunction, "operator does not exist: {op}"),
                }
            }
            other => Err(Error::unsupported(format!(
                "operator {other} is not supported yet"
            ))),
        }
    }

    pub(super) fn text_operand(&mut self, (e, ty): Typed) -> Result<Expr> {
        if ty == DataType::Text || ty == DataType::Unknown {
            return self.coerce((e, ty), DataType::Text);
        }
        Ok(Expr::Cast {
            expr: Box::new(e),
            from: ty,
            to: DataType::Text,
            explicit: true,
        })
    }

    /// The type two operands are compared in.
    pub(super) fn comparison_type(&self, l: DataType, r: DataType, op: &str) -> Result<DataType> {
        use DataType::Unknown;
        Ok(match (l, r) {
            (Unknown, Unknown) => DataType::Text,
            (Unknown, t) | (t, Unknown) => t.without_modifiers(),
            (a, b) if a.is_numeric() && b.is_numeric() => DataType::numeric_common(a, b),
            (a, b) if a.is_string() && b.is_string() => {
                if matches!((a, b), (DataType::Char(_), DataType::Char(_))) {
                    a
                } else {
                    DataType::Text
                }
            }
            (a, b) if a == b => a,
            (a, b) if a.is_datetime() && b.is_datetime() => super::datetime::datetime_common(a, b),
            (a, b) => return Err(undefined_operator(a, op, b)),
        })
    }

    fn comparable(
        &mut self,
        l: &ast::Expr,
        r: &ast::Expr,
        op: &str,
        scope: &Scope,
    ) -> Result<(Expr, Expr, DataType)> {
        let a = self.expr(l, scope)?;
        let b = self.expr(r, scope)?;
        let ty = self.comparison_type(a.1, b.1, op)?;
        let ty = if let DataType::Char(_) = ty {
            DataType::Text
        } else {
            ty
        };
        let a = self.coerce_text_like(a, ty)?;
        let b = self.coerce_text_like(b, ty)?;
        Ok((a, b, ty))
    }

    /// Like `coerce`, but CHAR/VARCHAR to TEXT needs no conversion of the
    /// stored form (CHAR is stored without trailing blanks).
    pub(super) fn coerce_text_like(&mut self, (e, from): Typed, to: DataType) -> Result<Expr> {
        if to == DataType::Text && from.is_string() {
            return Ok(e);
        }
        self.coerce((e, from), to)
    }

    /// Binds `l op r` as a comparison.
    pub fn compare(
        &mut self,
        l: &ast::Expr,
        op: CmpOp,
        r: &ast::Expr,
        scope: &Scope,
    ) -> Result<Expr> {
        if let Some(rows) = row_operands(l, r)? {
            return self.compare_rows(rows, op, scope);
        }
        let (a, b, _) = self.comparable(l, r, op.symbol(), scope)?;
        Ok(Expr::Cmp(op, Box::new(a), Box::new(b)))
    }

    fn arithmetic(
        &mut self,
        l: &ast::Expr,
        op: ArithOp,
        r: &ast::Expr,
        scope: &Scope,
    ) -> Result<Typed> {
        let a = self.expr(l, scope)?;
        let b = self.expr(r, scope)?;
        if let Some(done) = self.datetime_arithmetic(op, a.clone(), b.clone())? {
            return Ok(done);
        }
        use DataType::Unknown;
        let ty = match (a.1, b.1) {
            (Unknown, Unknown) => {
                bail!(
                    UndefinedFunction,
                    "operator is not unique: unknown {} unknown",
                    op.symbol()
                )
            }
            (Unknown, t) | (t, Unknown) if t.is_numeric() => t.without_modifiers(),
            (x, y) if x.is_numeric() && y.is_numeric() => {
                DataType::numeric_common(x, y).without_modifiers()
            }
            (x, y) => return Err(undefined_operator(x, op.symbol(), y)),
        };
        if op == ArithOp::Mod && ty.is_float() {
            return Err(undefined_operator(a.1, "%", b.1));
        }
        let left = self.coerce(a, ty)?;
        let right = self.coerce(b, ty)?;
        // Fold constants so errors like 1/0 surface at bind time, as in
        // PostgreSQL's planner.
        if let (Expr::Const(x), Expr::Const(y)) = (&left, &right) {
            return Ok((Expr::Const(crate::types::ops::arith(op, x, y, ty)?), ty));
        }
        Ok((
            Expr::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
                ty,
            },
            ty,
        ))
    }
}
