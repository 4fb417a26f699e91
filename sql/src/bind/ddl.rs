//! Binding DDL.

use super::*;

/// Constraints a table definition declares besides its columns and
/// primary key, by names.
#[derive(Default)]
pub(super) struct Constraints {
    /// `CHECK`: given name, SQL, and the column of a column constraint.
    pub checks: Vec<(Option<String>, String, Option<String>)>,
    /// `UNIQUE`: given name and columns.
    pub uniques: Vec<(Option<String>, Vec<String>)>,
    /// `FOREIGN KEY` / `REFERENCES`.
    pub foreign_keys: Vec<fkey::FkDef>,
}

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
                        // PostgreSQL's storage parameters tune its heap
                        // and vacuum; they mean nothing here.
                        ast::SqlOption::KeyValue { key, .. }
                            if {
                                let k = object_name(key)?;
                                k == "fillfactor"
                                    || k == "parallel_workers"
                                    || k == "toast_tuple_target"
                                    || k == "user_catalog_table"
                                    || k.starts_with("autovacuum_")
                                    || k.starts_with("toast.")
                            } => {}
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
        let mut sequences = Vec::new();
        let mut extras = Constraints::default();
        for def in &c.columns {
            let col_name = ident(&def.name);
            if columns.iter().any(|x| x.name == col_name) {
                bail!(
                    DuplicateColumn,
                    "column \"{col_name}\" specified more than once"
                );
            }
            let (column, is_key) = self.define_column(&name, def, &mut sequences, &mut extras)?;
            if is_key {
                if !primary_key.is_empty() {
                    bail!(
                        InvalidDefinition,
                        "multiple primary keys for table \"{name}\" are not allowed"
                    );
                }
                primary_key.push(columns.len());
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
                ast::TableConstraint::Check(c) => {
                    extras
                        .checks
                        .push((c.name.as_ref().map(ident), c.expr.to_string(), None))
                }
                ast::TableConstraint::Unique(u) => extras
                    .uniques
                    .push((u.name.as_ref().map(ident), alter::column_list(&u.columns)?)),
                ast::TableConstraint::ForeignKey(fk) => {
                    extras.foreign_keys.push(fkey::FkDef::from_ast(fk, None)?)
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
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            referenced_by: Vec::new(),
            version: 0,
        };
        let mut table = table;
        for (given, sql, column) in extras.checks {
            let check = self.check_constraint(&table, given, &sql, column.as_deref())?;
            table.checks.push(check);
        }
        let mut uniques: Vec<catalog::Index> = Vec::new();
        for (given, names) in extras.uniques {
            let mut columns = Vec::new();
            for n in &names {
                let i = table.column_index(n).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedColumn,
                        format!("column \"{n}\" named in key does not exist"),
                    )
                })?;
                columns.push(i);
            }
            // A constraint that repeats the primary key or another one is
            // the same constraint (PostgreSQL makes one index).
            let same = |a: &[usize]| a == columns.as_slice();
            if same(&table.primary_key) || uniques.iter().any(|u| same(&u.columns)) {
                continue;
            }
            let name = given.unwrap_or_else(|| {
                let base = format!("{}_{}_key", table.name, names.join("_"));
                catalog::free_name(base, |n| uniques.iter().any(|u| u.name == n))
            });
            uniques.push(catalog::Index {
                id: 0,
                name,
                columns,
                unique: true,
            });
        }
        let unique_sets: Vec<Vec<usize>> = uniques.iter().map(|u| u.columns.clone()).collect();
        for def in &extras.foreign_keys {
            let fk = def.resolve(self.txn, &table, &unique_sets)?;
            if fk.parent != table.name {
                // The referenced table is read in this transaction: a
                // concurrent change of it conflicts with this one.
                let parent = catalog::require_table(self.txn, &fk.parent)?;
                self.deps
                    .push((parent.name.clone(), (parent.id, parent.version)));
            } else if !table.referenced_by.contains(&table.name) {
                table.referenced_by.push(table.name.clone());
            }
            table.foreign_keys.push(fk);
        }
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
            sequences,
            uniques,
        })
    }

    /// One column of `CREATE TABLE` (or `ALTER TABLE … ADD COLUMN`) of
    /// table `name`: the column, and whether it says `PRIMARY KEY`. The
    /// sequence of a `SERIAL` or identity column is added to `sequences`.
    pub(super) fn define_column(
        &mut self,
        name: &str,
        def: &ast::ColumnDef,
        sequences: &mut Vec<catalog::Sequence>,
        extras: &mut Constraints,
    ) -> Result<(Column, bool)> {
        let col_name = ident(&def.name);
        let mut is_key = false;
        // SERIAL and friends: an integer column, NOT NULL, whose
        // default takes values from a sequence it owns.
        let serial = match &def.data_type {
            ast::DataType::Custom(n, mods) if mods.is_empty() => match object_name(n)?.as_str() {
                "serial" | "serial4" => Some(DataType::Int4),
                "bigserial" | "serial8" => Some(DataType::Int8),
                "smallserial" | "serial2" => Some(DataType::Int2),
                _ => None,
            },
            _ => None,
        };
        let ty = match serial {
            Some(t) => t,
            None => data_type(&def.data_type)?,
        };
        let mut column = Column {
            name: col_name.clone(),
            ty,
            nullable: serial.is_none(),
            default: None,
            identity_always: false,
        };
        let mut owned_sequence = |options: &[ast::SequenceOptions]| -> Result<String> {
            let seq_name = format!("{name}_{col_name}_seq");
            let type_max = match ty {
                DataType::Int2 => i16::MAX as i64,
                DataType::Int4 => i32::MAX as i64,
                DataType::Int8 => i64::MAX,
                other => bail!(
                    InvalidDefinition,
                    "identity column type must be smallint, integer, or bigint, not {}",
                    other.pg_name()
                ),
            };
            let (mut seq, _) = sequence_definition(seq_name.clone(), options, type_max)?;
            seq.owned_by = Some((name.to_string(), col_name.clone()));
            sequences.push(seq);
            Ok(format!("nextval('{seq_name}')"))
        };
        if serial.is_some() {
            column.default = Some(owned_sequence(&[])?);
        }
        for opt in &def.options {
            match &opt.option {
                ast::ColumnOption::Null => column.nullable = true,
                ast::ColumnOption::NotNull => column.nullable = false,
                ast::ColumnOption::Default(_) if serial.is_some() => bail!(
                    Syntax,
                    "multiple default values specified for column \"{}\" of table \"{name}\"",
                    column.name
                ),
                ast::ColumnOption::Default(e) => column.default = Some(e.to_string()),
                ast::ColumnOption::Generated {
                    generated_as: how @ (ast::GeneratedAs::Always | ast::GeneratedAs::ByDefault),
                    sequence_options,
                    generation_expr: None,
                    ..
                } => {
                    if column.default.is_some() {
                        bail!(
                            Syntax,
                            "both default and identity specified for column \"{}\" of table \"{name}\"",
                            column.name
                        );
                    }
                    column.default =
                        Some(owned_sequence(sequence_options.as_deref().unwrap_or(&[]))?);
                    column.nullable = false;
                    column.identity_always = matches!(how, ast::GeneratedAs::Always);
                }
                ast::ColumnOption::PrimaryKey(_) => is_key = true,
                ast::ColumnOption::Check(c) => extras.checks.push((
                    c.name.as_ref().or(opt.name.as_ref()).map(ident),
                    c.expr.to_string(),
                    Some(col_name.clone()),
                )),
                ast::ColumnOption::Unique(_) => extras
                    .uniques
                    .push((opt.name.as_ref().map(ident), vec![col_name.clone()])),
                ast::ColumnOption::ForeignKey(fk) => {
                    let mut def = fkey::FkDef::from_ast(fk, Some(&col_name))?;
                    if def.name.is_none() {
                        def.name = opt.name.as_ref().map(ident);
                    }
                    extras.foreign_keys.push(def);
                }
                other => bail!(
                    FeatureNotSupported,
                    "column constraint not supported yet: {other}"
                ),
            }
        }
        Ok((column, is_key))
    }

    /// `OWNED BY table.column`: the table and column must exist.
    pub(super) fn sequence_owner(&mut self, owner: &ast::ObjectName) -> Result<(String, String)> {
        let parts: Vec<String> = owner
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident)
            .collect();
        let [table, column] = parts.as_slice() else {
            bail!(FeatureNotSupported, "OWNED BY takes table.column (or NONE)");
        };
        let t = catalog::require_table(self.txn, table)?;
        if t.column_index(column).is_none() {
            bail!(
                UndefinedColumn,
                "column \"{column}\" of relation \"{table}\" does not exist"
            );
        }
        Ok((table.clone(), column.clone()))
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

/// A constant integer option of `CREATE SEQUENCE`.
fn option_int(e: &ast::Expr) -> Result<i64> {
    let (text, negative) = match e {
        ast::Expr::Value(v) => (v.value.to_string(), false),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            ast::Expr::Value(v) => (v.value.to_string(), true),
            other => bail!(
                Syntax,
                "sequence options take integer constants, not {other}"
            ),
        },
        other => bail!(
            Syntax,
            "sequence options take integer constants, not {other}"
        ),
    };
    let v: i64 = text.parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidParameterValue,
            format!("invalid sequence option value {text}"),
        )
    })?;
    Ok(if negative { -v } else { v })
}

/// A sequence from `CREATE SEQUENCE`'s (or an identity column's) options,
/// and its `OWNED BY` target if any (`type_max`: the largest value of the
/// column's type).
pub(super) fn sequence_definition(
    name: String,
    options: &[ast::SequenceOptions],
    type_max: i64,
) -> Result<(catalog::Sequence, Option<ast::ObjectName>)> {
    let (mut increment, mut min, mut max, mut start, mut cache) = (None, None, None, None, None);
    let mut cycle = false;
    let mut owned_by = None;
    let mut type_max = type_max;
    for o in options {
        match o {
            ast::SequenceOptions::IncrementBy(e, _) => increment = Some(option_int(e)?),
            ast::SequenceOptions::MinValue(e) => min = e.as_ref().map(option_int).transpose()?,
            ast::SequenceOptions::MaxValue(e) => max = e.as_ref().map(option_int).transpose()?,
            ast::SequenceOptions::StartWith(e, _) => start = Some(option_int(e)?),
            ast::SequenceOptions::Cache(e) => cache = Some(option_int(e)?),
            ast::SequenceOptions::Cycle(no) => cycle = !*no,
            ast::SequenceOptions::OwnedBy(o) => owned_by = o.clone(),
            ast::SequenceOptions::DataType(t) => {
                type_max = match data_type(t)? {
                    DataType::Int2 => i16::MAX as i64,
                    DataType::Int4 => i32::MAX as i64,
                    DataType::Int8 => i64::MAX,
                    _ => bail!(
                        InvalidParameterValue,
                        "sequence type must be smallint, integer, or bigint"
                    ),
                }
            }
        }
    }
    let options = crate::sequence::Options {
        increment,
        min,
        max,
        start,
        cache,
        cycle,
    };
    let seq = crate::sequence::define(name, options, type_max)?;
    Ok((seq, owned_by))
}

impl Binder<'_> {
    /// A CHECK constraint of `table`, bound now so that a bad one fails
    /// the statement: a boolean over the table's columns, without
    /// subqueries or aggregates. Unnamed ones get PostgreSQL's names
    /// (`column`: the one column it was written on or reads).
    pub(super) fn check_constraint(
        &mut self,
        table: &Table,
        given: Option<String>,
        sql: &str,
        column: Option<&str>,
    ) -> Result<catalog::Check> {
        let parsed = parse_expr(sql)?;
        if contains_aggregate(&parsed) {
            bail!(
                Grouping,
                "aggregate functions are not allowed in check constraints"
            );
        }
        let scope = Scope::of_table(table, None);
        let bound = self.predicate(&parsed, &scope, "CHECK")?;
        if bound.has_subquery() {
            bail!(
                FeatureNotSupported,
                "cannot use subquery in check constraint"
            );
        }
        let name = match given {
            Some(n) => {
                if table.checks.iter().any(|c| c.name == n) {
                    bail!(
                        DuplicateObject,
                        "constraint \"{n}\" for relation \"{}\" already exists",
                        table.name
                    );
                }
                n
            }
            None => {
                let mut cols = Vec::new();
                bound.columns_used(&mut cols);
                cols.sort_unstable();
                cols.dedup();
                let only = match (column, cols.as_slice()) {
                    (Some(c), _) => Some(c.to_string()),
                    (None, [one]) => Some(table.columns[*one].name.clone()),
                    _ => None,
                };
                table.check_name(only.as_deref())
            }
        };
        Ok(catalog::Check {
            name,
            sql: sql.to_string(),
        })
    }
}
