//! Binding DDL.

use super::*;

impl Binder<'_> {
    pub(super) fn create_table(&mut self, c: &ast::CreateTable) -> Result<Bound> {
        if c.query.is_some() {
            bail!(
                FeatureNotSupported,
                "CREATE TABLE ... AS is not supported yet"
            );
        }
        let mut replicated = false;
        match &c.table_options {
            ast::CreateTableOptions::None => {}
            ast::CreateTableOptions::With(options) => {
                for o in options {
                    match o {
                        ast::SqlOption::KeyValue { key, value }
                            if object_name(key)? == "replicated" =>
                        {
                            replicated = match value {
                                ast::Expr::Value(v) => match &v.value {
                                    ast::Value::Boolean(b) => *b,
                                    other => bail!(
                                        InvalidParameterValue,
                                        "replicated must be true or false, not {other}"
                                    ),
                                },
                                other => bail!(
                                    InvalidParameterValue,
                                    "replicated must be true or false, not {other}"
                                ),
                            };
                        }
                        other => bail!(FeatureNotSupported, "table option not supported: {other}"),
                    }
                }
            }
            other => bail!(
                FeatureNotSupported,
                "table options not supported: {other:?}"
            ),
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
            indexes: Vec::new(),
            next_index_id: kv::keys::PRIMARY_INDEX + 1,
            replicated,
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

    pub(super) fn create_view(&mut self, v: &ast::CreateView) -> Result<Bound> {
        if v.materialized {
            bail!(FeatureNotSupported, "materialized views are not supported");
        }
        if v.temporary {
            bail!(FeatureNotSupported, "temporary views are not supported");
        }
        let name = object_name(&v.name)?;
        // Bind now: a view over missing tables or with bad SQL fails here.
        let (_, columns) = self.subquery_plan(&v.query, false)?;
        // Binding expanded every view the new definition reads, through
        // any depth: if one of them is this view (CREATE OR REPLACE over a
        // view that reads it), storing it would make a cycle.
        if self.deps.iter().any(|(d, _)| *d == name) {
            bail!(
                InvalidObjectDefinition,
                "infinite recursion detected in rules for relation \"{name}\" (the view would refer to itself)"
            );
        }
        let mut names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        if v.columns.len() > names.len() {
            bail!(
                Syntax,
                "CREATE VIEW specifies more column names than columns"
            );
        }
        for (n, c) in names.iter_mut().zip(&v.columns) {
            *n = ident(&c.name);
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                bail!(DuplicateColumn, "column \"{n}\" specified more than once");
            }
        }
        let view = catalog::View {
            id: 0,
            name,
            sql: v.query.to_string(),
            columns: names,
        };
        Ok(Bound::CreateView {
            view,
            or_replace: v.or_replace,
        })
    }

    pub(super) fn create_index(&mut self, c: &ast::CreateIndex) -> Result<Bound> {
        if c.predicate.is_some() || !c.include.is_empty() || c.using.is_some() {
            bail!(
                FeatureNotSupported,
                "partial, covering and non-btree indexes are not supported"
            );
        }
        let table = self.table(&c.table_name)?;
        let name = match &c.name {
            Some(n) => object_name(n)?,
            None => bail!(FeatureNotSupported, "CREATE INDEX needs an index name"),
        };
        let mut columns = Vec::new();
        for ic in &c.columns {
            let col = match &ic.column.expr {
                ast::Expr::Identifier(i) => ident(i),
                other => bail!(
                    FeatureNotSupported,
                    "indexes on expressions are not supported: {other}"
                ),
            };
            if matches!(ic.column.options.sort, Some(ast::OrderBySort::Desc)) {
                bail!(
                    FeatureNotSupported,
                    "descending index columns are not supported yet"
                );
            }
            let i = table.column_index(&col).ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedColumn,
                    format!("column \"{col}\" does not exist"),
                )
            })?;
            columns.push(i);
        }
        if columns.is_empty() {
            bail!(Syntax, "an index needs at least one column");
        }
        let index = catalog::Index {
            id: 0,
            name,
            columns,
            unique: c.unique,
        };
        Ok(Bound::CreateIndex {
            table,
            index,
            if_not_exists: c.if_not_exists,
        })
    }
}
