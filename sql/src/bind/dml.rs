//! Binding INSERT, UPDATE and DELETE.

use super::*;
use crate::exec::{Conflict, ConflictTarget, InsertSource, Returning};

impl Binder<'_> {
    pub(super) fn insert(&mut self, ins: &ast::Insert) -> Result<Bound> {
        let name = match &ins.table {
            ast::TableObject::TableName(n) => n,
            other => bail!(FeatureNotSupported, "INSERT into {other} is not supported"),
        };
        let table = self.table(name)?;
        let alias = ins.table_alias.as_ref().map(|a| ident(&a.alias));
        let mut targets: Vec<usize> = if ins.columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            let mut v = Vec::new();
            for c in &ins.columns {
                let n = object_name(c)?;
                let i = table.column_index(&n).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedColumn,
                        format!(
                            "column \"{n}\" of relation \"{}\" does not exist",
                            table.name
                        ),
                    )
                })?;
                if v.contains(&i) {
                    bail!(DuplicateColumn, "column \"{n}\" specified more than once");
                }
                v.push(i);
            }
            v
        };
        let source = match ins.source.as_ref() {
            None => InsertSource::Rows(vec![
                (0..table.columns.len())
                    .map(|i| self.default_value(&table.columns[i]))
                    .collect::<Result<_>>()?,
            ]),
            Some(q) => match q.body.as_ref() {
                ast::SetExpr::Values(values)
                    if q.order_by.is_none() && q.limit_clause.is_none() =>
                {
                    // Without a column list, fewer values fill the first
                    // columns and the rest take their defaults.
                    if let Some(first) = values.rows.first()
                        && ins.columns.is_empty()
                        && first.len() < targets.len()
                    {
                        targets.truncate(first.len());
                    }
                    InsertSource::Rows(self.insert_values(&table, &targets, values)?)
                }
                _ => {
                    let (plan, columns) = self.subquery_plan(q, false)?;
                    if ins.columns.is_empty() && columns.len() < targets.len() {
                        targets.truncate(columns.len());
                    }
                    if columns.len() > targets.len() {
                        bail!(Syntax, "INSERT has more expressions than target columns");
                    }
                    if columns.len() < targets.len() {
                        bail!(Syntax, "INSERT has more target columns than expressions");
                    }
                    for (c, &t) in columns.iter().zip(&targets) {
                        if table.columns[t].identity_always {
                            return Err(generated_always(&table.columns[t]));
                        }
                        // Checks the assignment is allowed; values are converted per row.
                        self.coerce_assign(
                            (Expr::Const(crate::types::Value::Null), c.ty),
                            &table.columns[t],
                        )?;
                    }
                    let defaults = (0..table.columns.len())
                        .map(|i| self.default_value(&table.columns[i]))
                        .collect::<Result<_>>()?;
                    InsertSource::Query {
                        plan: Box::new(plan),
                        targets,
                        defaults,
                    }
                }
            },
        };
        let scope = Scope::of_table(&table, alias.clone());
        let conflict = match &ins.on {
            None => None,
            Some(ast::OnInsert::OnConflict(c)) => Some(self.on_conflict(&table, &scope, c)?),
            Some(other) => bail!(FeatureNotSupported, "{other} is not supported"),
        };
        let returning = self.returning(&ins.returning, &scope)?;
        Ok(Bound::Insert {
            table,
            source,
            conflict,
            returning,
        })
    }

    fn insert_values(
        &mut self,
        table: &Table,
        targets: &[usize],
        values: &ast::Values,
    ) -> Result<Vec<Vec<Typed>>> {
        let mut rows = Vec::new();
        let empty = Scope::default();
        for row in &values.rows {
            if row.len() != values.rows[0].len() {
                bail!(Syntax, "VALUES lists must all be the same length");
            }
            if row.len() > targets.len() {
                bail!(Syntax, "INSERT has more expressions than target columns");
            }
            if row.len() < targets.len() {
                bail!(Syntax, "INSERT has more target columns than expressions");
            }
            let mut full: Vec<Option<Typed>> = vec![None; table.columns.len()];
            for (e, &col) in row.iter().zip(targets) {
                let column = &table.columns[col];
                let bound = if is_default_keyword(e) {
                    self.default_value(column)?
                } else if column.identity_always {
                    return Err(generated_always(column));
                } else {
                    let typed = self.expr(e, &empty)?;
                    (self.coerce_assign(typed, column)?, column.ty)
                };
                full[col] = Some(bound);
            }
            let mut out = Vec::new();
            for (i, slot) in full.into_iter().enumerate() {
                out.push(match slot {
                    Some(t) => t,
                    None => self.default_value(&table.columns[i])?,
                });
            }
            rows.push(out);
        }
        Ok(rows)
    }

    /// `ON CONFLICT [target] DO NOTHING | DO UPDATE SET ... [WHERE ...]`.
    /// SET and WHERE see the existing row (by the table's name or alias)
    /// and the proposed one as `excluded`.
    fn on_conflict(
        &mut self,
        table: &Table,
        scope: &Scope,
        c: &ast::OnConflict,
    ) -> Result<Conflict> {
        let target = match &c.conflict_target {
            None => None,
            Some(ast::ConflictTarget::Columns { columns, predicate }) => {
                if predicate.is_some() {
                    bail!(
                        FeatureNotSupported,
                        "ON CONFLICT ... WHERE is not supported"
                    );
                }
                let mut cols = Vec::new();
                for ci in columns {
                    let n = ident(ci);
                    cols.push(table.column_index(&n).ok_or_else(|| {
                        Error::new(
                            ErrorKind::UndefinedColumn,
                            format!("column \"{n}\" does not exist"),
                        )
                    })?);
                }
                let same = |a: &[usize], b: &[usize]| {
                    let (mut x, mut y) = (a.to_vec(), b.to_vec());
                    x.sort_unstable();
                    y.sort_unstable();
                    x == y
                };
                if !table.primary_key.is_empty() && same(&cols, &table.primary_key) {
                    Some(ConflictTarget::PrimaryKey)
                } else if let Some(index) = table
                    .indexes
                    .iter()
                    .find(|i| i.unique && same(&cols, &i.columns))
                {
                    Some(ConflictTarget::Unique(index.clone()))
                } else {
                    bail!(
                        InvalidColumnReference,
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                    );
                }
            }
            Some(ast::ConflictTarget::OnConstraint(name)) => {
                let n = object_name(name)?;
                if n == table.pkey_name() {
                    Some(ConflictTarget::PrimaryKey)
                } else if let Some(index) = table.index(&n).filter(|i| i.unique) {
                    Some(ConflictTarget::Unique(index.clone()))
                } else {
                    bail!(
                        UndefinedObject,
                        "constraint \"{n}\" for table \"{}\" does not exist",
                        table.name
                    );
                }
            }
        };
        match &c.action {
            ast::OnConflictAction::DoNothing => Ok(Conflict::Nothing { target }),
            ast::OnConflictAction::DoUpdate(u) => {
                let Some(target) = target else {
                    bail!(
                        Syntax,
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                    );
                };
                let mut excluded = Scope::of_table(table, Some("excluded".to_string()));
                excluded
                    .columns
                    .iter_mut()
                    .for_each(|c| c.table = Some("excluded".into()));
                let both = Scope::concat([scope, &excluded]);
                let sets = self.assignments(table, &u.assignments, &both)?;
                let filter = match &u.selection {
                    Some(w) => Some(self.predicate(w, &both, "WHERE")?),
                    None => None,
                };
                Ok(Conflict::Update {
                    target,
                    sets,
                    filter,
                })
            }
        }
    }

    /// `SET col = expr, ...` for UPDATE and ON CONFLICT DO UPDATE.
    fn assignments(
        &mut self,
        table: &Table,
        assignments: &[ast::Assignment],
        scope: &Scope,
    ) -> Result<Vec<(usize, Expr, DataType)>> {
        let mut sets = Vec::new();
        for a in assignments {
            let target = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => object_name(n)?,
                ast::AssignmentTarget::Tuple(_) => {
                    bail!(FeatureNotSupported, "multi-column SET is not supported yet")
                }
            };
            let col = table.column_index(&target).ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedColumn,
                    format!(
                        "column \"{target}\" of relation \"{}\" does not exist",
                        table.name
                    ),
                )
            })?;
            if sets.iter().any(|(c, _, _)| *c == col) {
                bail!(
                    DuplicateColumn,
                    "multiple assignments to same column \"{target}\""
                );
            }
            let column = table.columns[col].clone();
            let (e, ty) = if is_default_keyword(&a.value) {
                self.default_value(&column)?
            } else {
                if contains_aggregate(&a.value) {
                    bail!(Grouping, "aggregate functions are not allowed in UPDATE");
                }
                let typed = self.expr(&a.value, scope)?;
                (self.coerce_assign(typed, &column)?, column.ty)
            };
            sets.push((col, e, ty));
        }
        Ok(sets)
    }

    /// `RETURNING ...` over the written row.
    fn returning(
        &mut self,
        items: &Option<Vec<ast::SelectItem>>,
        scope: &Scope,
    ) -> Result<Option<Returning>> {
        let Some(items) = items else {
            return Ok(None);
        };
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for item in items {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    for (i, c) in scope.columns.iter().enumerate() {
                        exprs.push(Expr::Column(i));
                        columns.push(OutputColumn {
                            name: c.name.clone(),
                            ty: c.ty,
                        });
                    }
                }
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                    if contains_aggregate(e) {
                        bail!(Grouping, "aggregate functions are not allowed in RETURNING");
                    }
                    let (bound, ty) = self.expr(e, scope)?;
                    let name = match item {
                        ast::SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                        _ => query::column_name(e),
                    };
                    exprs.push(bound);
                    columns.push(OutputColumn {
                        name,
                        ty: output_type(ty),
                    });
                }
                other => bail!(FeatureNotSupported, "RETURNING item not supported: {other}"),
            }
        }
        Ok(Some(Returning { exprs, columns }))
    }

    /// The DEFAULT of a column (NULL when it has none), typed as the
    /// column (COPY fills the columns its data does not give with these).
    pub fn column_default(&mut self, column: &Column) -> Result<Typed> {
        self.default_value(column)
    }

    /// The DEFAULT of a column (NULL when it has none), typed as the column.
    pub(super) fn default_value(&mut self, column: &Column) -> Result<Typed> {
        let Some(sql) = &column.default else {
            return Ok((Expr::Const(crate::types::Value::Null), column.ty));
        };
        let e = parse_expr(sql)?;
        let typed = self.expr(&e, &Scope::default())?;
        Ok((self.coerce_assign(typed, column)?, column.ty))
    }

    pub(super) fn single_table(
        &mut self,
        twj: &ast::TableWithJoins,
    ) -> Result<(Arc<Table>, Scope)> {
        if !twj.joins.is_empty() {
            bail!(FeatureNotSupported, "joins are not supported yet");
        }
        match &twj.relation {
            ast::TableFactor::Table { name, alias, .. } => {
                let table = self.table(name)?;
                let scope = Scope::of_table(&table, alias.as_ref().map(|a| ident(&a.name)));
                Ok((table, scope))
            }
            other => bail!(FeatureNotSupported, "target not supported: {other}"),
        }
    }

    pub(super) fn scan_with_filter(
        &mut self,
        table: Arc<Table>,
        scope: &Scope,
        selection: &Option<ast::Expr>,
    ) -> Result<(Scan, Option<Expr>)> {
        let filter = match selection {
            Some(w) => {
                if contains_aggregate(w) {
                    bail!(Grouping, "aggregate functions are not allowed in WHERE");
                }
                Some(self.predicate(w, scope, "WHERE")?)
            }
            None => None,
        };
        let access = choose_access(&table, filter.as_ref());
        Ok((
            Scan {
                table,
                access,
                reverse: false,
            },
            filter,
        ))
    }

    pub(super) fn update(&mut self, u: &ast::Update) -> Result<Bound> {
        let (table, scope) = self.single_table(&u.table)?;
        if let Some(
            ast::UpdateTableFromKind::AfterSet(from) | ast::UpdateTableFromKind::BeforeSet(from),
        ) = &u.from
        {
            let (join, scope) = self.target_join(&table, &u.table, from, &u.selection)?;
            let sets = self.assignments(&table, &u.assignments, &scope)?;
            let returning = self.returning(&u.returning, &scope)?;
            return Ok(Bound::Update {
                scan: Self::whole(table),
                filter: None,
                sets,
                returning,
                join: Some(join),
            });
        }
        let sets = self.assignments(&table, &u.assignments, &scope)?;
        let (scan, filter) = self.scan_with_filter(table, &scope, &u.selection)?;
        let returning = self.returning(&u.returning, &scope)?;
        Ok(Bound::Update {
            scan,
            filter,
            sets,
            returning,
            join: None,
        })
    }

    /// A full scan of `table` (the placeholder of a joined UPDATE/DELETE).
    fn whole(table: Arc<Table>) -> Scan {
        Scan {
            table,
            access: crate::plan::Access::Full,
            reverse: false,
        }
    }

    /// `UPDATE t … FROM items WHERE …` / `DELETE FROM t USING items WHERE
    /// …`: one plan over the target joined with the other items, target
    /// columns first. Each target row is written once, however many rows
    /// it joins (as in PostgreSQL, which of them sets the values is not
    /// defined); rows are found again by their primary key.
    fn target_join(
        &mut self,
        table: &Arc<Table>,
        target: &ast::TableWithJoins,
        items: &[ast::TableWithJoins],
        selection: &Option<ast::Expr>,
    ) -> Result<(Plan, Scope)> {
        if table.primary_key.is_empty() {
            bail!(
                FeatureNotSupported,
                "UPDATE … FROM and DELETE … USING need a primary key on \"{}\"",
                table.name
            );
        }
        let mut all = vec![target.clone()];
        all.extend(items.iter().cloned());
        let (plan, scope) = self.bind_from(&all, selection.as_ref())?;
        if let Some(w) = selection
            && contains_aggregate(w)
        {
            bail!(Grouping, "aggregate functions are not allowed in WHERE");
        }
        Ok((plan, scope))
    }

    pub(super) fn delete(&mut self, d: &ast::Delete) -> Result<Bound> {
        let from = match &d.from {
            ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
        };
        let [twj] = from.as_slice() else {
            bail!(
                FeatureNotSupported,
                "DELETE from several tables is not supported"
            );
        };
        let (table, scope) = self.single_table(twj)?;
        if let Some(using) = &d.using {
            let (join, scope) = self.target_join(&table, twj, using, &d.selection)?;
            let returning = self.returning(&d.returning, &scope)?;
            return Ok(Bound::Delete {
                scan: Self::whole(table),
                filter: None,
                returning,
                join: Some(join),
            });
        }
        let (scan, filter) = self.scan_with_filter(table, &scope, &d.selection)?;
        let returning = self.returning(&d.returning, &scope)?;
        Ok(Bound::Delete {
            scan,
            filter,
            returning,
            join: None,
        })
    }
}

fn is_default_keyword(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// PostgreSQL's refusal of a value for a `GENERATED ALWAYS` identity column.
fn generated_always(column: &Column) -> Error {
    Error::new(
        ErrorKind::GeneratedAlways,
        format!(
            "cannot insert a non-DEFAULT value into column \"{}\" (it is an identity column defined as GENERATED ALWAYS)",
            column.name
        ),
    )
}
