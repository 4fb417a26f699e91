//! Function calls in expressions: which kind of call a name is (an
//! aggregate, a window function, a scalar function) and the binding of
//! aggregate calls against the grouped query's state.

use self::expr::{function_name, is_aggregate_name};
use super::*;
use crate::expr::SubqueryKind;
use crate::plan::{AggCall, AggFunc};

impl Binder<'_> {
    pub(super) fn function(&mut self, f: &ast::Function, scope: &Scope) -> Result<Typed> {
        let name = function_name(f);
        let mut order_by: Option<&ast::OrderByExpr> = None;
        let (args, distinct, star) = match &f.args {
            ast::FunctionArguments::None => (Vec::new(), false, false),
            ast::FunctionArguments::List(list) => {
                for clause in &list.clauses {
                    match clause {
                        ast::FunctionArgumentClause::OrderBy(items) if items.len() == 1 => {
                            order_by = Some(&items[0]);
                        }
                        other => bail!(
                            FeatureNotSupported,
                            "{other} inside a function call is not supported yet"
                        ),
                    }
                }
                let distinct = matches!(
                    list.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                );
                let mut star = false;
                let mut args = Vec::new();
                for a in &list.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            args.push(e.clone())
                        }
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
                        other => bail!(
                            FeatureNotSupported,
                            "function argument {other} is not supported"
                        ),
                    }
                }
                (args, distinct, star)
            }
            ast::FunctionArguments::Subquery(q) if name == "array" => {
                let (plan, columns, correlated) = self.expression_subquery(q, scope)?;
                if columns.len() != 1 {
                    bail!(Syntax, "subquery must return only one column");
                }
                let kind = SubqueryKind::Array {
                    elem: columns[0].ty,
                };
                return Ok((self.subquery_expr(kind, plan, correlated), DataType::Text));
            }
            ast::FunctionArguments::Subquery(_) => bail!(
                FeatureNotSupported,
                "subquery arguments are not supported yet"
            ),
        };
        if let Some(over) = &f.over {
            if order_by.is_some() {
                bail!(
                    FeatureNotSupported,
                    "ORDER BY inside a window function's arguments is not supported"
                );
            }
            return self.window_call(&name, f, over, &args, (distinct, star), scope);
        }
        if let Some(func) = is_aggregate_name(&name) {
            // ORDER BY inside an aggregate matters only to string_agg,
            // and only by the aggregated value here.
            let order = match order_by {
                None => None,
                Some(o) if func == AggFunc::StringAgg && args.first() == Some(&o.expr) => {
                    Some(matches!(o.options.sort, Some(ast::OrderBySort::Desc)))
                }
                Some(_) if !matches!(func, AggFunc::StringAgg) => None,
                Some(o) => bail!(
                    FeatureNotSupported,
                    "string_agg(... ORDER BY {}) is supported only ordered by the aggregated value",
                    o.expr
                ),
            };
            let (args, delimiter) = if func == AggFunc::StringAgg {
                let [value, delim] = args.as_slice() else {
                    bail!(
                        UndefinedFunction,
                        "function string_agg() takes a value and a delimiter"
                    );
                };
                let delimiter = match self.expr(delim, scope)? {
                    (Expr::Const(crate::types::Value::Text(d)), _) => Some(d.to_string()),
                    (Expr::Const(crate::types::Value::Null), _) => None,
                    _ => bail!(
                        FeatureNotSupported,
                        "string_agg's delimiter must be a constant here"
                    ),
                };
                (vec![value.clone()], delimiter)
            } else {
                (args, None)
            };
            return self.aggregate(func, &args, (distinct, star), scope, (delimiter, order));
        }
        if order_by.is_some() {
            bail!(
                Syntax,
                "ORDER BY specified, but {name} is not an aggregate function"
            );
        }
        if star || distinct {
            bail!(UndefinedFunction, "function {name}(*) does not exist");
        }
        let mut bound = Vec::new();
        for a in &args {
            bound.push(self.expr(a, scope)?);
        }
        self.scalar_function(&name, bound)
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        args: &[ast::Expr],
        (distinct, star): (bool, bool),
        _scope: &Scope,
        // string_agg's delimiter, and ORDER BY the value (descending?).
        (delimiter, order): (Option<String>, Option<bool>),
    ) -> Result<Typed> {
        let Some(state) = self.agg.take() else {
            bail!(Grouping, "aggregate functions are not allowed here");
        };
        // Arguments are bound against the input rows, where nested
        // aggregates (and window functions) are not allowed.
        let arg = match (star, args) {
            (true, []) if func == AggFunc::Count => None,
            (false, [a]) => {
                let windows = self.windows.take();
                let bound = self.expr(a, &state.input).map_err(|mut e| {
                    if windows.is_some() && e.kind == ErrorKind::Windowing {
                        e.kind = ErrorKind::Grouping;
                        e.message =
                            "aggregate function calls cannot contain window function calls".into();
                    }
                    e
                });
                self.windows = windows;
                match bound {
                    Ok(b) => Some(b),
                    Err(e) => {
                        self.agg = Some(state);
                        return Err(e);
                    }
                }
            }
            _ => {
                self.agg = Some(state);
                bail!(
                    UndefinedFunction,
                    "function {}() with {} arguments does not exist",
                    func.name(),
                    args.len()
                );
            }
        };
        let mut state = state;
        let (arg, arg_ty) = match arg {
            Some((e, DataType::Unknown)) => {
                let t = match func {
                    AggFunc::Sum | AggFunc::Avg => DataType::Numeric(None),
                    AggFunc::BoolAnd | AggFunc::BoolOr => DataType::Bool,
                    _ => DataType::Text,
                };
                (Some(self.coerce((e, DataType::Unknown), t)?), t)
            }
            Some((e, t)) => (Some(e), t),
            None => (None, DataType::Int8),
        };
        let Some(ty) = aggregate_type(func, arg_ty) else {
            self.agg = Some(state);
            bail!(
                UndefinedFunction,
                "function {}({}) does not exist",
                func.name(),
                arg_ty.pg_name()
            );
        };
        let call = AggCall {
            func,
            arg,
            arg_ty,
            ty,
            distinct,
            delimiter,
            order,
        };
        let index = match state.aggs.iter().position(|a| *a == call) {
            Some(i) => i,
            None => {
                state.aggs.push(call);
                state.aggs.len() - 1
            }
        };
        let column = state.group_by.len() + index;
        self.agg = Some(state);
        Ok((Expr::Column(column), ty))
    }
}

/// The result type of aggregate `func` over `arg_ty`; `None` when there is
/// no such aggregate.
pub(super) fn aggregate_type(func: AggFunc, arg_ty: DataType) -> Option<DataType> {
    Some(match (func, arg_ty) {
        (AggFunc::Count, _) => DataType::Int8,
        (AggFunc::Sum, DataType::Int2 | DataType::Int4) => DataType::Int8,
        (AggFunc::Sum, DataType::Int8 | DataType::Numeric(_)) => DataType::Numeric(None),
        (AggFunc::Sum, t) if t.is_float() => t,
        (AggFunc::Avg, t) if t.is_integer() || matches!(t, DataType::Numeric(_)) => {
            DataType::Numeric(None)
        }
        (AggFunc::Avg, t) if t.is_float() => DataType::Float8,
        (AggFunc::Min | AggFunc::Max, t) if t != DataType::Bool => t.without_modifiers(),
        (AggFunc::StringAgg, t) if t.is_string() => DataType::Text,
        (AggFunc::BoolAnd | AggFunc::BoolOr, DataType::Bool) => DataType::Bool,
        _ => return None,
    })
}
