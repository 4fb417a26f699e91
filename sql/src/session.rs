//! A client session: transaction state, settings, prepared statements.
//!
//! The life of a statement:
//! 1. `sqlparser` parses the text (PostgreSQL dialect);
//! 2. transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`) and session
//!    settings (`SET`, `SHOW`) are handled here;
//! 3. anything else is bound ([`crate::bind`]) inside the session's
//!    transaction — an explicit one after `BEGIN`, otherwise a fresh implicit
//!    one — planned as key ranges ([`crate::planner`]) and executed
//!    ([`crate::exec`]);
//! 4. an implicit transaction commits right away. If certification fails
//!    (40001) before anything was returned to the client, the statement is
//!    retried in a new transaction a few times; an explicit transaction's
//!    failure is the client's to retry. A commit is acknowledged only once
//!    durable (VC ≤ watermark): the statement waits for it, or, when the
//!    caller asked to ([`Session::defer_durability`]), returns once the
//!    transaction is installed and leaves the wait to the caller.
//!
//! Errors inside an explicit transaction put the session in the *failed*
//! state: every statement but `COMMIT`/`ROLLBACK` is refused with 25P02 until
//! the transaction ends, and `COMMIT` then rolls back.

use std::collections::BTreeMap;
use std::sync::Arc;

use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;
use txn::{Db, Installed, Txn};

mod copy;
mod ddl;
mod statements;

use self::statements::classify;
pub use self::statements::parse;

use crate::bind::{Binder, Bound, OutputColumn};
use crate::catalog;
use crate::exec::{ExecCtx, InsertSource, Returning, Row};
use crate::interrupt::Interrupt;
use crate::types::{DataType, Value};

/// The default bound on a transaction's write set (`mako start
/// --max-write-set`).
pub const DEFAULT_WRITE_LIMIT: usize = 1 << 30;

/// How many times an implicit transaction is retried after a 40001.
const IMPLICIT_RETRIES: usize = 10;

/// Where the session is with respect to transactions (the ReadyForQuery
/// status byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// No explicit transaction (`I`).
    Idle,
    /// Inside `BEGIN … COMMIT` (`T`).
    InBlock,
    /// Inside a transaction that failed (`E`).
    Failed,
}

/// The result of one statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Rows, with the command tag to report (`SELECT`, `SHOW`, `EXPLAIN`).
    Rows {
        /// The columns.
        columns: Vec<OutputColumn>,
        /// The rows.
        rows: Vec<Row>,
        /// The command tag word.
        tag: &'static str,
    },
    /// A command without rows, e.g. `INSERT` with its row count.
    Command {
        /// The command tag word(s).
        tag: &'static str,
        /// The affected row count, when the tag carries one.
        rows: Option<u64>,
    },
    /// The statement was empty.
    Empty,
    /// `COPY … FROM STDIN` started: the client sends the data now
    /// ([`Session::copy_data`], then [`Session::copy_done`]).
    CopyIn {
        /// Columns per row.
        columns: usize,
        /// CSV rather than text.
        csv: bool,
    },
    /// `COPY … TO STDOUT`: the formatted rows, one text each (a header
    /// line is part of the first).
    CopyOut {
        /// Columns per row.
        columns: usize,
        /// CSV rather than text.
        csv: bool,
        /// The data: one entry per row.
        data: Vec<String>,
        /// Rows (not counting a header).
        rows: u64,
    },
}

/// What kind of statement a prepared statement is.
#[derive(Clone, Debug)]
enum Kind {
    Begin(&'static str),
    Commit,
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    Set(String, String),
    Show(String),
    ShowAll,
    /// `RESET name` (`None`: `RESET ALL`).
    Reset(Option<String>),
    /// `DEALLOCATE [PREPARE] name` (`None`: `ALL`).
    Deallocate(Option<String>),
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP`.
    Discard(ast::DiscardObject),
    /// `COPY … FROM STDIN | TO STDOUT`.
    Copy,
    /// `CLOSE ALL` (no cursors exist yet, so nothing to close) or `CLOSE
    /// name` (`Some`: always an unknown cursor).
    Close(Option<String>),
    /// `UNLISTEN channel | *`: nothing listens yet.
    Unlisten,
    /// Anything bound and executed in a transaction.
    Data,
    Empty,
}

/// A parsed (and, for data statements, bound) statement.
#[derive(Clone, Debug)]
pub struct Prepared {
    ast: Option<ast::Statement>,
    kind: Kind,
    /// The bound form, valid while the tables it used are unchanged.
    bound: Option<Bound>,
    /// Tables the bound form depends on.
    deps: Vec<(String, (kv::keys::TableId, u64))>,
    /// Parameter types (declared or inferred).
    pub param_types: Vec<DataType>,
    /// Result columns, for statements that return rows.
    pub columns: Option<Vec<OutputColumn>>,
}

/// One client's session.
pub struct Session {
    /// The cluster.
    db: Arc<Db>,
    /// The explicit transaction, if any.
    txn: Option<Txn>,
    /// True after an error inside the explicit transaction.
    failed: bool,
    /// The explicit transaction's open savepoints, oldest first.
    savepoints: Vec<(String, txn::Savepoint)>,
    /// A `COPY … FROM STDIN` waiting for its data.
    copy: Option<copy::CopyIn>,
    /// `SET` values.
    settings: BTreeMap<String, String>,
    /// Commits installed and not yet known durable, when the caller waits
    /// for them itself (see [`Session::defer_durability`]); `None`: each
    /// commit waits before its statement returns.
    deferred: Option<Vec<Installed>>,
    /// Stops the running statement (cancel request, `statement_timeout`,
    /// shutdown); shared with whoever may stop it.
    interrupt: Arc<Interrupt>,
    /// The most memory a statement may use, set by the server:
    /// `mako.statement_memory` may lower it, never raise it.
    memory_ceiling: usize,
    /// The most bytes a transaction's write set may hold (set by the
    /// server).
    write_limit: usize,
    /// The user and database the client named at startup.
    identity: Arc<crate::bind::Identity>,
    /// The sequence values this session took (`currval`, `lastval`).
    sequences: Arc<std::sync::Mutex<crate::sequence::SessionSequences>>,
    /// Prepared statements `DEALLOCATE` or `DISCARD` asked to forget
    /// (`None`: all), for the wire protocol's statement store.
    deallocated: Vec<Option<String>>,
}

/// What bounds one statement's execution.
#[derive(Clone, Copy)]
struct Limits<'a> {
    /// Bytes of memory (`mako.statement_memory`).
    memory: usize,
    /// Bytes a transaction's write set may hold.
    writes: usize,
    /// The session's stop signal.
    interrupt: &'a Interrupt,
    /// The session's user and database.
    identity: &'a crate::bind::Identity,
    /// The session's sequence values.
    sequences: &'a std::sync::Mutex<crate::sequence::SessionSequences>,
}

/// What [`Limits`] borrows, owned: taken from the session so that the
/// session itself can be borrowed mutably while a statement runs.
struct Bounds {
    interrupt: Arc<Interrupt>,
    identity: Arc<crate::bind::Identity>,
    sequences: Arc<std::sync::Mutex<crate::sequence::SessionSequences>>,
    memory: usize,
    writes: usize,
}

impl Bounds {
    fn limits(&self) -> Limits<'_> {
        Limits {
            memory: self.memory,
            writes: self.writes,
            interrupt: &self.interrupt,
            identity: &self.identity,
            sequences: &self.sequences,
        }
    }
}

impl<'a> Limits<'a> {
    fn ctx<'t>(&self, txn: &'t mut Txn, params: &'t [Value]) -> ExecCtx<'t>
    where
        'a: 't,
    {
        ExecCtx::new(txn, params, self.memory)
            .with_sequences(self.sequences)
            .with_interrupt(self.interrupt)
            .with_identity(self.identity)
            .with_write_limit(self.writes)
    }
}

/// The per-statement memory setting (bytes, or a number with kB, MB or
/// GB); at most the server's ceiling, which is also its default.
const STATEMENT_MEMORY: &str = "mako.statement_memory";

/// The read-only setting that says what an acknowledged commit survives.
const DURABILITY: &str = "mako.durability";

/// The read-only setting that shows this node's replication status.
const REPLICATION: &str = "mako.replication";

/// The read-only setting that shows this node's commit counters.
const COMMITS: &str = "mako.commits";

fn default_settings() -> BTreeMap<String, String> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "serializable"),
        ("extra_float_digits", "1"),
        ("integer_datetimes", "on"),
        (STATEMENT_MEMORY, "1GB"),
        ("statement_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("intervalstyle", "postgres"),
        ("search_path", "\"$user\", public"),
        ("server_encoding", "UTF8"),
        ("server_version", crate::SERVER_VERSION),
        ("standard_conforming_strings", "on"),
        ("timezone", "UTC"),
        ("transaction_isolation", "serializable"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Session {
    /// A new session on `db`.
    pub fn new(db: Arc<Db>) -> Self {
        Session {
            db,
            txn: None,
            failed: false,
            savepoints: Vec::new(),
            copy: None,
            settings: default_settings(),
            deferred: None,
            interrupt: Arc::new(Interrupt::new()),
            memory_ceiling: crate::exec::DEFAULT_MEMORY_LIMIT,
            write_limit: DEFAULT_WRITE_LIMIT,
            identity: Arc::new(crate::bind::Identity::default()),
            sequences: Default::default(),
            deallocated: Vec::new(),
        }
    }

    /// The prepared statements `DEALLOCATE` or `DISCARD ALL` dropped since
    /// the last call (`None`: all of them); the protocol layer, which
    /// holds them, forgets them.
    pub fn take_deallocated(&mut self) -> Vec<Option<String>> {
        std::mem::take(&mut self.deallocated)
    }

    /// Sets the user and database the client connected with (what
    /// `current_user` and `current_database()` answer).
    pub fn set_identity(&mut self, user: &str, database: &str) {
        self.identity = Arc::new(crate::bind::Identity {
            user: user.to_string(),
            database: database.to_string(),
        });
        self.settings
            .insert("session_authorization".into(), user.to_string());
    }

    /// Sets the most bytes a transaction's write set may hold; a write past
    /// it fails with 54000.
    pub fn set_write_limit(&mut self, bytes: usize) {
        self.write_limit = bytes;
    }

    /// Sets the server's per-statement memory ceiling (see
    /// [`Session::memory_limit`]).
    pub fn set_memory_ceiling(&mut self, bytes: usize) {
        self.memory_ceiling = bytes;
        self.settings
            .insert(STATEMENT_MEMORY.into(), format_memory(bytes));
    }

    /// The settings `RESET` returns to: the defaults, with the server's
    /// memory ceiling as `mako.statement_memory`.
    fn defaults(&self) -> BTreeMap<String, String> {
        let mut d = default_settings();
        d.insert(STATEMENT_MEMORY.into(), format_memory(self.memory_ceiling));
        d
    }

    /// The session's stop signal: a cancel request or the server's
    /// shutdown fires it from another thread.
    pub fn interrupt(&self) -> Arc<Interrupt> {
        self.interrupt.clone()
    }

    /// `statement_timeout` (`None`: no limit).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.setting("statement_timeout")
            .and_then(parse_duration)
            .filter(|d| !d.is_zero())
    }

    /// `idle_in_transaction_session_timeout` (`None`: no limit); the server
    /// ends a session idle inside a transaction block for longer.
    pub fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        self.setting("idle_in_transaction_session_timeout")
            .and_then(parse_duration)
            .filter(|d| !d.is_zero())
    }

    /// A statement starts: its deadline is set from `statement_timeout`.
    fn start_statement(&self) {
        self.interrupt.start_statement(self.statement_timeout());
    }

    /// From now on a statement that commits returns once its transaction
    /// is installed, without waiting for it to be durable; the caller takes
    /// the commits with [`Session::take_deferred`] and must not acknowledge
    /// the statement before they are durable (Mako §4.3). A server does so
    /// to wait without blocking its thread. A query string of several
    /// statements still waits for each commit before the next statement
    /// runs.
    pub fn defer_durability(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// The commits of the last statement that are not yet known durable
    /// (see [`Session::defer_durability`]).
    pub fn take_deferred(&mut self) -> Vec<Installed> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Commits `txn`: waits until it is durable, or leaves that to the
    /// caller (see [`Session::defer_durability`]).
    fn finish(&mut self, txn: Txn) -> Result<()> {
        let installed = txn.commit_installed()?;
        match self.deferred.as_mut() {
            Some(deferred) => deferred.push(installed),
            None => {
                installed.wait()?;
            }
        }
        Ok(())
    }

    /// The transaction status to report to the client.
    pub fn status(&self) -> TxnStatus {
        if self.failed {
            TxnStatus::Failed
        } else if self.txn.is_some() {
            TxnStatus::InBlock
        } else {
            TxnStatus::Idle
        }
    }

    /// The per-statement memory limit (`mako.statement_memory`: bytes, or
    /// a number with kB, MB or GB).
    pub fn memory_limit(&self) -> usize {
        self.setting(STATEMENT_MEMORY)
            .and_then(parse_memory)
            .unwrap_or(self.memory_ceiling)
            .min(self.memory_ceiling)
    }

    /// A setting's current value.
    pub fn setting(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        if name == DURABILITY {
            return Some(self.db.durability());
        }
        self.settings.get(&name).map(String::as_str)
    }

    /// Runs every statement of a simple-protocol query string, stopping at
    /// the first error (which is the last element).
    pub fn execute_script(&mut self, sql: &str) -> Vec<Result<Outcome>> {
        let statements = match parse(sql) {
            Ok(s) => s,
            Err(e) => {
                self.note_error();
                return vec![Err(e)];
            }
        };
        if statements.is_empty() {
            return vec![Ok(Outcome::Empty)];
        }
        if statements.len() > 1 && self.deferred.is_some() {
            // Each statement's commit is durable before the next runs, so
            // that none runs after a commit that failed to become durable.
            self.deferred = None;
            let out = self.execute_script_statements(statements);
            self.deferred = Some(Vec::new());
            return out;
        }
        self.execute_script_statements(statements)
    }

    fn execute_script_statements(
        &mut self,
        statements: Vec<ast::Statement>,
    ) -> Vec<Result<Outcome>> {
        self.abandon_copy();
        // The data of a COPY FROM STDIN follows the query string: nothing
        // may run after it in the same string.
        let copy_in = |s: &ast::Statement| matches!(s, ast::Statement::Copy { to: false, .. });
        if statements.iter().rev().skip(1).any(copy_in) {
            self.note_error();
            return vec![Err(Error::new(
                ErrorKind::FeatureNotSupported,
                "COPY FROM STDIN must be the last statement of a query string",
            ))];
        }
        // Several statements without transaction control run in one
        // implicit transaction, as in PostgreSQL: all or nothing.
        let batch = statements.len() > 1
            && self.txn.is_none()
            && !self.failed
            && statements
                .iter()
                .all(|s| matches!(classify(s), Ok(Kind::Data)));
        if batch {
            return self.execute_batch(statements);
        }
        self.execute_each(statements)
    }

    /// Runs statements one by one, stopping at the first error.
    fn execute_each(&mut self, statements: Vec<ast::Statement>) -> Vec<Result<Outcome>> {
        let mut out = Vec::new();
        for stmt in statements {
            self.start_statement();
            let result = match self.prepare_ast(Some(stmt), &[]) {
                Ok(p) => self.execute(&p, &[]),
                Err(e) => {
                    self.note_error();
                    Err(e)
                }
            };
            let failed = result.is_err();
            out.push(result);
            if failed {
                break;
            }
        }
        out
    }

    /// Runs statements in one implicit transaction: an error rolls all of
    /// them back; a serialization failure retries the whole batch (nothing
    /// has been returned to the client yet).
    fn execute_batch(&mut self, statements: Vec<ast::Statement>) -> Vec<Result<Outcome>> {
        let mut attempt = 0;
        loop {
            self.txn = Some(self.db.begin());
            let mut out = self.execute_each(statements.clone());
            let txn = self.txn.take();
            let failed = std::mem::take(&mut self.failed);
            let last_err = out.last().and_then(|r| r.as_ref().err()).cloned();
            let result = match (last_err, txn) {
                (Some(e), _) => Err(e),
                (None, Some(t)) if !failed => self.finish(t),
                (None, _) => Ok(()),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < IMPLICIT_RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) => {
                    if !matches!(out.last(), Some(Err(_))) {
                        out.push(Err(e));
                    }
                    return out;
                }
                Ok(()) => return out,
            }
        }
    }

    /// Parses and binds one statement for the extended protocol. `declared`
    /// are the parameter types the client sent (`None`: infer).
    pub fn prepare(&mut self, sql: &str, declared: &[Option<DataType>]) -> Result<Prepared> {
        self.start_statement();
        let result = parse(sql).and_then(|mut statements| match statements.len() {
            0 => Ok(None),
            1 => Ok(statements.pop()),
            _ => bail!(
                Syntax,
                "cannot insert multiple commands into a prepared statement"
            ),
        });
        let result = result.and_then(|stmt| self.prepare_ast(stmt, declared));
        if result.is_err() {
            self.note_error();
        }
        result
    }

    fn prepare_ast(
        &mut self,
        stmt: Option<ast::Statement>,
        declared: &[Option<DataType>],
    ) -> Result<Prepared> {
        let Some(stmt) = stmt else {
            return Ok(Prepared {
                ast: None,
                kind: Kind::Empty,
                bound: None,
                deps: vec![],
                param_types: vec![],
                columns: None,
            });
        };
        let kind = classify(&stmt)?;
        let mut prepared = Prepared {
            ast: Some(stmt),
            kind,
            bound: None,
            deps: Vec::new(),
            param_types: declared
                .iter()
                .map(|d| d.unwrap_or(DataType::Text))
                .collect(),
            columns: None,
        };
        match prepared.kind {
            Kind::Data => {
                if self.failed {
                    return Err(in_failed_transaction());
                }
                self.bind_prepared(&mut prepared, declared)?;
            }
            Kind::Show(ref name) => {
                prepared.columns = Some(vec![OutputColumn {
                    name: name.clone(),
                    ty: DataType::Text,
                }]);
            }
            Kind::ShowAll => {
                prepared.columns = Some(vec![
                    OutputColumn {
                        name: "name".into(),
                        ty: DataType::Text,
                    },
                    OutputColumn {
                        name: "setting".into(),
                        ty: DataType::Text,
                    },
                ]);
            }
            _ => {}
        }
        Ok(prepared)
    }

    /// Binds a data statement (in the open transaction, so it sees that
    /// transaction's DDL; otherwise in a throwaway one).
    fn bind_prepared(&mut self, p: &mut Prepared, declared: &[Option<DataType>]) -> Result<()> {
        let stmt = p.ast.as_ref().expect("data statement has an AST");
        let mut scratch;
        let txn = match self.txn.as_mut() {
            Some(t) => t,
            None => {
                scratch = self.db.begin();
                &mut scratch
            }
        };
        let mut binder = Binder::new(txn, declared).with_identity(&self.identity);
        let bound = binder.bind(stmt)?;
        p.param_types = binder.param_types();
        p.deps = binder.deps().to_vec();
        p.columns = match &bound {
            Bound::Query { columns, .. } => Some(columns.clone()),
            Bound::Insert {
                returning: Some(r), ..
            }
            | Bound::Update {
                returning: Some(r), ..
            }
            | Bound::Delete {
                returning: Some(r), ..
            } => Some(r.columns.clone()),
            Bound::Explain(_) => Some(vec![OutputColumn {
                name: "QUERY PLAN".into(),
                ty: DataType::Text,
            }]),
            _ => None,
        };
        p.bound = Some(bound);
        Ok(())
    }

    /// Marks the explicit transaction, if any, as failed: used when an
    /// error happens outside the session (e.g. decoding parameters).
    pub fn mark_failed(&mut self) {
        self.note_error();
    }

    fn note_error(&mut self) {
        if self.txn.is_some() {
            self.failed = true;
        }
    }

    /// Executes a prepared statement with parameter values (already of the
    /// prepared parameter types).
    pub fn execute(&mut self, p: &Prepared, params: &[Value]) -> Result<Outcome> {
        self.abandon_copy();
        self.start_statement();
        let result = self.execute_inner(p, params);
        if result.is_err() {
            self.note_error();
        }
        result
    }

    fn execute_inner(&mut self, p: &Prepared, params: &[Value]) -> Result<Outcome> {
        match &p.kind {
            Kind::Empty => Ok(Outcome::Empty),
            Kind::Begin(_) if self.failed => Err(in_failed_transaction()),
            Kind::Begin(tag) => {
                // BEGIN inside a transaction is a no-op, as in PostgreSQL
                // (which also warns).
                if self.txn.is_none() {
                    self.txn = Some(self.db.begin());
                    self.savepoints.clear();
                }
                Ok(Outcome::Command { tag, rows: None })
            }
            Kind::Commit => {
                let txn = self.txn.take();
                self.savepoints.clear();
                if std::mem::take(&mut self.failed) {
                    return Ok(Outcome::Command {
                        tag: "ROLLBACK",
                        rows: None,
                    });
                }
                if let Some(t) = txn {
                    self.finish(t)?;
                }
                Ok(Outcome::Command {
                    tag: "COMMIT",
                    rows: None,
                })
            }
            Kind::Rollback => {
                self.txn = None;
                self.savepoints.clear();
                self.failed = false;
                Ok(Outcome::Command {
                    tag: "ROLLBACK",
                    rows: None,
                })
            }
            Kind::RollbackTo(name) => {
                let at = self.open_savepoint(name, "ROLLBACK TO SAVEPOINT")?;
                let txn = self.txn.as_mut().expect("open_savepoint checked");
                txn.rollback_to(self.savepoints[at].1);
                // The later savepoints go; this one stays open.
                for _ in self.savepoints.drain(at + 1..) {
                    txn.release();
                }
                self.failed = false;
                Ok(Outcome::Command {
                    tag: "ROLLBACK",
                    rows: None,
                })
            }
            _ if self.failed => Err(in_failed_transaction()),
            Kind::Savepoint(name) => {
                let Some(txn) = self.txn.as_mut() else {
                    bail!(
                        NoActiveTransaction,
                        "SAVEPOINT can only be used in transaction blocks"
                    );
                };
                self.savepoints.push((name.clone(), txn.savepoint()));
                Ok(Outcome::Command {
                    tag: "SAVEPOINT",
                    rows: None,
                })
            }
            Kind::Release(name) => {
                let at = self.open_savepoint(name, "RELEASE SAVEPOINT")?;
                let txn = self.txn.as_mut().expect("open_savepoint checked");
                // This savepoint and every later one go; their writes stay.
                for _ in self.savepoints.drain(at..) {
                    txn.release();
                }
                Ok(Outcome::Command {
                    tag: "RELEASE",
                    rows: None,
                })
            }
            Kind::Set(name, value) => {
                let name = name.to_lowercase();
                if name == "transaction_isolation" || name == "default_transaction_isolation" {
                    // Accepted; every transaction runs serializable.
                    return Ok(Outcome::Command {
                        tag: "SET",
                        rows: None,
                    });
                }
                if name == DURABILITY || name == REPLICATION || name == COMMITS {
                    bail!(
                        CantChangeRuntimeParam,
                        "parameter \"{name}\" cannot be changed now (it is set by mako start)"
                    );
                }
                if name == "timezone" && !crate::bind::is_utc_zone(value.trim_matches('\'')) {
                    bail!(
                        FeatureNotSupported,
                        "time zone \"{value}\" is not supported: every session runs in UTC"
                    );
                }
                let valid = match name.as_str() {
                    STATEMENT_MEMORY => parse_memory(value).is_some(),
                    "statement_timeout" | "idle_in_transaction_session_timeout" => {
                        parse_duration(value).is_some()
                    }
                    _ => true,
                };
                if !valid {
                    bail!(
                        InvalidParameterValue,
                        "invalid value for parameter \"{name}\": \"{value}\""
                    );
                }
                if name == STATEMENT_MEMORY
                    && parse_memory(value).is_some_and(|m| m > self.memory_ceiling)
                {
                    bail!(
                        InvalidParameterValue,
                        "invalid value for parameter \"{name}\": \"{value}\" is above the server's limit of {} bytes (mako start --statement-memory)",
                        self.memory_ceiling
                    );
                }
                self.settings.insert(name, value.clone());
                Ok(Outcome::Command {
                    tag: "SET",
                    rows: None,
                })
            }
            Kind::Deallocate(name) => {
                let tag = if name.is_some() {
                    "DEALLOCATE"
                } else {
                    "DEALLOCATE ALL"
                };
                self.deallocated.push(name.clone());
                Ok(Outcome::Command { tag, rows: None })
            }
            Kind::Discard(what) => {
                use ast::DiscardObject as D;
                if self.txn.is_some() && matches!(what, D::ALL) {
                    bail!(
                        ActiveTransaction,
                        "DISCARD ALL cannot run inside a transaction block"
                    );
                }
                if matches!(what, D::ALL) {
                    self.deallocated.push(None);
                }
                if matches!(what, D::ALL | D::SEQUENCES) {
                    *self.sequences.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
                }
                if matches!(what, D::ALL) {
                    self.settings = self.defaults();
                }
                Ok(Outcome::Command {
                    tag: match what {
                        D::ALL => "DISCARD ALL",
                        D::PLANS => "DISCARD PLANS",
                        D::SEQUENCES => "DISCARD SEQUENCES",
                        D::TEMP => "DISCARD TEMP",
                    },
                    rows: None,
                })
            }
            Kind::Close(None) => Ok(Outcome::Command {
                tag: "CLOSE CURSOR ALL",
                rows: None,
            }),
            Kind::Close(Some(name)) => {
                bail!(InvalidCursorName, "cursor \"{name}\" does not exist")
            }
            Kind::Copy => {
                let stmt = p.ast.as_ref().expect("COPY has its statement");
                match self.start_copy(stmt)? {
                    copy::Started::In { columns, csv } => Ok(Outcome::CopyIn { columns, csv }),
                    copy::Started::Done(outcome) => Ok(outcome),
                }
            }
            Kind::Unlisten => Ok(Outcome::Command {
                tag: "UNLISTEN",
                rows: None,
            }),
            Kind::Reset(name) => {
                let defaults = self.defaults();
                match name {
                    None => self.settings = defaults,
                    Some(n) => {
                        let n = n.to_lowercase();
                        match defaults.get(&n) {
                            Some(v) => {
                                self.settings.insert(n, v.clone());
                            }
                            None => {
                                self.settings.remove(&n);
                            }
                        }
                    }
                }
                Ok(Outcome::Command {
                    tag: "RESET",
                    rows: None,
                })
            }
            Kind::ShowAll => Ok(Outcome::Rows {
                columns: vec![
                    OutputColumn {
                        name: "name".into(),
                        ty: DataType::Text,
                    },
                    OutputColumn {
                        name: "setting".into(),
                        ty: DataType::Text,
                    },
                ],
                rows: {
                    let mut all: Vec<(&str, &str)> = self
                        .settings
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    all.push((DURABILITY, self.db.durability()));
                    all.sort_unstable();
                    all.into_iter()
                        .map(|(k, v)| vec![Value::text(k), Value::text(v)])
                        .collect()
                },
                tag: "SHOW",
            }),
            Kind::Show(name) if name.eq_ignore_ascii_case(COMMITS) => Ok(Outcome::Rows {
                columns: vec![OutputColumn {
                    name: COMMITS.into(),
                    ty: DataType::Text,
                }],
                rows: vec![vec![Value::text(self.db.commit_counts())]],
                tag: "SHOW",
            }),
            Kind::Show(name) if name.eq_ignore_ascii_case(REPLICATION) => Ok(Outcome::Rows {
                columns: vec![OutputColumn {
                    name: REPLICATION.into(),
                    ty: DataType::Text,
                }],
                rows: vec![vec![Value::text(self.db.replication_status())]],
                tag: "SHOW",
            }),
            Kind::Show(name) => {
                let value = self.setting(name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                Ok(Outcome::Rows {
                    columns: vec![OutputColumn {
                        name: name.clone(),
                        ty: DataType::Text,
                    }],
                    rows: vec![vec![Value::text(value)]],
                    tag: "SHOW",
                })
            }
            Kind::Data => self.execute_data(p, params),
        }
    }

    /// The position of the newest open savepoint called `name`, for the
    /// statement `what`.
    fn open_savepoint(&self, name: &str, what: &str) -> Result<usize> {
        if self.txn.is_none() {
            bail!(
                NoActiveTransaction,
                "{what} can only be used in transaction blocks"
            );
        }
        match self.savepoints.iter().rposition(|(n, _)| n == name) {
            Some(at) => Ok(at),
            None => bail!(InvalidSavepoint, "savepoint \"{name}\" does not exist"),
        }
    }

    /// The session's bounds on the statement about to run.
    fn bounds(&self) -> Bounds {
        Bounds {
            interrupt: self.interrupt.clone(),
            identity: self.identity.clone(),
            sequences: self.sequences.clone(),
            memory: self.memory_limit(),
            writes: self.write_limit,
        }
    }

    fn execute_data(&mut self, p: &Prepared, params: &[Value]) -> Result<Outcome> {
        if params.len() < p.param_types.len() {
            bail!(
                Protocol,
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                p.param_types.len()
            );
        }
        let bounds = self.bounds();
        let limits = bounds.limits();
        if let Some(txn) = self.txn.as_mut() {
            return run_in(txn, p, params, limits).map_err(|e| stale_reads_first(txn, e));
        }
        let mut attempt = 0;
        loop {
            let mut txn = self.db.begin();
            let result = match run_in(&mut txn, p, params, limits) {
                Ok(out) => self.finish(txn).map(|()| out),
                Err(e) => Err(stale_reads_first(&txn, e)),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < IMPLICIT_RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                other => return other,
            }
        }
    }
}

/// Waits a little before retrying an implicit transaction, longer after
/// each failure, so that contending transactions stop colliding.
fn backoff(attempt: usize) {
    if attempt <= 2 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(20 << attempt.min(8)));
    }
}

/// Reads do not wait for locks, so a statement may have seen a concurrent
/// commit half-installed and failed on that (a division by zero, a
/// duplicate key). If its reads are no longer current, the failure is
/// reported as the serialization failure it really is, which clients retry.
fn stale_reads_first(txn: &Txn, e: Error) -> Error {
    if e.is_retryable() || e.is_environmental() {
        return e;
    }
    match txn.check_reads() {
        Err(stale) if stale.is_retryable() => stale,
        _ => e,
    }
}

/// Parses a time setting as PostgreSQL does: a number in milliseconds, or
/// with a unit (`us`, `ms`, `s`, `min`, `h`, `d`): `0`, `1500`, `1s`,
/// `250ms`, `2min`.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..split].parse().ok()?;
    let micros_per_unit = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1e3,
        "us" => 1.0,
        "s" => 1e6,
        "min" => 60e6,
        "h" => 3600e6,
        "d" => 86400e6,
        _ => return None,
    };
    let micros = n * micros_per_unit;
    // PostgreSQL's limit for a timeout in milliseconds is INT_MAX.
    if !micros.is_finite() || micros < 0.0 || micros > i32::MAX as f64 * 1e3 {
        return None;
    }
    Some(std::time::Duration::from_micros(micros as u64))
}

/// Parses `123`, `64kB`, `512MB`, `1GB`.
/// `bytes` as `SHOW` prints a memory setting: in the largest unit that
/// divides it, as PostgreSQL does (`1GB`, `256MB`, `64kB`, `1000B`).
pub fn format_memory(bytes: usize) -> String {
    for (unit, size) in [("GB", 1usize << 30), ("MB", 1 << 20), ("kB", 1 << 10)] {
        if bytes > 0 && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

pub fn parse_memory(s: &str) -> Option<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: usize = t[..split].parse().ok()?;
    let unit = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn in_failed_transaction() -> Error {
    Error::new(
        ErrorKind::InFailedTransaction,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Runs a data statement in `txn`, re-binding it first if a table it was
/// bound against has changed since.
fn run_in(txn: &mut Txn, p: &Prepared, params: &[Value], limits: Limits<'_>) -> Result<Outcome> {
    let mut stale = false;
    for (name, id) in &p.deps {
        if catalog::relation_version(txn, name)? != Some(*id) {
            stale = true;
        }
    }
    let rebound;
    let bound = match (&p.bound, stale) {
        (Some(b), false) => b,
        _ => {
            let declared: Vec<Option<DataType>> = p.param_types.iter().map(|t| Some(*t)).collect();
            let mut binder = Binder::new(txn, &declared).with_identity(limits.identity);
            rebound = binder.bind(p.ast.as_ref().expect("data statement"))?;
            if binder.param_types() != p.param_types {
                bail!(
                    FeatureNotSupported,
                    "cached plan must not change parameter types"
                );
            }
            &rebound
        }
    };
    run_bound(txn, bound, params, limits)
}

fn with_returning(
    tag: &'static str,
    count: u64,
    rows: Vec<Row>,
    returning: &Option<Returning>,
) -> Outcome {
    match returning {
        // The row count in the tag is the number of rows returned.
        Some(r) => Outcome::Rows {
            columns: r.columns.clone(),
            rows,
            tag: if tag == "INSERT" { "INSERT 0" } else { tag },
        },
        None => Outcome::Command {
            tag,
            rows: Some(count),
        },
    }
}

/// `SELECT ... FOR UPDATE`: rewrites the rows the query read with their
/// own values, so that commit locks them and certifies them as writes.
fn lock_rows_read(txn: &mut Txn, mark: (usize, usize)) -> Result<()> {
    for key in txn.partitioned_reads_since(mark) {
        let primary = key.len() > kv::keys::INDEX_PREFIX_LEN
            && key[4..8] == kv::keys::PRIMARY_INDEX.to_be_bytes()
            && key[..4] >= kv::keys::FIRST_USER_TABLE.to_be_bytes()[..];
        if !primary {
            continue;
        }
        let rest = &key[kv::keys::INDEX_PREFIX_LEN..];
        let n = kv::keycode::component_len(rest)?;
        let placement = txn::Placement::Partitioned(kv::keys::partition_hash(&rest[..n]));
        if let Some(v) = txn.get(&key, placement)? {
            txn.put(key, v, placement);
        }
    }
    Ok(())
}

fn run_bound(
    txn: &mut Txn,
    bound: &Bound,
    params: &[Value],
    limits: Limits<'_>,
) -> Result<Outcome> {
    Ok(match bound {
        Bound::Query {
            plan,
            columns,
            for_update,
        } => {
            let mark = txn.read_mark();
            let rows = limits.ctx(txn, params).query(plan, &[])?;
            if *for_update {
                lock_rows_read(txn, mark)?;
            }
            Outcome::Rows {
                columns: columns.clone(),
                rows,
                tag: "SELECT",
            }
        }
        Bound::Insert {
            table,
            source,
            conflict,
            returning,
        } => {
            let (n, rows) = limits
                .ctx(txn, params)
                .insert(table, source, conflict, returning)?;
            with_returning("INSERT", n, rows, returning)
        }
        Bound::Update {
            scan,
            filter,
            sets,
            returning,
            join,
        } => {
            let ctx = limits.ctx(txn, params);
            let (n, rows) = match join {
                Some(plan) => ctx.update_joined(&scan.table, plan, sets, returning)?,
                None => ctx.update(scan, filter, sets, returning)?,
            };
            with_returning("UPDATE", n, rows, returning)
        }
        Bound::Delete {
            scan,
            filter,
            returning,
            join,
        } => {
            let ctx = limits.ctx(txn, params);
            let (n, rows) = match join {
                Some(plan) => ctx.delete_joined(&scan.table, plan, returning)?,
                None => ctx.delete(scan, filter, returning)?,
            };
            with_returning("DELETE", n, rows, returning)
        }
        Bound::Explain(inner) => Outcome::Rows {
            columns: vec![OutputColumn {
                name: "QUERY PLAN".into(),
                ty: DataType::Text,
            }],
            rows: explain(inner)
                .into_iter()
                .map(|l| vec![Value::text(l)])
                .collect(),
            tag: "EXPLAIN",
        },
        change => ddl::run_ddl(txn, change, params, limits)?,
    })
}

/// The EXPLAIN text of a bound statement.
pub fn explain(bound: &Bound) -> Vec<String> {
    let mut out = Vec::new();
    let scan_lines = |verb: &str,
                      scan: &crate::plan::Scan,
                      filter: &Option<crate::expr::Expr>,
                      out: &mut Vec<String>| {
        out.push(format!("{verb} on {}", scan.table.name));
        let mut depth = 1;
        if let Some(f) = filter {
            out.push(format!("  Filter: {}", f.display(&scan.column_names())));
            depth = 2;
        }
        out.push(format!("{}{}", "  ".repeat(depth), scan.describe()));
    };
    match bound {
        Bound::Query { plan, .. } => plan.explain(0, &mut out),
        Bound::Insert { table, source, .. } => match source {
            InsertSource::Rows(rows) => {
                out.push(format!("Insert on {} ({} rows)", table.name, rows.len()))
            }
            InsertSource::Query { plan, .. } => {
                out.push(format!("Insert on {}", table.name));
                plan.explain(1, &mut out);
            }
        },
        Bound::Update {
            scan,
            join: Some(plan),
            ..
        }
        | Bound::Delete {
            scan,
            join: Some(plan),
            ..
        } => {
            let verb = if matches!(bound, Bound::Update { .. }) {
                "Update"
            } else {
                "Delete"
            };
            out.push(format!("{verb} on {}", scan.table.name));
            plan.explain(1, &mut out);
        }
        Bound::Update { scan, filter, .. } => scan_lines("Update", scan, filter, &mut out),
        Bound::Delete { scan, filter, .. } => scan_lines("Delete", scan, filter, &mut out),
        Bound::CreateTable { table, .. } => out.push(format!("Create Table {}", table.name)),
        Bound::DropTable { names, .. } => out.push(format!("Drop Table {}", names.join(", "))),
        Bound::CreateView { view, .. } => out.push(format!("Create View {}", view.name)),
        Bound::CreateSequence { sequence, .. } => {
            out.push(format!("Create Sequence {}", sequence.name))
        }
        Bound::Truncate { names, .. } => out.push(format!("Truncate {}", names.join(", "))),
        Bound::Noop { tag } => out.push(format!("{tag} (nothing to do)")),
        Bound::AlterTable { table, .. } => out.push(format!("Alter Table {}", table.name)),
        Bound::DropSequence { names, .. } => {
            out.push(format!("Drop Sequence {}", names.join(", ")))
        }
        Bound::DropView { names, .. } => out.push(format!("Drop View {}", names.join(", "))),
        Bound::CreateIndex { index, table, .. } => {
            out.push(format!("Create Index {} on {}", index.name, table.name))
        }
        Bound::DropIndex { names, .. } => out.push(format!("Drop Index {}", names.join(", "))),
        Bound::Explain(inner) => out.extend(explain(inner)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::statements::freeze_on_as_true;
    use super::{format_memory, parse, parse_memory};

    #[test]
    fn copy_freeze_on_parses() {
        assert_eq!(
            freeze_on_as_true("copy t from stdin with (freeze on)"),
            "copy t from stdin with (FREEZE TRUE)"
        );
        assert_eq!(
            freeze_on_as_true("COPY t FROM STDIN (FREEZE OFF, FORMAT csv)"),
            "COPY t FROM STDIN (FREEZE FALSE, FORMAT csv)"
        );
        assert_eq!(
            freeze_on_as_true("copy 'freeze on' x"),
            "copy 'freeze on' x"
        );
        assert!(parse("copy t from stdin with (freeze on)").is_ok());
    }

    #[test]
    fn memory_settings_print_in_the_largest_unit_and_read_back() {
        for (bytes, text) in [
            (1 << 30, "1GB"),
            (256 << 20, "256MB"),
            (64 << 10, "64kB"),
            (1536 << 10, "1536kB"),
            (1000, "1000B"),
            (0, "0B"),
        ] {
            assert_eq!(format_memory(bytes), text);
            assert_eq!(parse_memory(text), Some(bytes), "{text}");
        }
    }
}
