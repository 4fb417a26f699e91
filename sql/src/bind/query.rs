//! Binding queries: SELECT, set operations, VALUES, ORDER BY and LIMIT.

use super::*;
use crate::plan::Access;

/// The ORDER BY items and LIMIT clause that apply to a query body.
struct Tail<'q> {
    order: Vec<&'q ast::OrderByExpr>,
    limit: Option<&'q ast::LimitClause>,
}

impl<'q> Tail<'q> {
    fn of(q: &'q ast::Query) -> Result<Tail<'q>> {
        let order = match &q.order_by {
            None => Vec::new(),
            Some(ob) => match &ob.kind {
                ast::OrderByKind::Expressions(items) => items.iter().collect(),
                ast::OrderByKind::All(_) => {
                    bail!(FeatureNotSupported, "ORDER BY ALL is not supported")
                }
            },
        };
        Ok(Tail {
            order,
            limit: q.limit_clause.as_ref(),
        })
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty() && self.limit.is_none()
    }
}

/// The result columns of a plan as a scope (for ORDER BY over a set
/// operation, or a derived table).
pub(super) fn output_scope(columns: &[OutputColumn], qualifier: Option<&str>) -> Scope {
    Scope {
        columns: columns
            .iter()
            .map(|c| ScopeColumn {
                table: qualifier.map(str::to_string),
                name: c.name.clone(),
                ty: c.ty,
                origin: None,
                hidden: false,
                using_level: 0,
            })
            .collect(),
    }
}

impl Binder<'_> {
    /// Binds a query to a plan and its result columns.
    pub(super) fn query(&mut self, q: &ast::Query) -> Result<(Plan, Vec<OutputColumn>)> {
        crate::interrupt::check_stack()?;
        // WITH: each common table expression is visible to the later ones
        // and to the body, and is bound where it is referenced (as a view
        // is), so every reference plans it with the keys it is used with.
        let visible = self.ctes.len();
        if let Some(with) = &q.with {
            if with.recursive {
                bail!(FeatureNotSupported, "WITH RECURSIVE is not supported yet");
            }
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                if self.ctes[visible..].iter().any(|(n, _)| *n == name) {
                    self.ctes.truncate(visible);
                    bail!(
                        DuplicateAlias,
                        "WITH query name \"{name}\" specified more than once"
                    );
                }
                if !matches!(
                    cte.query.body.as_ref(),
                    ast::SetExpr::Select(_)
                        | ast::SetExpr::Query(_)
                        | ast::SetExpr::SetOperation { .. }
                        | ast::SetExpr::Values(_)
                ) {
                    self.ctes.truncate(visible);
                    bail!(
                        FeatureNotSupported,
                        "data-modifying statements in WITH are not supported yet"
                    );
                }
                self.ctes.push((name, cte.clone()));
            }
        }
        let result = self.query_without_with(q);
        self.ctes.truncate(visible);
        result
    }

    fn query_without_with(&mut self, q: &ast::Query) -> Result<(Plan, Vec<OutputColumn>)> {
        if q.fetch.is_some() {
            bail!(FeatureNotSupported, "FETCH is not supported yet");
        }
        for lock in &q.locks {
            if lock.lock_type != ast::LockType::Update
                || lock.nonblock.is_some()
                || lock.of.is_some()
            {
                bail!(FeatureNotSupported, "only FOR UPDATE is supported");
            }
            self.for_update = true;
        }
        let tail = Tail::of(q)?;
        match q.body.as_ref() {
            ast::SetExpr::Select(s) => self.select(s, &tail),
            body => {
                let (plan, columns) = self.set_expr(body)?;
                self.order_and_limit(plan, columns, &tail)
            }
        }
    }

    /// A query body without its own ORDER BY/LIMIT.
    fn set_expr(&mut self, body: &ast::SetExpr) -> Result<(Plan, Vec<OutputColumn>)> {
        crate::interrupt::check_stack()?;
        match body {
            ast::SetExpr::Select(s) => self.select(
                s,
                &Tail {
                    order: Vec::new(),
                    limit: None,
                },
            ),
            ast::SetExpr::Query(q) => self.query(q),
            ast::SetExpr::Values(v) => self.values(v),
            ast::SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let op = match op {
                    ast::SetOperator::Union => SetOpKind::Union,
                    ast::SetOperator::Intersect => SetOpKind::Intersect,
                    ast::SetOperator::Except => SetOpKind::Except,
                    other => bail!(FeatureNotSupported, "{other} is not supported"),
                };
                let all = match set_quantifier {
                    ast::SetQuantifier::All => true,
                    ast::SetQuantifier::None | ast::SetQuantifier::Distinct => false,
                    other => bail!(FeatureNotSupported, "{other} is not supported"),
                };
                let (lp, lc) = self.set_expr(left)?;
                let (rp, rc) = self.set_expr(right)?;
                let name = match op {
                    SetOpKind::Union => "UNION",
                    SetOpKind::Intersect => "INTERSECT",
                    SetOpKind::Except => "EXCEPT",
                };
                if lc.len() != rc.len() {
                    bail!(
                        Syntax,
                        "each {name} query must have the same number of columns"
                    );
                }
                let mut types = Vec::new();
                for (l, r) in lc.iter().zip(&rc) {
                    types.push(common_type(&[l.ty, r.ty], name)?);
                }
                let lp = self.convert_columns(lp, &lc, &types)?;
                let rp = self.convert_columns(rp, &rc, &types)?;
                let columns = lc
                    .iter()
                    .zip(&types)
                    .map(|(c, ty)| OutputColumn {
                        name: c.name.clone(),
                        ty: *ty,
                    })
                    .collect();
                Ok((
                    Plan::SetOp {
                        op,
                        all,
                        left: Box::new(lp),
                        right: Box::new(rp),
                    },
                    columns,
                ))
            }
            other => bail!(FeatureNotSupported, "query not supported yet: {other}"),
        }
    }

    /// Adds a projection converting each column to `types` where needed.
    pub(super) fn convert_columns(
        &mut self,
        plan: Plan,
        columns: &[OutputColumn],
        types: &[DataType],
    ) -> Result<Plan> {
        if columns.iter().zip(types).all(|(c, t)| c.ty == *t) {
            return Ok(plan);
        }
        let mut exprs = Vec::new();
        for (i, (c, t)) in columns.iter().zip(types).enumerate() {
            exprs.push(self.coerce((Expr::Column(i), c.ty), *t)?);
        }
        Ok(Plan::Project {
            input: Box::new(plan),
            exprs,
            types: types.to_vec(),
        })
    }

    /// `VALUES (...), (...)` as a query.
    fn values(&mut self, v: &ast::Values) -> Result<(Plan, Vec<OutputColumn>)> {
        let width = v.rows.first().map_or(0, |r| r.len());
        let empty = Scope::default();
        let mut typed_rows = Vec::new();
        for row in &v.rows {
            if row.len() != width {
                bail!(Syntax, "VALUES lists must all be the same length");
            }
            typed_rows.push(
                row.iter()
                    .map(|e| self.expr(e, &empty))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let mut types = Vec::new();
        for c in 0..width {
            let col: Vec<DataType> = typed_rows.iter().map(|r| r[c].1).collect();
            types.push(common_type(&col, "VALUES")?);
        }
        let mut rows = Vec::new();
        for r in typed_rows {
            let mut out = Vec::new();
            for (t, ty) in r.into_iter().zip(&types) {
                out.push(self.coerce(t, *ty)?);
            }
            rows.push(out);
        }
        let columns = types
            .iter()
            .enumerate()
            .map(|(i, ty)| OutputColumn {
                name: format!("column{}", i + 1),
                ty: *ty,
            })
            .collect();
        Ok((Plan::Values { rows, types }, columns))
    }

    /// ORDER BY and LIMIT over the output columns of a query body.
    fn order_and_limit(
        &mut self,
        plan: Plan,
        columns: Vec<OutputColumn>,
        tail: &Tail<'_>,
    ) -> Result<(Plan, Vec<OutputColumn>)> {
        if tail.is_empty() {
            return Ok((plan, columns));
        }
        let scope = output_scope(&columns, None);
        let mut exprs: Vec<Expr> = (0..columns.len()).map(Expr::Column).collect();
        let mut types: Vec<DataType> = columns.iter().map(|c| c.ty).collect();
        let keys = self.sort_keys(&tail.order, &scope, &columns, &mut exprs, &mut types)?;
        let visible = columns.len();
        let mut plan = plan;
        if exprs.len() > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs,
                types: types.clone(),
            };
        }
        if !keys.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        plan = self.limit(plan, tail)?;
        if types.len() > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
                types: types[..visible].to_vec(),
            };
        }
        Ok((plan, columns))
    }

    fn select(&mut self, s: &ast::Select, tail: &Tail<'_>) -> Result<(Plan, Vec<OutputColumn>)> {
        if s.into.is_some() {
            bail!(FeatureNotSupported, "SELECT INTO is not supported");
        }
        // Window functions belong to the select list and ORDER BY of this
        // query only (not its FROM, WHERE or GROUP BY).
        let saved_windows = self.windows.take();
        let result = self.select_with_windows(s, tail);
        self.windows = saved_windows;
        result
    }

    fn select_with_windows(
        &mut self,
        s: &ast::Select,
        tail: &Tail<'_>,
    ) -> Result<(Plan, Vec<OutputColumn>)> {
        // FROM and WHERE (with access paths and join order).
        let (plan, scope) = self.bind_from(&s.from, s.selection.as_ref())?;
        let group_exprs: &[ast::Expr] = match &s.group_by {
            ast::GroupByExpr::Expressions(g, mods) if mods.is_empty() => g,
            _ => bail!(
                FeatureNotSupported,
                "GROUP BY ALL and grouping modifiers are not supported"
            ),
        };
        // HAVING alone makes a query grouped, as in PostgreSQL.
        let grouped = !group_exprs.is_empty()
            || s.having.is_some()
            || s.projection.iter().any(select_item_has_aggregate)
            || tail.order.iter().any(|o| contains_aggregate(&o.expr));
        let saved = self.agg.take();
        if grouped {
            let mut group_by = Vec::new();
            for g in group_exprs {
                if contains_aggregate(g) {
                    bail!(Grouping, "aggregate functions are not allowed in GROUP BY");
                }
                group_by.push(self.group_key(g, &scope, &s.projection)?);
            }
            // Columns of a table whose primary key is grouped may be used
            // ungrouped (PostgreSQL's functional dependency): they join the
            // keys, which splits no group. Only the names the query uses.
            let grouped: Vec<usize> = group_by
                .iter()
                .filter_map(|(e, _)| match e {
                    Expr::Column(i) => Some(*i),
                    _ => None,
                })
                .collect();
            let wanted = names_used(s, tail);
            for (i, ty) in scope.dependent_columns(&grouped, wanted.as_ref()) {
                group_by.push((Expr::Column(i), ty));
            }
            self.agg = Some(AggState {
                input: scope.clone(),
                group_by,
                aggs: Vec::new(),
            });
        }
        self.windows = Some(Default::default());
        let result = self
            .define_windows(&s.named_window)
            .and_then(|()| self.select_list(s, tail, plan, &scope));
        self.agg = saved;
        result
    }

    fn group_key(
        &mut self,
        g: &ast::Expr,
        scope: &Scope,
        projection: &[ast::SelectItem],
    ) -> Result<Typed> {
        // GROUP BY may name an output column by position...
        if let ast::Expr::Value(v) = g
            && let ast::Value::Number(n, _) = &v.value
        {
            let pos: usize = n
                .parse()
                .map_err(|_| Error::new(ErrorKind::Syntax, "non-integer constant in GROUP BY"))?;
            return match projection.get(pos.wrapping_sub(1)) {
                Some(ast::SelectItem::UnnamedExpr(e))
                | Some(ast::SelectItem::ExprWithAlias { expr: e, .. }) => self.expr(e, scope),
                _ => bail!(
                    InvalidColumnReference,
                    "GROUP BY position {pos} is not in select list"
                ),
            };
        }
        // ...or by alias, when the name is not a column.
        if let ast::Expr::Identifier(i) = g {
            let name = ident(i);
            if scope.resolve(None, &name).is_err() {
                for item in projection {
                    if let ast::SelectItem::ExprWithAlias { expr, alias } = item
                        && ident(alias) == name
                    {
                        return self.expr(expr, scope);
                    }
                }
            }
        }
        self.expr(g, scope)
    }

    fn select_list(
        &mut self,
        s: &ast::Select,
        tail: &Tail<'_>,
        mut plan: Plan,
        scope: &Scope,
    ) -> Result<(Plan, Vec<OutputColumn>)> {
        let mut exprs = Vec::new();
        let mut types = Vec::new();
        let mut columns = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    if scope.columns.is_empty() {
                        bail!(Syntax, "SELECT * with no tables specified is not valid");
                    }
                    for i in scope.star_order() {
                        self.star_column(i, scope, &mut exprs, &mut types, &mut columns)?;
                    }
                }
                ast::SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let t = object_name(n)?;
                    let cols: Vec<usize> = (0..scope.columns.len())
                        .filter(|&i| scope.columns[i].table.as_deref() == Some(&t))
                        .collect();
                    if cols.is_empty() {
                        bail!(
                            UndefinedTable,
                            "missing FROM-clause entry for table \"{t}\""
                        );
                    }
                    for i in cols {
                        self.star_column(i, scope, &mut exprs, &mut types, &mut columns)?;
                    }
                }
                // Unknown literals keep their type so that a set operation or
                // INSERT ... SELECT can still resolve them; clients see text.
                ast::SelectItem::UnnamedExpr(e) => {
                    let (bound, ty) = self.expr(e, scope)?;
                    exprs.push(bound);
                    types.push(ty);
                    columns.push(OutputColumn {
                        name: column_name(e),
                        ty,
                    });
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (bound, ty) = self.expr(expr, scope)?;
                    exprs.push(bound);
                    types.push(ty);
                    columns.push(OutputColumn {
                        name: ident(alias),
                        ty,
                    });
                }
                other => bail!(FeatureNotSupported, "select item not supported: {other}"),
            }
        }
        // No window functions in HAVING (they run after it).
        let windows = self.windows.take();
        let having = match &s.having {
            Some(h) => self.predicate(h, scope, "HAVING").map(Some),
            None => Ok(None),
        };
        self.windows = windows;
        let having = having?;
        let visible = exprs.len();
        let keys = self.sort_keys(&tail.order, scope, &columns, &mut exprs, &mut types)?;
        // DISTINCT ON (…): the first row of each group, in the ORDER BY,
        // which must start with those expressions.
        let distinct_on = match &s.distinct {
            Some(ast::Distinct::On(on)) => {
                let mut cols = Vec::new();
                for e in on {
                    let c = self.order_key(e, scope, &columns, &mut exprs, &mut types)?;
                    if !cols.contains(&c) {
                        cols.push(c);
                    }
                }
                let leading: Vec<usize> = keys.iter().take(cols.len()).map(|k| k.column).collect();
                if !keys.is_empty()
                    && (leading.len() < cols.len() || cols.iter().any(|c| !leading.contains(c)))
                {
                    bail!(
                        InvalidColumnReference,
                        "SELECT DISTINCT ON expressions must match initial ORDER BY expressions"
                    );
                }
                Some(cols)
            }
            _ => None,
        };
        // When the table is read in the requested order anyway, no sort is
        // needed (and a LIMIT can stop the scan early).
        strip_enforced(&mut plan);
        let presorted = self.agg.is_none()
            && matches!(s.distinct, None | Some(ast::Distinct::All))
            && !keys.is_empty()
            && order_by_access(&mut plan, &exprs, &keys);
        // Assemble: aggregate, having, project, distinct, sort, limit.
        if let Some(state) = self.agg.take() {
            let (group_by, group_types) = state.group_by.into_iter().unzip();
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by,
                group_types,
                aggs: state.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
        }
        // Window functions see the rows (or groups) that passed HAVING;
        // their results follow those rows' columns.
        let calls = self.windows.take().map(|w| w.calls).unwrap_or_default();
        if !calls.is_empty() {
            let width = plan.width();
            let moved = |c: usize| {
                if c >= super::window::WINDOW_BASE {
                    width + c - super::window::WINDOW_BASE
                } else {
                    c
                }
            };
            exprs = exprs.iter().map(|e| e.map_columns(&moved)).collect();
            plan = Plan::Window {
                input: Box::new(plan),
                calls,
            };
        }
        if let Some(on) = distinct_on {
            // The first row of each group: row_number() = 1 over the
            // groups, ordered as ORDER BY asks.
            let width = plan.width();
            let call = crate::plan::WindowCall {
                func: crate::plan::WindowFunc::RowNumber,
                args: Vec::new(),
                arg_ty: DataType::Int8,
                partition: on.iter().map(|&c| exprs[c].clone()).collect(),
                order: keys
                    .iter()
                    .map(|k| (exprs[k.column].clone(), k.desc, k.nulls_first))
                    .collect(),
                frame: crate::plan::Frame {
                    rows: true,
                    start: crate::plan::FrameBound::UnboundedPreceding,
                    end: crate::plan::FrameBound::CurrentRow,
                },
                ty: DataType::Int8,
                agg: None,
            };
            plan = Plan::Filter {
                input: Box::new(Plan::Window {
                    input: Box::new(plan),
                    calls: vec![call],
                }),
                predicate: Expr::Cmp(
                    CmpOp::Eq,
                    Box::new(Expr::Column(width)),
                    Box::new(Expr::Const(crate::types::Value::Int(1))),
                ),
            };
        }
        if !is_identity(&exprs, &plan) {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs,
                types: types.clone(),
            };
        }
        match &s.distinct {
            None | Some(ast::Distinct::All) => {}
            Some(ast::Distinct::Distinct) => {
                if keys.iter().any(|k| k.column >= visible) {
                    bail!(
                        InvalidColumnReference,
                        "for SELECT DISTINCT, ORDER BY expressions must appear in select list"
                    );
                }
                plan = Plan::Distinct {
                    input: Box::new(plan),
                };
            }
            Some(ast::Distinct::On(_)) => {}
        }
        if !keys.is_empty() && !presorted {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        plan = self.limit(plan, tail)?;
        if types.len() > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
                types: types[..visible].to_vec(),
            };
        }
        Ok((plan, columns))
    }

    fn star_column(
        &mut self,
        i: usize,
        scope: &Scope,
        exprs: &mut Vec<Expr>,
        types: &mut Vec<DataType>,
        columns: &mut Vec<OutputColumn>,
    ) -> Result<()> {
        let c = &scope.columns[i];
        let (e, ty) = if self.agg.is_some() {
            // In a grouped query every column must be a group key.
            let ident = ast::Ident::with_quote('"', c.name.clone());
            let reference = match &c.table {
                Some(t) => ast::Expr::CompoundIdentifier(vec![
                    ast::Ident::with_quote('"', t.clone()),
                    ident,
                ]),
                None => ast::Expr::Identifier(ident),
            };
            self.expr(&reference, scope)?
        } else {
            (Expr::Column(i), c.ty)
        };
        exprs.push(e);
        types.push(ty);
        columns.push(OutputColumn {
            name: c.name.clone(),
            ty,
        });
        Ok(())
    }

    fn sort_keys(
        &mut self,
        order: &[&ast::OrderByExpr],
        scope: &Scope,
        columns: &[OutputColumn],
        exprs: &mut Vec<Expr>,
        types: &mut Vec<DataType>,
    ) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        for o in order {
            if matches!(o.options.sort, Some(ast::OrderBySort::Using(_))) {
                bail!(FeatureNotSupported, "ORDER BY ... USING is not supported");
            }
            let column = self.order_key(&o.expr, scope, columns, exprs, types)?;
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            keys.push(SortKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        Ok(keys)
    }

    fn limit(&mut self, plan: Plan, tail: &Tail<'_>) -> Result<Plan> {
        let Some(clause) = tail.limit else {
            return Ok(plan);
        };
        let (limit, offset) = match clause {
            ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if !limit_by.is_empty() {
                    bail!(FeatureNotSupported, "LIMIT BY is not supported");
                }
                (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
            }
            ast::LimitClause::OffsetCommaLimit { offset, limit } => {
                (Some(limit.clone()), Some(offset.clone()))
            }
        };
        let limit = match limit {
            Some(ast::Expr::Value(v)) if matches!(v.value, ast::Value::Null) => None,
            Some(l) => Some(self.count_expr(&l, "LIMIT")?),
            None => None,
        };
        let offset = match offset {
            Some(o) => Some(self.count_expr(&o, "OFFSET")?),
            None => None,
        };
        Ok(Plan::Limit {
            input: Box::new(plan),
            limit,
            offset,
        })
    }

    /// A LIMIT or OFFSET value: a constant or parameter of type bigint.
    fn count_expr(&mut self, e: &ast::Expr, clause: &str) -> Result<Expr> {
        let typed = self.expr(e, &Scope::default()).map_err(|err| {
            if err.kind == ErrorKind::UndefinedColumn {
                Error::new(
                    ErrorKind::Syntax,
                    format!("argument of {clause} must not contain variables"),
                )
            } else {
                err
            }
        })?;
        if !typed.1.is_numeric() && typed.1 != DataType::Unknown {
            bail!(
                DatatypeMismatch,
                "argument of {clause} must be type bigint, not type {}",
                typed.1.pg_name()
            );
        }
        self.coerce(typed, DataType::Int8)
    }

    /// An ORDER BY item: an output column by position or name, or an
    /// expression computed as a hidden column.
    fn order_key(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        columns: &[OutputColumn],
        exprs: &mut Vec<Expr>,
        types: &mut Vec<DataType>,
    ) -> Result<usize> {
        if let ast::Expr::Value(v) = e
            && let ast::Value::Number(n, _) = &v.value
        {
            let pos: usize = n.parse().unwrap_or(0);
            if pos == 0 || pos > columns.len() {
                bail!(
                    InvalidColumnReference,
                    "ORDER BY position {n} is not in select list"
                );
            }
            return Ok(pos - 1);
        }
        if let ast::Expr::Identifier(i) = e {
            let name = ident(i);
            let matches: Vec<usize> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == name)
                .map(|(i, _)| i)
                .collect();
            if matches.len() == 1 {
                return Ok(matches[0]);
            }
            if matches.len() > 1 && scope.resolve(None, &name).is_err() {
                bail!(AmbiguousColumn, "ORDER BY \"{name}\" is ambiguous");
            }
        }
        let (bound, ty) = self.expr(e, scope)?;
        if let Some(i) = exprs.iter().position(|x| *x == bound) {
            return Ok(i);
        }
        exprs.push(bound);
        types.push(output_type(ty));
        Ok(exprs.len() - 1)
    }
}

/// When a single-table plan already produces rows in the order of `keys`
/// (the columns after the access path's equality prefix, in key order, all
/// ascending or all descending with the default NULL placement), sets the
/// scan's direction and returns true.
fn order_by_access(plan: &mut Plan, exprs: &[Expr], keys: &[SortKey]) -> bool {
    let scan = match plan {
        Plan::Scan(s) => s,
        Plan::Filter { input, .. } => match input.as_mut() {
            Plan::Scan(s) => s,
            _ => return false,
        },
        _ => return false,
    };
    if matches!(scan.access, Access::Point { .. }) {
        return true; // at most one row
    }
    let Some(order) = scan.key_order() else {
        return false;
    };
    let fixed: Vec<usize> = match &scan.access {
        Access::Range { prefix, .. } => scan.table.primary_key[..prefix.len()].to_vec(),
        Access::Index { index, prefix, .. } => index.columns[..prefix.len()].to_vec(),
        _ => Vec::new(),
    };
    // Columns fixed by equality are constant: they do not order anything.
    let order: Vec<usize> = order.into_iter().filter(|c| !fixed.contains(c)).collect();
    let mut desc = None;
    let mut next = 0;
    for k in keys {
        let Expr::Column(c) = exprs[k.column] else {
            return false;
        };
        if fixed.contains(&c) {
            continue;
        }
        if *desc.get_or_insert(k.desc) != k.desc || k.nulls_first != k.desc {
            return false;
        }
        if order.get(next) != Some(&c) {
            return false;
        }
        next += 1;
    }
    scan.reverse = desc.unwrap_or(false);
    true
}

/// Drops from filters over table scans the conjuncts their access paths
/// enforce exactly (see [`crate::planner::residual`]).
fn strip_enforced(plan: &mut Plan) {
    match plan {
        Plan::Filter { input, predicate } => {
            strip_enforced(input);
            let Plan::Scan(scan) = input.as_ref() else {
                return;
            };
            match crate::planner::residual(&scan.table, &scan.access, predicate.clone()) {
                Some(rest) => *predicate = rest,
                None => *plan = Plan::Scan(scan.clone()),
            }
        }
        Plan::Project { input, .. } => strip_enforced(input),
        Plan::Join { left, right, .. } => {
            strip_enforced(left);
            strip_enforced(right);
        }
        Plan::LookupJoin { left, .. } => strip_enforced(left),
        _ => {}
    }
}

/// True when `exprs` would just copy every column of `input` in order.
fn is_identity(exprs: &[Expr], input: &Plan) -> bool {
    exprs.len() == input.width() && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i))
}

fn select_item_has_aggregate(item: &ast::SelectItem) -> bool {
    match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_aggregate(e)
        }
        _ => false,
    }
}

/// The type a client sees for a result column: unknown literals are text.
pub(super) fn output_type(ty: DataType) -> DataType {
    if ty == DataType::Unknown {
        DataType::Text
    } else {
        ty
    }
}

/// The column names a SELECT's list, HAVING and ORDER BY mention; `None`
/// when a `*` may mention any.
fn names_used(s: &ast::Select, tail: &Tail<'_>) -> Option<std::collections::HashSet<String>> {
    use sqlparser::ast::Visit;
    use std::ops::ControlFlow;
    struct Names(std::collections::HashSet<String>);
    impl ast::Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            match e {
                ast::Expr::Identifier(i) => {
                    self.0.insert(ident(i));
                }
                ast::Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        self.0.insert(ident(last));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(std::collections::HashSet::new());
    for item in &s.projection {
        match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                let _ = e.visit(&mut names);
            }
            _ => return None,
        }
    }
    if let Some(h) = &s.having {
        let _ = h.visit(&mut names);
    }
    for o in &tail.order {
        let _ = o.expr.visit(&mut names);
    }
    Some(names.0)
}

/// PostgreSQL's default name for a result column.
pub(super) fn column_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident)
            .unwrap_or_default(),
        ast::Expr::Nested(inner) => column_name(inner),
        ast::Expr::Cast {
            expr, data_type: t, ..
        } => match column_name(expr).as_str() {
            "?column?" => pg_type_column_name(t),
            name => name.to_string(),
        },
        ast::Expr::Case { .. } => "case".to_string(),
        ast::Expr::Exists { .. } => "exists".to_string(),
        ast::Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.first() {
                Some(ast::SelectItem::UnnamedExpr(e)) => column_name(e),
                Some(ast::SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
                _ => "?column?".to_string(),
            },
            _ => "?column?".to_string(),
        },
        ast::Expr::Substring { .. } => "substring".to_string(),
        ast::Expr::Trim { .. } => "btrim".to_string(),
        ast::Expr::Position { .. } => "position".to_string(),
        ast::Expr::Ceil { .. } => "ceil".to_string(),
        ast::Expr::Floor { .. } => "floor".to_string(),
        ast::Expr::TypedString(ts) => pg_type_column_name(&ts.data_type),
        ast::Expr::Interval(_) => "interval".to_string(),
        ast::Expr::Extract { .. } => "extract".to_string(),
        ast::Expr::AtTimeZone { .. } => "timezone".to_string(),
        _ => "?column?".to_string(),
    }
}

fn pg_type_column_name(t: &ast::DataType) -> String {
    match data_type(t) {
        Ok(DataType::Int2) => "int2",
        Ok(DataType::Int4) => "int4",
        Ok(DataType::Int8) => "int8",
        Ok(DataType::Float4) => "float4",
        Ok(DataType::Float8) => "float8",
        Ok(DataType::Numeric(_)) => "numeric",
        Ok(DataType::Bool) => "bool",
        Ok(DataType::Text) => "text",
        Ok(DataType::Varchar(_)) => "varchar",
        Ok(DataType::Char(_)) => "bpchar",
        Ok(DataType::Timestamp) => "timestamp",
        Ok(DataType::TimestampTz) => "timestamptz",
        Ok(DataType::Date) => "date",
        Ok(DataType::Interval) => "interval",
        _ => "?column?",
    }
    .to_string()
}
