//! The binder: sqlparser's AST → a bound statement with typed expressions
//! and a key-range plan.
//!
//! Binding reads table definitions through the statement's transaction, so
//! the definitions a statement used are in its read set: a concurrent DDL
//! change makes it abort (40001) rather than run against a stale schema.

mod alter;
mod calls;
mod datetime;
pub use alter::AlterOp;
pub use datetime::is_utc as is_utc_zone;
pub use fkey::FkDef;
mod ddl;
mod dml;
pub mod expr;
mod fkey;
mod from;
mod functions;
mod oids;
mod query;
mod rows;
mod window;

use std::sync::Arc;

use kv::keys::TableId;
use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;
use txn::Txn;

use self::expr::{AggState, Typed, common_type, contains_aggregate, data_type, ident, object_name};
use self::query::output_type;
use crate::catalog::{self, Column, Table};
use crate::expr::{CmpOp, Expr};
use crate::plan::{Plan, Scan, SetOpKind, SortKey};
use crate::planner::choose_access;
use crate::types::DataType;

/// Who a session is, for `current_user` and `current_database()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The user name the client connected as.
    pub user: String,
    /// The database name it asked for (every name reaches the same data).
    pub database: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            user: "mako".into(),
            database: "mako".into(),
        }
    }
}

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
        /// `FOR UPDATE`: the rows read are locked at commit, as if written.
        for_update: bool,
    },
    /// `INSERT`.
    Insert {
        /// The target table.
        table: Arc<Table>,
        /// Where the rows come from.
        source: crate::exec::InsertSource,
        /// `ON CONFLICT`.
        conflict: Option<crate::exec::Conflict>,
        /// `RETURNING`.
        returning: Option<crate::exec::Returning>,
    },
    /// `UPDATE`.
    Update {
        /// The rows to consider.
        scan: Scan,
        /// The full WHERE predicate (re-checked on every row read).
        filter: Option<Expr>,
        /// New values: column index, expression over the old row, its type.
        sets: Vec<(usize, Expr, DataType)>,
        /// `RETURNING`.
        returning: Option<crate::exec::Returning>,
        /// `UPDATE … FROM`: the join of the target with the FROM items
        /// under WHERE, target columns first; `sets` and `returning` are
        /// over its rows, and `scan`/`filter` are not used.
        join: Option<Plan>,
    },
    /// `DELETE`.
    Delete {
        /// The rows to consider.
        scan: Scan,
        /// The full WHERE predicate.
        filter: Option<Expr>,
        /// `RETURNING`.
        returning: Option<crate::exec::Returning>,
        /// `DELETE … USING`: the join of the target with the USING items
        /// under WHERE, target columns first (`scan`/`filter` unused).
        join: Option<Plan>,
    },
    /// `CREATE TABLE`.
    CreateTable {
        /// The definition (its id is assigned on execution).
        table: Table,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Sequences of its `SERIAL` and identity columns.
        sequences: Vec<catalog::Sequence>,
        /// Indexes of its `UNIQUE` constraints.
        uniques: Vec<catalog::Index>,
    },
    /// `ALTER TABLE`.
    AlterTable {
        /// The table as it was when bound.
        table: Arc<Table>,
        /// The changes, in order.
        ops: Vec<AlterOp>,
    },
    /// `TRUNCATE`: each table gets a new, empty keyspace.
    Truncate {
        /// The tables.
        names: Vec<String>,
        /// `RESTART IDENTITY`: their owned sequences start over.
        restart_identity: bool,
        /// `CASCADE`: tables whose foreign keys reference them too.
        cascade: bool,
    },
    /// A statement accepted for compatibility that has nothing to do here
    /// (`VACUUM`, `ANALYZE`): answers with its tag.
    Noop {
        /// The command tag.
        tag: &'static str,
    },
    /// `CREATE SEQUENCE`.
    CreateSequence {
        /// The definition (its id is assigned on execution).
        sequence: catalog::Sequence,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `DROP SEQUENCE`.
    DropSequence {
        /// The sequences.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `DROP TABLE`.
    DropTable {
        /// Tables to drop.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `CASCADE`: foreign keys of other tables that reference them go.
        cascade: bool,
    },
    /// `CREATE VIEW`.
    CreateView {
        /// The definition (its id is assigned on execution).
        view: catalog::View,
        /// `OR REPLACE`.
        or_replace: bool,
    },
    /// `DROP VIEW`.
    DropView {
        /// Views to drop.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `CREATE INDEX`.
    CreateIndex {
        /// The table.
        table: Arc<Table>,
        /// The new index.
        index: catalog::Index,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `DROP INDEX`.
    DropIndex {
        /// Indexes to drop.
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
    /// The base-table column it reads, if any (for functional
    /// dependencies on a grouped primary key).
    origin: Option<Origin>,
    /// Merged away by `JOIN … USING`/`NATURAL JOIN`: reachable only by its
    /// qualified name, not by the bare name nor by `*`.
    hidden: bool,
    /// A `USING` column of the join numbered this (later joins higher):
    /// `*` lists those first, the outermost join's first.
    using_level: u32,
}

/// Where a scope column comes from: column `col` of one occurrence `rel`
/// of a table in FROM, whose primary key is `key`.
#[derive(Clone, Debug)]
struct Origin {
    rel: usize,
    col: usize,
    key: Arc<[usize]>,
}

impl Scope {
    /// The columns of `table`, qualified by `alias` (or the table name).
    pub fn of_table(table: &Table, alias: Option<String>) -> Scope {
        static NEXT_REL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let rel = NEXT_REL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key: Arc<[usize]> = table.primary_key.clone().into();
        let q = alias.unwrap_or_else(|| table.name.clone());
        Scope {
            columns: table
                .columns
                .iter()
                .enumerate()
                .map(|(col, c)| ScopeColumn {
                    table: Some(q.clone()),
                    name: c.name.clone(),
                    ty: c.ty,
                    origin: (!key.is_empty()).then(|| Origin {
                        rel,
                        col,
                        key: key.clone(),
                    }),
                    hidden: false,
                    using_level: 0,
                })
                .collect(),
        }
    }

    /// Columns functionally dependent on the grouped columns, as
    /// PostgreSQL defines it: every column of a table occurrence whose
    /// whole primary key is among `grouped` (scope positions), except
    /// those already grouped; only those named in `wanted` (`None`: all).
    pub fn dependent_columns(
        &self,
        grouped: &[usize],
        wanted: Option<&std::collections::HashSet<String>>,
    ) -> Vec<(usize, DataType)> {
        let mut out = Vec::new();
        let mut rels: Vec<usize> = grouped
            .iter()
            .filter_map(|&g| self.columns.get(g)?.origin.as_ref().map(|o| o.rel))
            .collect();
        rels.sort_unstable();
        rels.dedup();
        for rel in rels {
            let of_rel = |c: &ScopeColumn| c.origin.as_ref().is_some_and(|o| o.rel == rel);
            let Some(key) = self
                .columns
                .iter()
                .find(|c| of_rel(c))
                .and_then(|c| c.origin.as_ref())
                .map(|o| o.key.clone())
            else {
                continue;
            };
            let key_grouped = key.iter().all(|k| {
                grouped.iter().any(|&g| {
                    self.columns[g]
                        .origin
                        .as_ref()
                        .is_some_and(|o| o.rel == rel && o.col == *k)
                })
            });
            if !key_grouped {
                continue;
            }
            for (i, c) in self.columns.iter().enumerate() {
                if of_rel(c) && !grouped.contains(&i) && wanted.is_none_or(|w| w.contains(&c.name))
                {
                    out.push((i, c.ty));
                }
            }
        }
        out
    }

    /// The columns of several scopes side by side (a join's inputs).
    pub fn concat<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Scope {
        Scope {
            columns: scopes
                .into_iter()
                .flat_map(|s| s.columns.iter().cloned())
                .collect(),
        }
    }

    /// The columns `SELECT *` lists, in order: the `USING` columns of the
    /// joins (outermost first), then the others, without those a `USING`
    /// merged away.
    pub fn star_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.columns.len())
            .filter(|&i| !self.columns[i].hidden)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.columns[i].using_level));
        order
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when there are no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Resolves a (possibly qualified) column name.
    pub fn resolve(&self, table: Option<&str>, name: &str) -> Result<(usize, DataType)> {
        let mut found = None;
        for (i, c) in self.columns.iter().enumerate() {
            let reachable = match table {
                None => !c.hidden,
                Some(t) => c.table.as_deref() == Some(t),
            };
            if c.name == name && reachable {
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
    /// Set while binding a select list (and its ORDER BY), where window
    /// functions may be called.
    windows: Option<window::WindowState>,
    /// Tables and views the statement depends on, to revalidate a cached
    /// plan.
    deps: Vec<(String, (TableId, u64))>,
    /// Scopes of the queries enclosing the one being bound (for correlated
    /// subqueries), innermost last.
    outer_scopes: Vec<Scope>,
    /// For each subquery being bound, innermost last: whether it reads a
    /// column of an enclosing query.
    correlated: Vec<bool>,
    /// The next subquery id.
    next_subquery: usize,
    /// Set by `SELECT ... FOR UPDATE`.
    for_update: bool,
    /// The session's user and database.
    identity: Identity,
    /// Common table expressions in scope (`WITH`), innermost last.
    ctes: Vec<(String, ast::Cte)>,
}

impl<'t> Binder<'t> {
    /// A binder over `txn` with the client's declared parameter types
    /// (`None` where the client left the type open).
    pub fn new(txn: &'t mut Txn, declared: &[Option<DataType>]) -> Self {
        Binder {
            txn,
            params: declared.to_vec(),
            agg: None,
            windows: None,
            deps: Vec::new(),
            outer_scopes: Vec::new(),
            correlated: Vec::new(),
            next_subquery: 0,
            for_update: false,
            identity: Identity::default(),
            ctes: Vec::new(),
        }
    }

    /// The same binder for a session with this identity.
    pub fn with_identity(mut self, identity: &Identity) -> Self {
        self.identity = identity.clone();
        self
    }

    /// The parameter types after binding; open ones default to text.
    pub fn param_types(&self) -> Vec<DataType> {
        self.params
            .iter()
            .map(|p| p.unwrap_or(DataType::Text))
            .collect()
    }

    /// The tables the statement depends on.
    pub fn deps(&self) -> &[(String, (TableId, u64))] {
        &self.deps
    }

    fn table(&mut self, name: &ast::ObjectName) -> Result<Arc<Table>> {
        let full = name;
        let name = object_name(name)?;
        // A name reads the system catalog first (see `from.rs`), so a
        // statement that writes or alters a table must not reach the user
        // table of the same name behind it.
        let schema = match full.0.as_slice() {
            [.., ast::ObjectNamePart::Identifier(s), _] => Some(expr::ident(s)),
            _ => None,
        };
        if crate::syscat::SystemTable::lookup(schema.as_deref(), &name).is_some() {
            bail!(
                InsufficientPrivilege,
                "permission denied: \"{name}\" is a system catalog"
            );
        }
        if let Some(s) = schema.as_deref()
            && s != "public"
        {
            bail!(UndefinedTable, "relation \"{s}.{name}\" does not exist");
        }
        let t = catalog::require_table(self.txn, &name)?;
        self.deps.push((name, (t.id, t.version)));
        Ok(t)
    }

    /// Binds one statement.
    pub fn bind(&mut self, stmt: &ast::Statement) -> Result<Bound> {
        use ast::Statement as S;
        match stmt {
            S::Query(q) => {
                let (plan, columns) = self.query(q)?;
                Ok(Bound::Query {
                    plan,
                    columns,
                    for_update: self.for_update,
                })
            }
            S::Insert(i) => self.insert(i),
            S::Update(u) => self.update(u),
            S::Delete(d) => self.delete(d),
            S::CreateTable(c) => self.create_table(c),
            S::CreateView(v) => self.create_view(v),
            S::CreateIndex(i) => self.create_index(i),
            S::AlterTable(a) => self.alter_table(a),
            S::Truncate(t) => {
                let mut names = Vec::new();
                for target in &t.table_names {
                    let name = object_name(&target.name)?;
                    let table = self.table(&target.name)?;
                    if names.contains(&table.name) {
                        continue;
                    }
                    names.push(name);
                }
                Ok(Bound::Truncate {
                    names,
                    cascade: matches!(t.cascade, Some(ast::CascadeOption::Cascade)),
                    restart_identity: matches!(
                        t.identity,
                        Some(ast::TruncateIdentityOption::Restart)
                    ),
                })
            }
            S::Vacuum(_) => Ok(Bound::Noop { tag: "VACUUM" }),
            S::Analyze(a) => {
                if let Some(t) = &a.table_name {
                    self.table(t)?;
                }
                Ok(Bound::Noop { tag: "ANALYZE" })
            }
            S::CreateSequence {
                temporary,
                if_not_exists,
                name,
                sequence_options,
            } => {
                if *temporary {
                    bail!(FeatureNotSupported, "temporary sequences are not supported");
                }
                let (sequence, owned_by) =
                    ddl::sequence_definition(object_name(name)?, sequence_options, i64::MAX)?;
                let mut sequence = sequence;
                if let Some(owner) = owned_by {
                    sequence.owned_by = Some(self.sequence_owner(&owner)?);
                }
                Ok(Bound::CreateSequence {
                    sequence,
                    if_not_exists: *if_not_exists,
                })
            }
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } if matches!(
                object_type,
                ast::ObjectType::View
                    | ast::ObjectType::Sequence
                    | ast::ObjectType::Index
                    | ast::ObjectType::Table
            ) =>
            {
                if *cascade && *object_type != ast::ObjectType::Table {
                    bail!(
                        FeatureNotSupported,
                        "DROP {object_type} ... CASCADE is not supported yet"
                    );
                }
                let names = names.iter().map(object_name).collect::<Result<_>>()?;
                let if_exists = *if_exists;
                Ok(match object_type {
                    ast::ObjectType::View => Bound::DropView { names, if_exists },
                    ast::ObjectType::Sequence => Bound::DropSequence { names, if_exists },
                    ast::ObjectType::Index => Bound::DropIndex { names, if_exists },
                    _ => Bound::DropTable {
                        names,
                        if_exists,
                        cascade: *cascade,
                    },
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
}

/// Parses one SQL statement (used for stored view definitions).
pub fn parse_statement(sql: &str) -> Result<ast::Statement> {
    let mut v =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
            .map_err(|e| Error::new(ErrorKind::Syntax, e.to_string()))?;
    match v.len() {
        1 => Ok(v.pop().expect("one statement")),
        _ => Err(Error::internal("expected one statement")),
    }
}

/// A column's default for a new row (NULL without one), bound in `txn`.
pub fn bind_default(txn: &mut Txn, column: &Column) -> Result<(Expr, DataType)> {
    Binder::new(txn, &[]).default_value(column)
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
