//! Binding FROM and WHERE: relations, join order, access paths.
//!
//! Comma-separated items and inner joins form one *join group*. Their ON
//! conditions and the WHERE clause are split into conjuncts: a conjunct
//! that reads one relation is pushed into it (where it also chooses that
//! table's key-range access path); the others are join conditions. The join
//! order is greedy, so planning stays polynomial for dozens of tables:
//! start from the relation expected to yield the fewest rows, then
//! repeatedly join the cheapest relation connected to what is already joined
//! by an equality (a hash join), falling back to a cross join only when
//! nothing is connected. Outer joins are not reordered: the group to their
//! left is planned first and becomes one relation.

use std::borrow::Cow;

use super::*;
use crate::plan::{Access, JoinKind};

/// A relation of a join group.
pub(super) struct Rel {
    /// Its plan.
    plan: Plan,
    /// Its columns.
    scope: Scope,
}

/// A predicate with the relations it reads.
struct Pred {
    expr: Expr,
    rels: Vec<usize>,
    used: bool,
}

fn estimate(plan: &Plan) -> f64 {
    match plan {
        Plan::Scan(s) => match &s.access {
            Access::Point { .. } => 1.0,
            Access::Points { keys } => keys.len() as f64,
            Access::Range { prefix, .. } if !prefix.is_empty() => 10.0 / (prefix.len() as f64),
            Access::Range { .. } => 300.0,
            Access::Index { prefix, .. } if !prefix.is_empty() => 20.0 / (prefix.len() as f64),
            Access::Index { .. } => 300.0,
            Access::Full => 1000.0,
        },
        Plan::Filter { input, .. } => estimate(input) * 0.5,
        Plan::Values { rows, .. } => rows.len() as f64,
        Plan::Series { .. } => 1000.0,
        Plan::System(_) => 100.0,
        Plan::Unnest { .. } => 10.0,
        Plan::Unit => 1.0,
        Plan::Limit { input, .. } => estimate(input).min(100.0),
        Plan::Aggregate {
            group_by, input, ..
        } if group_by.is_empty() => {
            let _ = input;
            1.0
        }
        _ => 1000.0,
    }
}

impl Binder<'_> {
    /// Binds FROM and WHERE into one plan over the FROM columns, in the
    /// order they were written.
    pub(super) fn bind_from(
        &mut self,
        from: &[ast::TableWithJoins],
        selection: Option<&ast::Expr>,
    ) -> Result<(Plan, Scope)> {
        let mut rels = Vec::new();
        let mut on: Vec<Cow<'_, ast::Expr>> = Vec::new();
        for item in from {
            self.bind_from_item(item, &mut rels, &mut on)?;
        }
        if rels.is_empty() {
            rels.push(Rel {
                plan: Plan::Unit,
                scope: Scope::default(),
            });
        }
        let scope = Scope::concat(rels.iter().map(|r| &r.scope));
        let mut preds = Vec::new();
        for cond in on {
            let p = self.predicate(&cond, &scope, "JOIN/ON")?;
            preds.extend(p.conjuncts().into_iter().cloned());
        }
        if let Some(w) = selection {
            if contains_aggregate(w) {
                bail!(Grouping, "aggregate functions are not allowed in WHERE");
            }
            let p = self.predicate(w, &scope, "WHERE")?;
            preds.extend(p.conjuncts().into_iter().cloned());
        }
        let plan = plan_group(rels, preds)?;
        Ok((plan, scope))
    }

    /// Adds one FROM item's relations (and inner-join conditions) to the
    /// group; outer joins collapse what is to their left into one relation.
    fn bind_from_item<'a>(
        &mut self,
        item: &'a ast::TableWithJoins,
        rels: &mut Vec<Rel>,
        on: &mut Vec<Cow<'a, ast::Expr>>,
    ) -> Result<()> {
        let mut local = vec![self.factor(&item.relation)?];
        let mut local_on: Vec<Cow<'a, ast::Expr>> = Vec::new();
        for join in &item.joins {
            use ast::JoinOperator as J;
            let (kind, constraint) = match &join.join_operator {
                J::Join(c) | J::Inner(c) => (None, Some(c)),
                J::CrossJoin(c) => (None, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (Some((JoinKind::Left, false)), Some(c)),
                J::Right(c) | J::RightOuter(c) => (Some((JoinKind::Left, true)), Some(c)),
                J::FullOuter(c) => (Some((JoinKind::Full, false)), Some(c)),
                other => bail!(
                    FeatureNotSupported,
                    "join type not supported yet: {other:?}"
                ),
            };
            let mut right = self.factor(&join.relation)?;
            let mut merged = Vec::new();
            let cond: Option<Cow<'a, ast::Expr>> = match constraint {
                Some(ast::JoinConstraint::On(e)) => Some(Cow::Borrowed(e)),
                Some(ast::JoinConstraint::None) | None => None,
                Some(ast::JoinConstraint::Using(names)) => {
                    let names = names.iter().map(object_name).collect::<Result<Vec<_>>>()?;
                    let left = Scope::concat(local.iter().map(|r| &r.scope));
                    let (c, m) = using_condition(&left, &right.scope, &names)?;
                    merged = m;
                    c.map(Cow::Owned)
                }
                Some(ast::JoinConstraint::UsingAlias(..)) => bail!(
                    FeatureNotSupported,
                    "JOIN ... USING (...) AS alias is not supported"
                ),
                Some(ast::JoinConstraint::Natural) => {
                    let left = Scope::concat(local.iter().map(|r| &r.scope));
                    let mut names: Vec<String> = Vec::new();
                    for c in left.columns.iter().filter(|c| !c.hidden) {
                        let in_right = right
                            .scope
                            .columns
                            .iter()
                            .any(|r| !r.hidden && r.name == c.name);
                        if in_right && !names.contains(&c.name) {
                            names.push(c.name.clone());
                        }
                    }
                    let (c, m) = using_condition(&left, &right.scope, &names)?;
                    merged = m;
                    c.map(Cow::Owned)
                }
            };
            static LEVEL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
            let level = LEVEL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match kind {
                None => {
                    // The left column stands for both; the right one is
                    // reachable only by its qualified name.
                    let mut offset = 0;
                    for (li, ri) in &merged {
                        right.scope.columns[*ri].hidden = true;
                        for r in local.iter_mut() {
                            if *li >= offset && *li < offset + r.scope.columns.len() {
                                r.scope.columns[li - offset].using_level = level;
                            }
                            offset += r.scope.columns.len();
                        }
                        offset = 0;
                    }
                    local.push(right);
                    local_on.extend(cond);
                }
                Some((kind, swap)) => {
                    let Some(cond) = cond else {
                        bail!(Syntax, "outer joins need an ON condition");
                    };
                    // Everything so far becomes the outer join's left input.
                    let left_scope = Scope::concat(local.iter().map(|r| &r.scope));
                    let mut left_preds = Vec::new();
                    for c in local_on.drain(..) {
                        let p = self.predicate(&c, &left_scope, "JOIN/ON")?;
                        left_preds.extend(p.conjuncts().into_iter().cloned());
                    }
                    let n_left = left_scope.columns.len();
                    let left = Rel {
                        plan: plan_group(std::mem::take(&mut local), left_preds)?,
                        scope: left_scope,
                    };
                    let mut joined = self.outer_join(kind, swap, left, right, &cond)?;
                    if !merged.is_empty() {
                        joined = merge_using(joined, kind, swap, n_left, &merged, level)?;
                    }
                    local.push(joined);
                }
            }
        }
        rels.extend(local);
        on.extend(local_on);
        Ok(())
    }

    /// `left LEFT|FULL JOIN right ON cond` (RIGHT JOIN is a swapped LEFT
    /// JOIN, projected back to the written column order).
    fn outer_join(
        &mut self,
        kind: JoinKind,
        swap: bool,
        left: Rel,
        right: Rel,
        cond: &ast::Expr,
    ) -> Result<Rel> {
        let written = Scope::concat([&left.scope, &right.scope]);
        let (outer, inner) = if swap { (right, left) } else { (left, right) };
        // Bind the condition over the join's own column order, so that
        // correlated subqueries in it see the rows as they are evaluated.
        let join_scope = Scope::concat([&outer.scope, &inner.scope]);
        let bound = self.predicate(cond, &join_scope, "JOIN/ON")?;
        let n_outer = outer.scope.columns.len();
        let n_inner = inner.scope.columns.len();
        let n_left_written = if swap { n_inner } else { n_outer };
        // Column positions: written order → join output (outer ++ inner).
        let to_join = |c: usize| -> usize {
            if swap {
                if c < n_left_written {
                    n_outer + c
                } else {
                    c - n_left_written
                }
            } else {
                c
            }
        };
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut residual = Vec::new();
        let mut inner_only = Vec::new();
        for p in bound.conjuncts() {
            let p = p.clone();
            let mut cols = Vec::new();
            p.columns_used(&mut cols);
            let reads_outer = cols.iter().any(|&c| c < n_outer);
            let reads_inner = cols.iter().any(|&c| c >= n_outer);
            if let Expr::Cmp(CmpOp::Eq, a, b) = &p
                && !p.needs_context()
            {
                let side = |e: &Expr| {
                    let mut c = Vec::new();
                    e.columns_used(&mut c);
                    (
                        !c.is_empty() && c.iter().all(|&x| x < n_outer),
                        !c.is_empty() && c.iter().all(|&x| x >= n_outer),
                    )
                };
                let ((ao, ai), (bo, bi)) = (side(a), side(b));
                let shift = |e: &Expr| e.map_columns(&|c| c - n_outer);
                if ao && bi {
                    left_keys.push((**a).clone());
                    right_keys.push(shift(b));
                    continue;
                }
                if ai && bo {
                    left_keys.push((**b).clone());
                    right_keys.push(shift(a));
                    continue;
                }
            }
            if kind == JoinKind::Left && reads_inner && !reads_outer && !p.needs_context() {
                // Conditions on the inner side alone filter it before the join.
                inner_only.push(p.map_columns(&|c| c - n_outer));
            } else {
                residual.push(p);
            }
        }
        let mut inner_plan = inner.plan;
        if let Some(f) = Expr::and_all(inner_only) {
            inner_plan = push_filter(inner_plan, f);
        }
        let mut plan = Plan::Join {
            kind,
            left: Box::new(outer.plan),
            right: Box::new(inner_plan),
            left_keys,
            right_keys,
            residual: Expr::and_all(residual),
        };
        if swap {
            let types = plan.output_types();
            let order: Vec<usize> = (0..n_outer + n_inner).map(to_join).collect();
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: order.iter().map(|&c| Expr::Column(c)).collect(),
                types: order.iter().map(|&c| types[c]).collect(),
            };
        }
        Ok(Rel {
            plan,
            scope: written,
        })
    }

    /// One FROM factor: a table, a view, a subquery or a parenthesized join.
    fn factor(&mut self, f: &ast::TableFactor) -> Result<Rel> {
        match f {
            ast::TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let n = object_name(name)?;
                if name.0.len() == 1
                    && let Some(k) = self.ctes.iter().rposition(|(c, _)| *c == n)
                {
                    return self.cte_reference(k, alias.as_ref());
                }
                let schema = match name.0.as_slice() {
                    [.., ast::ObjectNamePart::Identifier(s), _] => Some(ident(s)),
                    _ => None,
                };
                if let Some(sys) = crate::syscat::SystemTable::lookup(schema.as_deref(), &n) {
                    let columns: Vec<OutputColumn> = sys
                        .columns()
                        .into_iter()
                        .map(|(name, ty)| OutputColumn {
                            name: name.to_string(),
                            ty,
                        })
                        .collect();
                    let qualifier = alias.as_ref().map_or(n.clone(), |a| ident(&a.name));
                    let mut scope = query::output_scope(&columns, Some(&qualifier));
                    if let Some(a) = alias {
                        rename_columns(&mut scope, &a.columns)?;
                    }
                    return Ok(Rel {
                        plan: Plan::System(sys),
                        scope,
                    });
                }
                if let Some(s) = schema.as_deref()
                    && s != "public"
                {
                    bail!(UndefinedTable, "relation \"{s}.{n}\" does not exist");
                }
                if let Some(table) = catalog::get_table(self.txn, &n)? {
                    self.deps.push((n, (table.id, table.version)));
                    let mut scope = Scope::of_table(&table, alias.as_ref().map(|a| ident(&a.name)));
                    if let Some(a) = alias {
                        rename_columns(&mut scope, &a.columns)?;
                    }
                    return Ok(Rel {
                        plan: Plan::Scan(Scan {
                            table,
                            access: Access::Full,
                            reverse: false,
                        }),
                        scope,
                    });
                }
                if let Some(view) = catalog::get_view(self.txn, &n)? {
                    self.deps.push((n.clone(), (view.id, 0)));
                    let q = match parse_statement(&view.sql)? {
                        ast::Statement::Query(q) => q,
                        _ => return Err(Error::internal("a view's definition is not a query")),
                    };
                    let qualifier = alias.as_ref().map_or(n.clone(), |a| ident(&a.name));
                    // A view sees tables, never the WITH names of the
                    // query that uses it.
                    let ctes = std::mem::take(&mut self.ctes);
                    let bound = self.subquery_plan(&q, false);
                    self.ctes = ctes;
                    let (plan, mut columns) = bound?;
                    for (c, name) in columns.iter_mut().zip(&view.columns) {
                        c.name = name.clone();
                    }
                    let mut scope = query::output_scope(&columns, Some(&qualifier));
                    if let Some(a) = alias {
                        rename_columns(&mut scope, &a.columns)?;
                    }
                    return Ok(Rel { plan, scope });
                }
                bail!(UndefinedTable, "relation \"{n}\" does not exist")
            }
            ast::TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_ordinality,
                ..
            } if object_name(name)? == "pg_partition_ancestors" => {
                // A table that is not partitioned is its own only ancestor
                // (psql's `\d` asks): one row, its OID [, its depth 1].
                let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] =
                    args.args.as_slice()
                else {
                    bail!(
                        UndefinedFunction,
                        "function pg_partition_ancestors takes one argument"
                    );
                };
                let relid = self.expr(e, &Scope::default())?;
                let relid = self.coerce(relid, DataType::Int8)?;
                let mut row = vec![relid];
                let mut columns = vec![OutputColumn {
                    name: "relid".into(),
                    ty: DataType::Int8,
                }];
                if *with_ordinality {
                    row.push(Expr::Const(crate::types::Value::Int(1)));
                    columns.push(OutputColumn {
                        name: "ordinality".into(),
                        ty: DataType::Int8,
                    });
                }
                let types = columns.iter().map(|c| c.ty).collect();
                let qualifier = alias
                    .as_ref()
                    .map_or("pg_partition_ancestors".to_string(), |a| ident(&a.name));
                let mut scope = query::output_scope(&columns, Some(&qualifier));
                if let Some(a) = alias {
                    rename_columns(&mut scope, &a.columns)?;
                }
                Ok(Rel {
                    plan: Plan::Values {
                        rows: vec![row],
                        types,
                    },
                    scope,
                })
            }
            ast::TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_ordinality: false,
                ..
            } => {
                let n = object_name(name)?;
                match n.as_str() {
                    "generate_series" => self.generate_series(&args.args, alias.as_ref()),
                    "unnest" => self.unnest(&args.args, alias.as_ref()),
                    _ => bail!(UndefinedFunction, "function {n} does not exist"),
                }
            }
            ast::TableFactor::Function {
                name, args, alias, ..
            } if object_name(name)? == "generate_series" => {
                self.generate_series(args, alias.as_ref())
            }
            ast::TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } if array_exprs.len() == 1 => self.unnest_array(&array_exprs[0], alias.as_ref()),
            ast::TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    bail!(FeatureNotSupported, "LATERAL is not supported yet");
                }
                let Some(alias) = alias else {
                    bail!(Syntax, "subquery in FROM must have an alias");
                };
                let (plan, columns) = self.subquery_plan(subquery, false)?;
                let mut scope = query::output_scope(&columns, Some(&ident(&alias.name)));
                rename_columns(&mut scope, &alias.columns)?;
                Ok(Rel { plan, scope })
            }
            ast::TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    bail!(
                        FeatureNotSupported,
                        "aliases on parenthesized joins are not supported yet"
                    );
                }
                let (plan, scope) = self.bind_from(std::slice::from_ref(table_with_joins), None)?;
                Ok(Rel { plan, scope })
            }
            other => bail!(FeatureNotSupported, "FROM item not supported yet: {other}"),
        }
    }
}

impl Binder<'_> {
    /// `FROM generate_series(start, stop [, step]) [AS alias[(column)]]`.
    fn generate_series(
        &mut self,
        args: &[ast::FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Result<Rel> {
        let empty = Scope::default();
        let mut bound = Vec::new();
        for a in args {
            match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                    let typed = self.expr(e, &empty).map_err(|e| {
                        if e.kind == ErrorKind::UndefinedColumn {
                            Error::unsupported(
                                "generate_series arguments from other FROM items (LATERAL) are not supported yet",
                            )
                        } else {
                            e
                        }
                    })?;
                    bound.push(typed);
                }
                other => bail!(FeatureNotSupported, "argument {other} is not supported"),
            }
        }
        let types: Vec<DataType> = bound.iter().map(|b| b.1).collect();
        use DataType as T;
        if types.iter().all(|t| *t == T::Unknown) {
            let names = vec!["unknown"; types.len()];
            bail!(
                AmbiguousFunction,
                "function generate_series({}) is not unique",
                names.join(", ")
            );
        }
        let int = |t: T| t.is_integer() || t == T::Unknown;
        let ty = match types.as_slice() {
            [a, b] | [a, b, _] if int(*a) && int(*b) && types.iter().all(|t| int(*t)) => {
                if types.contains(&T::Int8) {
                    T::Int8
                } else {
                    T::Int4
                }
            }
            [a, b, T::Interval | T::Unknown] if a.is_datetime() || b.is_datetime() => {
                if *a == T::TimestampTz || *b == T::TimestampTz {
                    T::TimestampTz
                } else {
                    T::Timestamp
                }
            }
            _ => {
                let names: Vec<&str> = types.iter().map(|t| t.pg_name()).collect();
                bail!(
                    UndefinedFunction,
                    "function generate_series({}) does not exist",
                    names.join(", ")
                );
            }
        };
        let step_ty = if ty.is_datetime() { T::Interval } else { ty };
        let mut it = bound.into_iter();
        let start = self.coerce(it.next().expect("two arguments"), ty)?;
        let stop = self.coerce(it.next().expect("two arguments"), ty)?;
        let step = it.next().map(|s| self.coerce(s, step_ty)).transpose()?;
        let plan = Plan::Series {
            start,
            stop,
            step,
            ty,
        };
        let columns = vec![OutputColumn {
            name: "generate_series".into(),
            ty,
        }];
        let scope = function_scope(&columns, "generate_series", alias)?;
        Ok(Rel { plan, scope })
    }

    /// `FROM unnest(array) [AS alias[(column)]]` over an array's text form
    /// (the system catalog's arrays, `ARRAY(subquery)`).
    fn unnest(
        &mut self,
        args: &[ast::FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Result<Rel> {
        let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] = args else {
            bail!(FeatureNotSupported, "unnest takes one array here");
        };
        self.unnest_array(e, alias)
    }

    fn unnest_array(&mut self, e: &ast::Expr, alias: Option<&ast::TableAlias>) -> Result<Rel> {
        let (array, ty) = self.expr(e, &Scope::default()).map_err(|e| {
            if e.kind == ErrorKind::UndefinedColumn {
                Error::unsupported(
                    "unnest arguments from other FROM items (LATERAL) are not supported yet",
                )
            } else {
                e
            }
        })?;
        if !(ty.is_string() || ty == DataType::Unknown) {
            bail!(
                UndefinedFunction,
                "function unnest({}) does not exist",
                ty.pg_name()
            );
        }
        let array = self.text_operand((array, ty))?;
        let columns = vec![OutputColumn {
            name: "unnest".into(),
            ty: DataType::Text,
        }];
        let scope = function_scope(&columns, "unnest", alias)?;
        Ok(Rel {
            plan: Plan::Unnest { array },
            scope,
        })
    }

    /// A reference to the `k`th common table expression in scope: its
    /// query bound here, seeing only the ones defined before it.
    fn cte_reference(&mut self, k: usize, alias: Option<&ast::TableAlias>) -> Result<Rel> {
        let (name, cte) = self.ctes[k].clone();
        let later = self.ctes.split_off(k);
        let bound = self.subquery_plan(&cte.query, false);
        self.ctes.extend(later);
        let (plan, columns) = bound?;
        let qualifier = alias.map_or(name, |a| ident(&a.name));
        let mut scope = query::output_scope(&columns, Some(&qualifier));
        rename_columns(&mut scope, &cte.alias.columns)?;
        if let Some(a) = alias {
            rename_columns(&mut scope, &a.columns)?;
        }
        Ok(Rel { plan, scope })
    }
}

/// `USING (names)` between `left` and `right`: the condition, as the
/// equalities of the qualified columns, and the pairs (left position,
/// right position) it merges.
#[allow(clippy::type_complexity)]
fn using_condition(
    left: &Scope,
    right: &Scope,
    names: &[String],
) -> Result<(Option<ast::Expr>, Vec<(usize, usize)>)> {
    let mut pairs = Vec::new();
    let mut cond: Option<ast::Expr> = None;
    for (k, name) in names.iter().enumerate() {
        if names[..k].contains(name) {
            bail!(
                DuplicateColumn,
                "column \"{name}\" appears more than once in USING clause"
            );
        }
        let side = |scope: &Scope, which: &str| -> Result<usize> {
            let found: Vec<usize> = (0..scope.columns.len())
                .filter(|&i| !scope.columns[i].hidden && scope.columns[i].name == *name)
                .collect();
            match found.as_slice() {
                [i] => Ok(*i),
                [] => bail!(
                    UndefinedColumn,
                    "column \"{name}\" specified in USING clause does not exist in {which} table"
                ),
                _ => bail!(
                    AmbiguousColumn,
                    "common column name \"{name}\" appears more than once in {which} table"
                ),
            }
        };
        let (li, ri) = (side(left, "left")?, side(right, "right")?);
        let qualified = |c: &ScopeColumn| -> Result<ast::Expr> {
            match &c.table {
                Some(t) => Ok(ast::Expr::CompoundIdentifier(vec![
                    ast::Ident::with_quote('"', t),
                    ast::Ident::with_quote('"', &c.name),
                ])),
                None => bail!(
                    FeatureNotSupported,
                    "USING on the merged column \"{name}\" of an earlier FULL JOIN is not supported"
                ),
            }
        };
        let eq = ast::Expr::BinaryOp {
            left: Box::new(qualified(&left.columns[li])?),
            op: ast::BinaryOperator::Eq,
            right: Box::new(qualified(&right.columns[ri])?),
        };
        cond = Some(match cond {
            None => eq,
            Some(c) => ast::Expr::BinaryOp {
                left: Box::new(c),
                op: ast::BinaryOperator::And,
                right: Box::new(eq),
            },
        });
        pairs.push((li, ri));
    }
    Ok((cond, pairs))
}

/// After an outer `JOIN … USING`: the merged columns. LEFT keeps the left
/// column, RIGHT the right one; FULL adds `COALESCE(left, right)`.
fn merge_using(
    mut joined: Rel,
    kind: JoinKind,
    swap: bool,
    n_left: usize,
    merged: &[(usize, usize)],
    level: u32,
) -> Result<Rel> {
    match (kind, swap) {
        (JoinKind::Left, false) => {
            for (li, ri) in merged {
                joined.scope.columns[n_left + ri].hidden = true;
                joined.scope.columns[*li].using_level = level;
            }
        }
        (JoinKind::Left, true) => {
            for (li, ri) in merged {
                joined.scope.columns[*li].hidden = true;
                joined.scope.columns[n_left + ri].using_level = level;
            }
        }
        (JoinKind::Full, _) | (JoinKind::Inner, _) => {
            let mut types = joined.plan.output_types();
            let width = types.len();
            let mut exprs: Vec<Expr> = (0..width).map(Expr::Column).collect();
            for (li, ri) in merged {
                let (l, r) = (
                    &joined.scope.columns[*li],
                    &joined.scope.columns[n_left + ri],
                );
                if l.ty != r.ty {
                    bail!(
                        FeatureNotSupported,
                        "FULL JOIN USING on columns of different types ({} and {}) is not supported",
                        l.ty.pg_name(),
                        r.ty.pg_name()
                    );
                }
                exprs.push(Expr::Coalesce(vec![
                    Expr::Column(*li),
                    Expr::Column(n_left + ri),
                ]));
                types.push(l.ty);
                let mut column = l.clone();
                column.table = None;
                column.origin = None;
                column.using_level = level;
                joined.scope.columns[*li].hidden = true;
                joined.scope.columns[n_left + ri].hidden = true;
                joined.scope.columns.push(column);
            }
            joined.plan = Plan::Project {
                input: Box::new(joined.plan),
                exprs,
                types,
            };
        }
    }
    Ok(joined)
}

/// The scope of a one-column function in FROM (`generate_series`,
/// `unnest`): qualified by the alias or the function's name; `AS s` alone
/// names the column too, as in PostgreSQL.
fn function_scope(
    columns: &[OutputColumn],
    function: &str,
    alias: Option<&ast::TableAlias>,
) -> Result<Scope> {
    let qualifier = alias.map_or(function.to_string(), |a| ident(&a.name));
    let mut scope = query::output_scope(columns, Some(&qualifier));
    if let Some(a) = alias {
        if a.columns.is_empty() {
            rename_columns(
                &mut scope,
                &[ast::TableAliasColumnDef::from_name(a.name.value.clone())],
            )?;
        } else {
            rename_columns(&mut scope, &a.columns)?;
        }
    }
    Ok(scope)
}

fn rename_columns(scope: &mut Scope, names: &[ast::TableAliasColumnDef]) -> Result<()> {
    if names.len() > scope.columns.len() {
        bail!(
            InvalidColumnReference,
            "table has {} columns available but {} columns specified",
            scope.columns.len(),
            names.len()
        );
    }
    for (c, n) in scope.columns.iter_mut().zip(names) {
        c.name = ident(&n.name);
    }
    Ok(())
}

/// Adds a filter; a filter over a base table also picks its access path.
fn push_filter(plan: Plan, predicate: Expr) -> Plan {
    match plan {
        Plan::Scan(mut scan) if scan.access == Access::Full => {
            scan.access = choose_access(&scan.table, Some(&predicate));
            Plan::Filter {
                input: Box::new(Plan::Scan(scan)),
                predicate,
            }
        }
        Plan::Filter {
            input,
            predicate: existing,
        } => {
            let both = Expr::And(Box::new(existing), Box::new(predicate));
            push_filter(*input, both)
        }
        other => Plan::Filter {
            input: Box::new(other),
            predicate,
        },
    }
}

/// Plans a join group: pushes single-relation predicates down, orders the
/// joins greedily and returns a plan whose columns are in written order.
fn plan_group(rels: Vec<Rel>, preds: Vec<Expr>) -> Result<Plan> {
    let widths: Vec<usize> = rels.iter().map(|r| r.scope.columns.len()).collect();
    let offsets: Vec<usize> = widths
        .iter()
        .scan(0, |acc, w| {
            let o = *acc;
            *acc += w;
            Some(o)
        })
        .collect();
    let rel_of = |c: usize| {
        offsets
            .iter()
            .rposition(|&o| o <= c)
            .expect("column of some relation")
    };
    let mut preds: Vec<Pred> = preds
        .into_iter()
        .map(|expr| {
            let mut cols = Vec::new();
            expr.columns_used(&mut cols);
            let mut rels: Vec<usize> = cols.iter().map(|&c| rel_of(c)).collect();
            rels.sort_unstable();
            rels.dedup();
            Pred {
                expr,
                rels,
                used: false,
            }
        })
        .collect();
    // Constant propagation: `a = b AND b = $1` also gives `a = $1`, so
    // that `a`'s relation can use it for its access path.
    for derived in propagate_constants(&preds) {
        let mut cols = Vec::new();
        derived.columns_used(&mut cols);
        let rels: Vec<usize> = vec![rel_of(cols[0])];
        preds.push(Pred {
            expr: derived,
            rels,
            used: false,
        });
    }
    // Push single-relation predicates into their relation (those reading
    // an enclosing query's row too: its values are fixed while this one
    // runs, so they can bound key ranges).
    let mut plans: Vec<Option<Plan>> = Vec::new();
    for (i, rel) in rels.into_iter().enumerate() {
        let local: Vec<Expr> = preds
            .iter_mut()
            .filter(|p| p.rels == [i] && !p.expr.has_subquery())
            .map(|p| {
                p.used = true;
                p.expr.map_columns(&|c| c - offsets[i])
            })
            .collect();
        let plan = match Expr::and_all(local) {
            Some(f) => push_filter(rel.plan, f),
            None => rel.plan,
        };
        plans.push(Some(plan));
    }
    let n = plans.len();
    // Greedy join order.
    let start = (0..n)
        .min_by(|&a, &b| {
            estimate(plans[a].as_ref().unwrap()).total_cmp(&estimate(plans[b].as_ref().unwrap()))
        })
        .expect("at least one relation");
    let mut joined = vec![start];
    let mut layout: Vec<usize> = (offsets[start]..offsets[start] + widths[start]).collect();
    let mut plan = plans[start].take().unwrap();
    while joined.len() < n {
        let connects = |p: &Pred, r: usize| {
            !p.used
                && !p.expr.needs_context()
                && p.rels.contains(&r)
                && p.rels.iter().all(|x| *x == r || joined.contains(x))
                && p.rels.len() > 1
        };
        let is_equi = |p: &Pred, r: usize| {
            if let Expr::Cmp(CmpOp::Eq, a, b) = &p.expr {
                let in_r = |e: &Expr| {
                    let mut c = Vec::new();
                    e.columns_used(&mut c);
                    !c.is_empty() && c.iter().all(|&x| rel_of(x) == r)
                };
                let in_joined = |e: &Expr| {
                    let mut c = Vec::new();
                    e.columns_used(&mut c);
                    !c.is_empty() && c.iter().all(|&x| joined.contains(&rel_of(x)))
                };
                (in_r(a) && in_joined(b)) || (in_r(b) && in_joined(a))
            } else {
                false
            }
        };
        let next = (0..n)
            .filter(|r| plans[*r].is_some())
            .min_by(|&a, &b| {
                let score = |r: usize| {
                    let equi = preds
                        .iter()
                        .any(|p| connects(p, r) && is_equi(p, r) && !p.expr.needs_context());
                    (!equi, estimate(plans[r].as_ref().unwrap()))
                };
                let (ea, ca) = score(a);
                let (eb, cb) = score(b);
                ea.cmp(&eb).then(ca.total_cmp(&cb))
            })
            .expect("a relation remains");
        let right = plans[next].take().unwrap();
        let position = |layout: &[usize], c: usize| {
            layout.iter().position(|&x| x == c).expect("joined column")
        };
        let left_layout = layout.clone();
        let mut new_layout = layout.clone();
        new_layout.extend(offsets[next]..offsets[next] + widths[next]);
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut residual = Vec::new();
        for p in preds.iter_mut() {
            if !connects(p, next) {
                continue;
            }
            p.used = true;
            if !p.expr.needs_context()
                && let Expr::Cmp(CmpOp::Eq, a, b) = &p.expr
            {
                let mut ca = Vec::new();
                a.columns_used(&mut ca);
                let a_right = !ca.is_empty() && ca.iter().all(|&x| rel_of(x) == next);
                let a_left = !ca.is_empty() && ca.iter().all(|&x| rel_of(x) != next);
                let mut cb = Vec::new();
                b.columns_used(&mut cb);
                let b_right = !cb.is_empty() && cb.iter().all(|&x| rel_of(x) == next);
                let b_left = !cb.is_empty() && cb.iter().all(|&x| rel_of(x) != next);
                let to_left = |e: &Expr| e.map_columns(&|c| position(&left_layout, c));
                let to_right = |e: &Expr| e.map_columns(&|c| c - offsets[next]);
                if a_left && b_right {
                    left_keys.push(to_left(a));
                    right_keys.push(to_right(b));
                    continue;
                }
                if a_right && b_left {
                    left_keys.push(to_left(b));
                    right_keys.push(to_right(a));
                    continue;
                }
            }
            residual.push(p.expr.map_columns(&|c| position(&new_layout, c)));
        }
        let left_width = left_layout.len();
        plan = lookup_join(plan, right, left_width, left_keys, right_keys, residual);
        joined.push(next);
        layout = new_layout;
    }
    // Whatever is left filters the joined rows: constants, and predicates
    // with subqueries, which are applied after the rows are back in written
    // order because a correlated subquery refers to its outer row's columns
    // in that order.
    let rest: Vec<Expr> = preds
        .iter()
        .filter(|p| !p.used && !p.expr.needs_context())
        .map(|p| {
            p.expr
                .map_columns(&|c| layout.iter().position(|&x| x == c).expect("joined column"))
        })
        .collect();
    if let Some(f) = Expr::and_all(rest) {
        plan = if n == 1 {
            push_filter(plan, f)
        } else {
            Plan::Filter {
                input: Box::new(plan),
                predicate: f,
            }
        };
    }
    // Back to written order.
    let total: usize = widths.iter().sum();
    if layout != (0..total).collect::<Vec<_>>() {
        let types = plan.output_types();
        let exprs: Vec<Expr> = (0..total)
            .map(|c| Expr::Column(layout.iter().position(|&x| x == c).unwrap()))
            .collect();
        let out_types = (0..total)
            .map(|c| types[layout.iter().position(|&x| x == c).unwrap()])
            .collect();
        plan = Plan::Project {
            input: Box::new(plan),
            exprs,
            types: out_types,
        };
    }
    let late: Vec<Expr> = preds
        .iter()
        .filter(|p| !p.used && p.expr.needs_context())
        .map(|p| p.expr.clone())
        .collect();
    if let Some(f) = Expr::and_all(late) {
        plan = Plan::Filter {
            input: Box::new(plan),
            predicate: f,
        };
    }
    Ok(plan)
}

/// Equalities implied by `col = col` and `col = constant` conjuncts that are
/// not already present.
fn propagate_constants(preds: &[Pred]) -> Vec<Expr> {
    // Union-find over columns joined by equality.
    let mut parent: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    fn find(parent: &mut std::collections::HashMap<usize, usize>, c: usize) -> usize {
        let p = *parent.get(&c).unwrap_or(&c);
        if p == c {
            return c;
        }
        let r = find(parent, p);
        parent.insert(c, r);
        r
    }
    let mut constants: Vec<(usize, Expr)> = Vec::new();
    for p in preds {
        if let Expr::Cmp(CmpOp::Eq, a, b) = &p.expr {
            match (a.as_ref(), b.as_ref()) {
                (Expr::Column(x), Expr::Column(y)) => {
                    let (rx, ry) = (find(&mut parent, *x), find(&mut parent, *y));
                    if rx != ry {
                        parent.insert(rx, ry);
                    }
                }
                (Expr::Column(x), e) | (e, Expr::Column(x))
                    if e.is_row_independent() && !e.needs_context() =>
                {
                    constants.push((*x, e.clone()));
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    let columns: Vec<usize> = parent.keys().copied().collect();
    for (col, value) in &constants {
        let class = find(&mut parent, *col);
        for &other in &columns {
            if other != *col
                && find(&mut parent, other) == class
                && !constants.iter().any(|(c, _)| *c == other)
                && !out
                    .iter()
                    .any(|e: &Expr| matches!(e, Expr::Cmp(_, l, _) if **l == Expr::Column(other)))
            {
                out.push(Expr::Cmp(
                    CmpOp::Eq,
                    Box::new(Expr::Column(other)),
                    Box::new(value.clone()),
                ));
            }
        }
    }
    out
}

/// Joins `left` with a base table by looking its rows up by primary key,
/// one left row at a time, when the join's equalities (and the table's own
/// constant equalities) fix the whole primary key — or its first column
/// when the table would otherwise be scanned in full. Otherwise a hash
/// join.
fn lookup_join(
    left: Plan,
    right: Plan,
    left_width: usize,
    left_keys: Vec<Expr>,
    right_keys: Vec<Expr>,
    residual: Vec<Expr>,
) -> Plan {
    let hash_join =
        |left: Plan, right: Plan, left_keys, right_keys, residual: Vec<Expr>| Plan::Join {
            kind: JoinKind::Inner,
            left: Box::new(left),
            right: Box::new(right),
            left_keys,
            right_keys,
            residual: Expr::and_all(residual),
        };
    let (scan, filter) = match &right {
        Plan::Scan(s) => (s, None),
        Plan::Filter { input, predicate } => match input.as_ref() {
            Plan::Scan(s) => (s, Some(predicate)),
            _ => return hash_join(left, right, left_keys, right_keys, residual),
        },
        _ => return hash_join(left, right, left_keys, right_keys, residual),
    };
    let table = &scan.table;
    if table.primary_key.is_empty() || left_keys.is_empty() {
        return hash_join(left, right, left_keys, right_keys, residual);
    }
    let constants: Vec<(usize, Expr)> = filter
        .map(|f| {
            f.conjuncts()
                .into_iter()
                .filter_map(|c| match c {
                    Expr::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                        (Expr::Column(x), e) | (e, Expr::Column(x))
                            if e.is_row_independent() && !e.needs_context() =>
                        {
                            Some((*x, e.clone()))
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut key = Vec::new();
    let mut used = vec![false; right_keys.len()];
    for &pk in &table.primary_key {
        if let Some(i) = right_keys.iter().position(|k| *k == Expr::Column(pk)) {
            used[i] = true;
            key.push(left_keys[i].clone());
        } else if let Some((_, e)) = constants.iter().find(|(c, _)| *c == pk) {
            key.push(e.clone());
        } else {
            break;
        }
    }
    let full = key.len() == table.primary_key.len();
    let scanned_whole = matches!(scan.access, Access::Full);
    if key.is_empty() || !used.iter().any(|u| *u) || !(full || scanned_whole) {
        return hash_join(left, right, left_keys, right_keys, residual);
    }
    // Everything not enforced by the lookup key is checked on the joined row.
    let shift = |e: &Expr| e.map_columns(&|c| c + left_width);
    let mut checks = residual;
    for (i, u) in used.iter().enumerate() {
        if !u {
            checks.push(Expr::Cmp(
                CmpOp::Eq,
                Box::new(left_keys[i].clone()),
                Box::new(shift(&right_keys[i])),
            ));
        }
    }
    if let Some(f) = filter {
        checks.push(shift(f));
    }
    Plan::LookupJoin {
        left: Box::new(left),
        table: table.clone(),
        key,
        residual: Expr::and_all(checks),
    }
}
