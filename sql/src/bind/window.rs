//! Binding window function calls (`f(…) OVER (…)`, `WINDOW w AS (…)`).
//!
//! A call found in the select list or ORDER BY is bound against the rows
//! the window node will see (the FROM rows, or the groups of a grouped
//! query, so `sum(sum(x)) OVER ()` works) and stands for a placeholder
//! column; `select_list` puts a `Plan::Window` above the aggregation and
//! moves the placeholders to the columns it appends.

use super::*;
use crate::plan::{AggCall, AggFunc, Frame, FrameBound, WindowCall, WindowFunc};

/// Placeholder columns of window results start here until the width of
/// the window node's input is known.
pub(super) const WINDOW_BASE: usize = 1 << 24;

/// The window calls of the query being bound, and its named windows.
#[derive(Default)]
pub(super) struct WindowState {
    /// Calls found so far (placeholder `WINDOW_BASE + i`).
    pub calls: Vec<WindowCall>,
    /// `WINDOW name AS (…)`.
    pub named: Vec<(String, ast::WindowSpec)>,
}

fn window_func(name: &str) -> Option<WindowFunc> {
    Some(match name {
        "row_number" => WindowFunc::RowNumber,
        "rank" => WindowFunc::Rank,
        "dense_rank" => WindowFunc::DenseRank,
        "percent_rank" => WindowFunc::PercentRank,
        "cume_dist" => WindowFunc::CumeDist,
        "ntile" => WindowFunc::Ntile,
        "lag" => WindowFunc::Lag,
        "lead" => WindowFunc::Lead,
        "first_value" => WindowFunc::FirstValue,
        "last_value" => WindowFunc::LastValue,
        "nth_value" => WindowFunc::NthValue,
        _ => return None,
    })
}

impl Binder<'_> {
    /// The window spec `over` names, with a named window's partition and
    /// order filled in (`OVER w`, `OVER (w ORDER BY …)`).
    fn resolve_window(&self, over: &ast::WindowType) -> Result<ast::WindowSpec> {
        let named = |n: &ast::Ident| -> Result<ast::WindowSpec> {
            let name = ident(n);
            self.windows
                .as_ref()
                .and_then(|w| w.named.iter().find(|(k, _)| *k == name))
                .map(|(_, s)| s.clone())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedObject,
                        format!("window \"{name}\" does not exist"),
                    )
                })
        };
        match over {
            ast::WindowType::NamedWindow(n) => named(n),
            ast::WindowType::WindowSpec(spec) => match &spec.window_name {
                None => Ok(spec.clone()),
                Some(n) => {
                    let base = named(n)?;
                    if !spec.partition_by.is_empty() {
                        bail!(
                            Windowing,
                            "cannot override PARTITION BY clause of window \"{}\"",
                            ident(n)
                        );
                    }
                    if !spec.order_by.is_empty() && !base.order_by.is_empty() {
                        bail!(
                            Windowing,
                            "cannot override ORDER BY clause of window \"{}\"",
                            ident(n)
                        );
                    }
                    Ok(ast::WindowSpec {
                        window_name: None,
                        partition_by: base.partition_by,
                        order_by: if spec.order_by.is_empty() {
                            base.order_by
                        } else {
                            spec.order_by.clone()
                        },
                        window_frame: spec.window_frame.clone().or(base.window_frame),
                    })
                }
            },
        }
    }

    /// Records `WINDOW name AS (…)` definitions for the select list.
    pub(super) fn define_windows(&mut self, defs: &[ast::NamedWindowDefinition]) -> Result<()> {
        for ast::NamedWindowDefinition(name, expr) in defs {
            let spec = match expr {
                ast::NamedWindowExpr::WindowSpec(s) => {
                    self.resolve_window(&ast::WindowType::WindowSpec(s.clone()))?
                }
                ast::NamedWindowExpr::NamedWindow(other) => {
                    self.resolve_window(&ast::WindowType::NamedWindow(other.clone()))?
                }
            };
            let state = self.windows.get_or_insert_with(WindowState::default);
            state.named.push((ident(name), spec));
        }
        Ok(())
    }

    /// A frame bound's offset: a non-negative integer constant.
    fn frame_offset(&mut self, e: &ast::Expr, scope: &Scope) -> Result<u64> {
        let (bound, ty) = self.expr(e, scope)?;
        let v = match bound {
            Expr::Const(v) if ty.is_integer() || ty == DataType::Unknown => v,
            _ => bail!(
                FeatureNotSupported,
                "window frame offsets must be integer constants here"
            ),
        };
        let negative = || {
            Error::new(
                ErrorKind::InvalidPrecedingOrFollowingSize,
                "frame starting or ending offset must not be negative",
            )
        };
        match v {
            crate::types::Value::Int(i) if i >= 0 => Ok(i as u64),
            crate::types::Value::Text(t) => match t.trim().parse::<i64>() {
                Ok(i) if i >= 0 => Ok(i as u64),
                Ok(_) => Err(negative()),
                Err(_) => Err(Error::new(
                    ErrorKind::InvalidTextRepresentation,
                    format!("invalid input syntax for type bigint: \"{t}\""),
                )),
            },
            crate::types::Value::Null => Err(Error::new(
                ErrorKind::NullValueNotAllowed,
                "frame starting or ending offset must not be null",
            )),
            _ => Err(negative()),
        }
    }

    fn frame(&mut self, spec: &ast::WindowSpec, scope: &Scope) -> Result<Frame> {
        let Some(f) = &spec.window_frame else {
            return Ok(Frame {
                rows: false,
                start: FrameBound::UnboundedPreceding,
                end: FrameBound::CurrentRow,
            });
        };
        let rows = match f.units {
            ast::WindowFrameUnits::Rows => true,
            ast::WindowFrameUnits::Range => false,
            ast::WindowFrameUnits::Groups => {
                bail!(
                    FeatureNotSupported,
                    "GROUPS window frames are not supported"
                )
            }
        };
        let mut bound = |b: &ast::WindowFrameBound| -> Result<FrameBound> {
            Ok(match b {
                ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
                ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
                ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
                ast::WindowFrameBound::Preceding(Some(_))
                | ast::WindowFrameBound::Following(Some(_))
                    if !rows =>
                {
                    bail!(
                        FeatureNotSupported,
                        "RANGE with an offset PRECEDING/FOLLOWING is not supported (use ROWS)"
                    )
                }
                ast::WindowFrameBound::Preceding(Some(e)) => {
                    FrameBound::Preceding(self.frame_offset(e, scope)?)
                }
                ast::WindowFrameBound::Following(Some(e)) => {
                    FrameBound::Following(self.frame_offset(e, scope)?)
                }
            })
        };
        let start = bound(&f.start_bound)?;
        let end = match &f.end_bound {
            Some(b) => bound(b)?,
            None => FrameBound::CurrentRow,
        };
        if start == FrameBound::UnboundedFollowing {
            bail!(Windowing, "frame start cannot be UNBOUNDED FOLLOWING");
        }
        if end == FrameBound::UnboundedPreceding {
            bail!(Windowing, "frame end cannot be UNBOUNDED PRECEDING");
        }
        let rank = |b: FrameBound| match b {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(_) => 1,
            FrameBound::CurrentRow => 2,
            FrameBound::Following(_) => 3,
            FrameBound::UnboundedFollowing => 4,
        };
        if rank(start) > rank(end) {
            bail!(
                Windowing,
                "frame starting from {} cannot have {} rows",
                if rank(start) == 2 {
                    "current row"
                } else {
                    "following row"
                },
                if rank(end) == 2 {
                    "current"
                } else {
                    "preceding"
                }
            );
        }
        Ok(Frame { rows, start, end })
    }

    /// Binds `f(args) OVER …` (`name` is the function's name) and returns
    /// its placeholder column.
    pub(super) fn window_call(
        &mut self,
        name: &str,
        f: &ast::Function,
        over: &ast::WindowType,
        args: &[ast::Expr],
        (distinct, star): (bool, bool),
        scope: &Scope,
    ) -> Result<Typed> {
        if self.windows.is_none() {
            bail!(Windowing, "window functions are not allowed here");
        }
        if distinct {
            bail!(
                FeatureNotSupported,
                "DISTINCT is not implemented for window functions"
            );
        }
        if f.filter.is_some() {
            bail!(
                FeatureNotSupported,
                "FILTER is not supported for window functions"
            );
        }
        let spec = self.resolve_window(over)?;
        let func = match (window_func(name), expr::is_aggregate_name(name)) {
            (Some(w), _) => w,
            (None, Some(AggFunc::StringAgg)) => bail!(
                FeatureNotSupported,
                "string_agg as a window function is not supported"
            ),
            (None, Some(a)) => WindowFunc::Agg(a),
            (None, None) => bail!(
                WrongObjectType,
                "function {name} is not a window function nor an aggregate"
            ),
        };
        // Arguments, partition and order are bound with this query's
        // window state set aside: a window call inside them is nested.
        let state = self.windows.take();
        let bound = self.window_parts(func, args, star, &spec, scope);
        self.windows = state;
        let (args, partition, order) = bound?;
        let frame = self.frame(&spec, scope)?;
        let count = args.len();
        let arity_error = || {
            Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name} with {count} arguments does not exist"),
            )
        };
        let arg_ty = args.first().map_or(DataType::Int8, |(_, t)| *t);
        let (mut exprs, types): (Vec<Expr>, Vec<DataType>) = args.into_iter().unzip();
        let (ty, agg) = match func {
            WindowFunc::RowNumber | WindowFunc::Rank | WindowFunc::DenseRank => {
                if !exprs.is_empty() {
                    return Err(arity_error());
                }
                (DataType::Int8, None)
            }
            WindowFunc::PercentRank | WindowFunc::CumeDist => {
                if !exprs.is_empty() {
                    return Err(arity_error());
                }
                (DataType::Float8, None)
            }
            WindowFunc::Ntile => {
                if exprs.len() != 1 {
                    return Err(arity_error());
                }
                exprs[0] = self.coerce((exprs[0].clone(), types[0]), DataType::Int4)?;
                (DataType::Int4, None)
            }
            WindowFunc::Lag | WindowFunc::Lead => {
                if exprs.is_empty() || exprs.len() > 3 {
                    return Err(arity_error());
                }
                let ty = self.value_argument(&mut exprs, &types)?;
                if exprs.len() > 1 {
                    exprs[1] = self.coerce((exprs[1].clone(), types[1]), DataType::Int4)?;
                }
                if exprs.len() > 2 {
                    exprs[2] = self.coerce((exprs[2].clone(), types[2]), ty)?;
                }
                (ty, None)
            }
            WindowFunc::FirstValue | WindowFunc::LastValue | WindowFunc::NthValue => {
                let want = if func == WindowFunc::NthValue { 2 } else { 1 };
                if exprs.len() != want {
                    return Err(arity_error());
                }
                let ty = self.value_argument(&mut exprs, &types)?;
                if want == 2 {
                    exprs[1] = self.coerce((exprs[1].clone(), types[1]), DataType::Int4)?;
                }
                (ty, None)
            }
            WindowFunc::Agg(a) => {
                match (star, exprs.len()) {
                    (true, 0) if a == AggFunc::Count => {}
                    (false, 1) => {}
                    _ => return Err(arity_error()),
                }
                let mut arg_ty = arg_ty;
                if star {
                    arg_ty = DataType::Int8;
                } else if arg_ty == DataType::Unknown {
                    arg_ty = match a {
                        AggFunc::Sum | AggFunc::Avg => DataType::Numeric(None),
                        AggFunc::BoolAnd | AggFunc::BoolOr => DataType::Bool,
                        _ => DataType::Text,
                    };
                    exprs[0] = self.coerce((exprs[0].clone(), DataType::Unknown), arg_ty)?;
                }
                let Some(ty) = calls::aggregate_type(a, arg_ty) else {
                    bail!(
                        UndefinedFunction,
                        "function {}({}) does not exist",
                        a.name(),
                        arg_ty.pg_name()
                    );
                };
                let call = AggCall {
                    func: a,
                    arg: None,
                    arg_ty,
                    ty,
                    distinct: false,
                    delimiter: None,
                    order: None,
                };
                (ty, Some(call))
            }
        };
        let state = self.windows.as_mut().expect("checked above");
        state.calls.push(WindowCall {
            func,
            args: exprs,
            arg_ty,
            partition,
            order,
            frame,
            ty,
            agg,
        });
        Ok((Expr::Column(WINDOW_BASE + state.calls.len() - 1), ty))
    }

    /// The type of a value function's first argument (an untyped literal
    /// is text), with the argument converted to it.
    fn value_argument(&mut self, exprs: &mut [Expr], types: &[DataType]) -> Result<DataType> {
        let ty = if types[0] == DataType::Unknown {
            DataType::Text
        } else {
            types[0]
        };
        exprs[0] = self.coerce((exprs[0].clone(), types[0]), ty)?;
        Ok(ty)
    }

    #[allow(clippy::type_complexity)]
    fn window_parts(
        &mut self,
        func: WindowFunc,
        args: &[ast::Expr],
        star: bool,
        spec: &ast::WindowSpec,
        scope: &Scope,
    ) -> Result<(Vec<Typed>, Vec<Expr>, Vec<(Expr, bool, bool)>)> {
        if star && !matches!(func, WindowFunc::Agg(AggFunc::Count)) {
            bail!(
                UndefinedFunction,
                "function {}(*) does not exist",
                func.name()
            );
        }
        let mut bound = Vec::new();
        for a in args {
            bound.push(self.expr(a, scope)?);
        }
        let mut partition = Vec::new();
        for p in &spec.partition_by {
            partition.push(self.expr(p, scope)?.0);
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            let (e, _) = self.expr(&o.expr, scope)?;
            if matches!(o.options.sort, Some(ast::OrderBySort::Using(_))) {
                bail!(FeatureNotSupported, "ORDER BY ... USING is not supported");
            }
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            let nulls_first = o.options.nulls_first.unwrap_or(desc);
            order.push((e, desc, nulls_first));
        }
        Ok((bound, partition, order))
    }
}
