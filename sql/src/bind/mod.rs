//! The binder: sqlparser's AST → a bound statement with typed expressions
//! and a key-range plan.
//!
//! Binding reads table definitions through the statement's transaction, so
//! the definitions a statement used are in its read set: a concurrent DDL
//! change makes it abort (40001) rather than run against a stale schema.

pub mod expr;

use std::sync::Arc;

use kv::keys::TableId;
use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;
use txn::Txn;

use self::expr::{AggState, Typed, contains_aggregate, data_type, ident, object_name};
use crate::catalog::{self, Column, Table};
use crate::expr::Expr;
use crate::plan::{Plan, Scan, SortKey};
use crate::planner::choose_access;
use crate::types::DataType;

/// A column of a statement's result.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputColumn {
    /// The column name.
    pub name: String,
    /// Its type.
    pub ty: DataType,
}

/// A bound statement, ready to execute.
#[derive(Clone, Debug)]
pub enum Bound {
    /// A query returning rows.
    Query {
        /// The plan.
        plan: Plan,
        /// The result columns.
        columns: Vec<OutputColumn>,
    },
    /// `INSERT ... VALUES`.
    Insert {
        /// The target table.
        table: Arc<Table>,
        /// One expression per table column per row, with its type.
        rows: Vec<Vec<Typed>>,
    },
    /// `UPDATE`.
    Update {
        /// The rows to consider.
        scan: Scan,
        /// The full WHERE predicate (re-checked on every row read).
        filter: Option<Expr>,
        /// New values: column index, expression over the old row, its type.
        sets: Vec<(usize, Expr, DataType)>,
    },
    /// `DELETE`.
    Delete {
        /// The rows to consider.
        scan: Scan,
        /// The full WHERE predicate.
        filter: Option<Expr>,
    },
    /// `CREATE TABLE`.
    CreateTable {
        /// The definition (its id is assigned on execution).
        table: Table,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `DROP TABLE`.
    DropTable {
        /// Tables to drop.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `EXPLAIN` of a statement.
    Explain(Box<Bound>),
}

/// Columns visible to expressions: the columns of the FROM clause.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Visible columns in input-row order.
    columns: Vec<ScopeColumn>,
}

#[derive(Clone, Debug)]
struct ScopeColumn {
    /// The table name or alias qualifying the column.
    table: Option<String>,
    /// The column name.
    name: String,
    /// Its type.
    ty: DataType,
}

impl Scope {
    /// The columns of `table`, qualified by `alias` (or the table name).
    pub fn of_table(table: &Table, alias: Option<String>) -> Scope {
        let q = alias.unwrap_or_else(|| table.name.clone());
        Scope {
            columns: table
                .columns
                .iter()
                .map(|c| ScopeColumn {
                    table: Some(q.clone()),
                    name: c.name.clone(),
                    ty: c.ty,
                })
                .collect(),
        }
    }

    /// Resolves a (possibly qualified) column name.
    pub fn resolve(&self, table: Option<&str>, name: &str) -> Result<(usize, DataType)> {
        let mut found = None;
        for (i, c) in self.columns.iter().enumerate() {
            if c.name == name && table.is_none_or(|t| c.table.as_deref() == Some(t)) {
                if found.is_some() {
                    bail!(AmbiguousColumn, "column reference \"{name}\" is ambiguous");
                }
                found = Some((i, c.ty));
            }
        }
        if let Some(f) = found {
            return Ok(f);
        }
        match table {
            Some(t) if !self.columns.iter().any(|c| c.table.as_deref() == Some(t)) => bail!(
                UndefinedTable,
                "missing FROM-clause entry for table \"{t}\""
            ),
            Some(t) => bail!(UndefinedColumn, "column {t}.{name} does not exist"),
            None => bail!(UndefinedColumn, "column \"{name}\" does not exist"),
        }
    }
}

/// Binds statements against the catalog as seen by one transaction.
pub struct Binder<'t> {
    /// The transaction catalog reads go through.
    txn: &'t mut Txn,
    /// Parameter types: declared by the client or inferred from context.
    params: Vec<Option<DataType>>,
    /// Set while binding the select list of a grouped query.
    agg: Option<AggState>,
    /// Tables the statement depends on, to revalidate a cached plan.
    deps: Vec<(String, TableId)>,
}

impl<'t> Binder<'t> {
    /// A binder over `txn` with the client's declared parameter types
    /// (`None` where the client left the type open).
    pub fn new(txn: &'t mut Txn, declared: &[Option<DataType>]) -> Self {
        Binder {
            txn,
            params: declared.to_vec(),
            agg: None,
            deps: Vec::new(),
        }
    }

    /// The parameter types after binding; open ones default to text.
    pub fn param_types(&self) -> Vec<DataType> {
        self.params
            .iter()
            .map(|p| p.unwrap_or(DataType::Text))
            .collect()
    }

    /// The tables the statement depends on.
    pub fn deps(&self) -> &[(String, TableId)] {
        &self.deps
    }

    fn table(&mut self, name: &ast::ObjectName) -> Result<Arc<Table>> {
        let name = object_name(name)?;
        let t = catalog::require_table(self.txn, &name)?;
        self.deps.push((name, t.id));
        Ok(t)
    }

    /// Binds one statement.
    pub fn bind(&mut self, stmt: &ast::Statement) -> Result<Bound> {
        use ast::Statement as S;
        match stmt {
            S::Query(q) => {
                let (plan, columns) = self.query(q)?;
                Ok(Bound::Query { plan, columns })
            }
            S::Insert(i) => self.insert(i),
            S::Update(u) => self.update(u),
            S::Delete(d) => self.delete(d),
            S::CreateTable(c) => self.create_table(c),
            S::Drop {
                object_type: ast::ObjectType::Table,
                if_exists,
                names,
                cascade,
                ..
            } => {
                if *cascade {
                    bail!(
                        FeatureNotSupported,
                        "DROP TABLE ... CASCADE is not supported yet"
                    );
                }
                let names = names.iter().map(object_name).collect::<Result<_>>()?;
                Ok(Bound::DropTable {
                    names,
                    if_exists: *if_exists,
                })
            }
            S::Explain {
                statement, analyze, ..
            } => {
                if *analyze {
                    bail!(FeatureNotSupported, "EXPLAIN ANALYZE is not supported yet");
                }
                Ok(Bound::Explain(Box::new(self.bind(statement)?)))
            }
            other => Err(Error::unsupported(format!(
                "statement not supported yet: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    fn query(&mut self, q: &ast::Query) -> Result<(Plan, Vec<OutputColumn>)> {
        if q.with.is_some() {
            bail!(FeatureNotSupported, "WITH queries are not supported yet");
        }
        if q.fetch.is_some() || !q.locks.is_empty() {
            bail!(
                FeatureNotSupported,
                "FETCH and FOR UPDATE are not supported yet"
            );
        }
        let select = match q.body.as_ref() {
            ast::SetExpr::Select(s) => s,
            ast::SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.query(inner);
            }
            ast::SetExpr::SetOperation { .. } => bail!(
                FeatureNotSupported,
                "UNION, INTERSECT and EXCEPT are not supported yet"
            ),
            ast::SetExpr::Values(_) => bail!(
                FeatureNotSupported,
                "VALUES as a query is not supported yet"
            ),
            other => bail!(FeatureNotSupported, "query not supported yet: {other}"),
        };
        self.select(select, q)
    }

    fn select(&mut self, s: &ast::Select, q: &ast::Query) -> Result<(Plan, Vec<OutputColumn>)> {
        // FROM.
        let (mut plan, scope) = match s.from.as_slice() {
            [] => (Plan::Unit, Scope::default()),
            [twj] if twj.joins.is_empty() => match &twj.relation {
                ast::TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } => {
                    let table = self.table(name)?;
                    let alias = alias.as_ref().map(|a| ident(&a.name));
                    let scope = Scope::of_table(&table, alias);
                    (
                        Plan::Scan(Scan {
                            table,
                            access: crate::plan::Access::Full,
                        }),
                        scope,
                    )
                }
                other => bail!(FeatureNotSupported, "FROM item not supported yet: {other}"),
            },
            _ => bail!(FeatureNotSupported, "joins are not supported yet"),
        };
        // WHERE: choose the key-range access path from it, keep it as a filter.
        if let Some(w) = &s.selection {
            if contains_aggregate(w) {
                bail!(Grouping, "aggregate functions are not allowed in WHERE");
            }
            let predicate = self.predicate(w, &scope, "WHERE")?;
            if let Plan::Scan(scan) = &mut plan {
                scan.access = choose_access(&scan.table, Some(&predicate));
            }
            plan = Plan::Filter {
                input: Box::new(plan),
                predicate,
            };
        }
        // GROUP BY and aggregates.
        let group_exprs: &[ast::Expr] = match &s.group_by {
            ast::GroupByExpr::Expressions(g, mods) if mods.is_empty() => g,
            _ => bail!(
                FeatureNotSupported,
                "GROUP BY ALL and grouping modifiers are not supported"
            ),
        };
        let order_items: Vec<&ast::OrderByExpr> = match &q.order_by {
            None => Vec::new(),
            Some(ob) => match &ob.kind {
                ast::OrderByKind::Expressions(items) => items.iter().collect(),
                ast::OrderByKind::All(_) => {
                    bail!(FeatureNotSupported, "ORDER BY ALL is not supported")
                }
            },
        };
        // HAVING alone makes a query grouped, as in PostgreSQL.
        let grouped = !group_exprs.is_empty()
            || s.having.is_some()
            || s.projection.iter().any(select_item_has_aggregate)
            || order_items.iter().any(|o| contains_aggregate(&o.expr));
        if grouped {
            let mut group_by = Vec::new();
            for g in group_exprs {
                if contains_aggregate(g) {
                    bail!(Grouping, "aggregate functions are not allowed in GROUP BY");
                }
                // GROUP BY may name an output column by position.
                group_by.push(self.group_key(g, &scope, &s.projection)?);
            }
            self.agg = Some(AggState {
                input: scope.clone(),
                group_by,
                aggs: Vec::new(),
            });
        }
        let result = self.select_list(s, q, plan, &scope, &order_items);
        self.agg = None;
        result
    }

    fn group_key(
        &mut self,
        g: &ast::Expr,
        scope: &Scope,
        projection: &[ast::SelectItem],
    ) -> Result<Typed> {
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
        // A bare name that is not a column may be an output alias.
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
        q: &ast::Query,
        mut plan: Plan,
        scope: &Scope,
        order_items: &[&ast::OrderByExpr],
    ) -> Result<(Plan, Vec<OutputColumn>)> {
        // Projection.
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    if scope.columns.is_empty() {
                        bail!(Syntax, "SELECT * with no tables specified is not valid");
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        let (e, ty) = if self.agg.is_some() {
                            let ident = ast::Ident::with_quote('"', c.name.clone());
                            self.expr(&ast::Expr::Identifier(ident), scope)?
                        } else {
                            (Expr::Column(i), c.ty)
                        };
                        exprs.push(e);
                        columns.push(OutputColumn {
                            name: c.name.clone(),
                            ty,
                        });
                    }
                }
                ast::SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let t = object_name(n)?;
                    let mut any = false;
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.table.as_deref() == Some(&t) {
                            any = true;
                            exprs.push(Expr::Column(i));
                            columns.push(OutputColumn {
                                name: c.name.clone(),
                                ty: c.ty,
                            });
                        }
                    }
                    if !any {
                        bail!(
                            UndefinedTable,
                            "missing FROM-clause entry for table \"{t}\""
                        );
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let (bound, ty) = self.expr(e, scope)?;
                    exprs.push(bound);
                    columns.push(OutputColumn {
                        name: column_name(e),
                        ty: output_type(ty),
                    });
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (bound, ty) = self.expr(expr, scope)?;
                    exprs.push(bound);
                    columns.push(OutputColumn {
                        name: ident(alias),
                        ty: output_type(ty),
                    });
                }
                other => bail!(FeatureNotSupported, "select item not supported: {other}"),
            }
        }
        // HAVING.
        let having = match &s.having {
            Some(h) => Some(self.predicate(h, scope, "HAVING")?),
            None => None,
        };
        // ORDER BY: an output column by alias or position, or an expression
        // (computed as a hidden column).
        let visible = exprs.len();
        let mut keys = Vec::new();
        for o in order_items {
            let column = self.order_key(&o.expr, scope, &columns, &mut exprs)?;
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            if matches!(o.options.sort, Some(ast::OrderBySort::Using(_))) {
                bail!(FeatureNotSupported, "ORDER BY ... USING is not supported");
            }
            keys.push(SortKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        // Assemble: aggregate, having, project, distinct, sort, limit.
        if let Some(state) = self.agg.take() {
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by: state.group_by.into_iter().map(|(e, _)| e).collect(),
                aggs: state.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
        }
        if !is_identity(&exprs, &plan) {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs,
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
            Some(ast::Distinct::On(_)) => {
                bail!(FeatureNotSupported, "DISTINCT ON is not supported yet")
            }
        }
        if !keys.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        if let Some(limit) = &q.limit_clause {
            let (limit, offset) = match limit {
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
            plan = Plan::Limit {
                input: Box::new(plan),
                limit,
                offset,
            };
        }
        if exprs_len(&plan) > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
            };
        }
        Ok((plan, columns))
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

    fn order_key(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        columns: &[OutputColumn],
        exprs: &mut Vec<Expr>,
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
        let (bound, _) = self.expr(e, scope)?;
        if let Some(i) = exprs.iter().position(|x| *x == bound) {
            return Ok(i);
        }
        exprs.push(bound);
        Ok(exprs.len() - 1)
    }

    fn insert(&mut self, ins: &ast::Insert) -> Result<Bound> {
        let name = match &ins.table {
            ast::TableObject::TableName(n) => n,
            other => bail!(FeatureNotSupported, "INSERT into {other} is not supported"),
        };
        if ins.on.is_some() {
            bail!(
                FeatureNotSupported,
                "INSERT ... ON CONFLICT is not supported yet"
            );
        }
        if ins.returning.is_some() {
            bail!(FeatureNotSupported, "RETURNING is not supported yet");
        }
        let table = self.table(name)?;
        let targets: Vec<usize> = if ins.columns.is_empty() {
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
        let source = ins
            .source
            .as_ref()
            .ok_or_else(|| Error::unsupported("INSERT without VALUES is not supported yet"))?;
        let values = match source.body.as_ref() {
            ast::SetExpr::Values(v) => v,
            _ => bail!(
                FeatureNotSupported,
                "INSERT ... SELECT is not supported yet"
            ),
        };
        let mut rows = Vec::new();
        let empty = Scope::default();
        for row in &values.rows {
            if row.len() > targets.len() {
                bail!(Syntax, "INSERT has more expressions than target columns");
            }
            if row.len() < targets.len() {
                bail!(Syntax, "INSERT has more target columns than expressions");
            }
            let mut full: Vec<Option<Typed>> = vec![None; table.columns.len()];
            for (e, &col) in row.iter().zip(&targets) {
                let column = &table.columns[col];
                let bound = if is_default_keyword(e) {
                    self.default_value(column)?
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
        Ok(Bound::Insert { table, rows })
    }

    /// The DEFAULT of a column (NULL when it has none), typed as the column.
    fn default_value(&mut self, column: &Column) -> Result<Typed> {
        let Some(sql) = &column.default else {
            return Ok((Expr::Const(crate::types::Value::Null), column.ty));
        };
        let e = parse_expr(sql)?;
        let typed = self.expr(&e, &Scope::default())?;
        Ok((self.coerce_assign(typed, column)?, column.ty))
    }

    fn single_table(&mut self, twj: &ast::TableWithJoins) -> Result<(Arc<Table>, Scope)> {
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

    fn scan_with_filter(
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
        Ok((Scan { table, access }, filter))
    }

    fn update(&mut self, u: &ast::Update) -> Result<Bound> {
        if u.from.is_some() {
            bail!(FeatureNotSupported, "UPDATE ... FROM is not supported yet");
        }
        if u.returning.is_some() {
            bail!(FeatureNotSupported, "RETURNING is not supported yet");
        }
        let (table, scope) = self.single_table(&u.table)?;
        let mut sets = Vec::new();
        for a in &u.assignments {
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
                let typed = self.expr(&a.value, &scope)?;
                if contains_aggregate(&a.value) {
                    bail!(Grouping, "aggregate functions are not allowed in UPDATE");
                }
                (self.coerce_assign(typed, &column)?, column.ty)
            };
            sets.push((col, e, ty));
        }
        let (scan, filter) = self.scan_with_filter(table, &scope, &u.selection)?;
        Ok(Bound::Update { scan, filter, sets })
    }

    fn delete(&mut self, d: &ast::Delete) -> Result<Bound> {
        if d.returning.is_some() {
            bail!(FeatureNotSupported, "RETURNING is not supported yet");
        }
        if d.using.is_some() {
            bail!(FeatureNotSupported, "DELETE ... USING is not supported yet");
        }
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
        let (scan, filter) = self.scan_with_filter(table, &scope, &d.selection)?;
        Ok(Bound::Delete { scan, filter })
    }

    fn create_table(&mut self, c: &ast::CreateTable) -> Result<Bound> {
        if c.query.is_some() {
            bail!(
                FeatureNotSupported,
                "CREATE TABLE ... AS is not supported yet"
            );
        }
        if c.temporary {
            bail!(
                FeatureNotSupported,
                "temporary tables are not supported yet"
            );
        }
        let name = object_name(&c.name)?;
        let mut columns: Vec<Column> = Vec::new();
        let mut primary_key: Vec<usize> = Vec::new();
        for def in &c.columns {
            let col_name = ident(&def.name);
            if columns.iter().any(|x| x.name == col_name) {
                bail!(
                    DuplicateColumn,
                    "column \"{col_name}\" specified more than once"
                );
            }
            let ty = data_type(&def.data_type)?;
            let mut column = Column {
                name: col_name,
                ty,
                nullable: true,
                default: None,
            };
            for opt in &def.options {
                match &opt.option {
                    ast::ColumnOption::Null => column.nullable = true,
                    ast::ColumnOption::NotNull => column.nullable = false,
                    ast::ColumnOption::Default(e) => column.default = Some(e.to_string()),
                    ast::ColumnOption::PrimaryKey(_) => {
                        if !primary_key.is_empty() {
                            bail!(
                                InvalidDefinition,
                                "multiple primary keys for table \"{name}\" are not allowed"
                            );
                        }
                        primary_key.push(columns.len());
                    }
                    other => bail!(
                        FeatureNotSupported,
                        "column constraint not supported yet: {other}"
                    ),
                }
            }
            columns.push(column);
        }
        for constraint in &c.constraints {
            match constraint {
                ast::TableConstraint::PrimaryKey(pk) => {
                    if !primary_key.is_empty() {
                        bail!(
                            InvalidDefinition,
                            "multiple primary keys for table \"{name}\" are not allowed"
                        );
                    }
                    for ic in &pk.columns {
                        let col = match &ic.column.expr {
                            ast::Expr::Identifier(i) => ident(i),
                            other => {
                                bail!(FeatureNotSupported, "primary key on expression {other}")
                            }
                        };
                        let i = columns.iter().position(|x| x.name == col).ok_or_else(|| {
                            Error::new(
                                ErrorKind::UndefinedColumn,
                                format!("column \"{col}\" named in key does not exist"),
                            )
                        })?;
                        if primary_key.contains(&i) {
                            bail!(
                                DuplicateColumn,
                                "column \"{col}\" appears twice in primary key constraint"
                            );
                        }
                        primary_key.push(i);
                    }
                }
                other => bail!(
                    FeatureNotSupported,
                    "table constraint not supported yet: {other}"
                ),
            }
        }
        if columns.is_empty() {
            bail!(
                FeatureNotSupported,
                "tables without columns are not supported"
            );
        }
        for &i in &primary_key {
            columns[i].nullable = false;
        }
        let table = Table {
            id: 0,
            name,
            columns,
            primary_key,
        };
        // Check every DEFAULT now, so a bad one fails CREATE TABLE.
        for col in table.columns.clone() {
            if col.default.is_some() {
                let (e, _) = self.default_value(&col)?;
                if !e.is_row_independent() {
                    bail!(
                        FeatureNotSupported,
                        "cannot use column reference in DEFAULT expression"
                    );
                }
            }
        }
        Ok(Bound::CreateTable {
            table,
            if_not_exists: c.if_not_exists,
        })
    }
}

/// True when `exprs` would just copy every column of `input` in order.
fn is_identity(exprs: &[Expr], input: &Plan) -> bool {
    let width = match input {
        Plan::Aggregate { group_by, aggs, .. } => group_by.len() + aggs.len(),
        Plan::Filter { input, .. } => return is_identity(exprs, input),
        _ => return false,
    };
    exprs.len() == width && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i))
}

fn exprs_len(plan: &Plan) -> usize {
    match plan {
        Plan::Project { exprs, .. } => exprs.len(),
        Plan::Sort { input, .. }
        | Plan::Limit { input, .. }
        | Plan::Distinct { input }
        | Plan::Filter { input, .. } => exprs_len(input),
        _ => 0,
    }
}

fn select_item_has_aggregate(item: &ast::SelectItem) -> bool {
    match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_aggregate(e)
        }
        _ => false,
    }
}

fn is_default_keyword(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// The type a client sees for a result column: unknown literals are text.
fn output_type(ty: DataType) -> DataType {
    if ty == DataType::Unknown {
        DataType::Text
    } else {
        ty
    }
}

/// PostgreSQL's default name for a result column.
fn column_name(e: &ast::Expr) -> String {
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
        _ => "?column?",
    }
    .to_string()
}

/// Parses one SQL expression (used for stored DEFAULT expressions).
pub fn parse_expr(sql: &str) -> Result<ast::Expr> {
    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::new(ErrorKind::Syntax, e.to_string()))
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
