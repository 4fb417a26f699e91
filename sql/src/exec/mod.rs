//! Execution of bound statements over a transaction.
//!
//! Two paths run query plans:
//! - the **vectorized** path ([`vector`]) for anything that reads more than
//!   one row: operators pass Arrow record batches, and expressions are
//!   evaluated a column at a time ([`veval`]), falling back to row-at-a-time
//!   evaluation for the expressions it has no kernel for;
//! - the lean **row** path ([`row`]) for plans that read at most one row by
//!   a point get (most OLTP statements), where building batches would cost
//!   more than it saves.
//!
//! Both read through [`ExecCtx`], which owns the statement's transaction,
//! parameters, subquery results and memory budget. Writes ([`dml`]) are
//! row-at-a-time and keep secondary indexes in step with rows.

mod agg;
mod alter;
mod dml;
mod fkey;
mod row;
mod scan;
pub mod vector;
mod veval;
mod window;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use kv::{Error, ErrorKind, Result};
use txn::Txn;

use std::cmp::Ordering;

use crate::catalog::encode_key_value;
use crate::expr::{Env, Func, Subquery, SubqueryRunner};
use crate::interrupt::{self, Interrupt};
use crate::plan::{Plan, SortKey};
use crate::syscat;
use crate::types::Value;

pub use dml::{Conflict, ConflictTarget, InsertSource, Returning};

/// A row of values.
pub type Row = Vec<Value>;

/// The default per-statement memory budget for materialized results, sorts
/// and hash tables (setting `mako.statement_memory`).
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// Counts the memory a statement holds in materialized rows, sorts and hash
/// tables, and fails the statement (SQLSTATE 53200) past the limit instead
/// of letting it exhaust the server.
pub struct Memory {
    used: Cell<usize>,
    limit: usize,
}

impl Memory {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Memory {
            used: Cell::new(0),
            limit,
        }
    }

    /// Accounts for `bytes` more.
    pub fn charge(&self, bytes: usize) -> Result<()> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!(
                    "statement used more than its memory limit of {} bytes (setting mako.statement_memory, at most the server's mako start --statement-memory)",
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    /// Forgets what was accounted after `mark` (a value of
    /// [`Memory::used`]): that memory has been freed.
    pub fn release_to(&self, mark: usize) {
        self.used.set(self.used.get().min(mark));
    }

    /// Bytes accounted so far.
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

/// The approximate heap size of a row.
pub fn row_size(row: &[Value]) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Text(s) => 32 + s.len(),
            _ => 24,
        })
        .sum::<usize>()
        + 24
}

/// What a statement executes in.
pub struct ExecCtx<'t> {
    /// The statement's transaction. Borrowed only around each read or write
    /// so that subqueries evaluated inside expressions can read too.
    txn: RefCell<&'t mut Txn>,
    /// Parameter values.
    pub params: &'t [Value],
    /// Results of uncorrelated subqueries, by subquery id.
    cache: RefCell<HashMap<usize, Rc<Vec<Row>>>>,
    /// The memory budget.
    pub memory: Memory,
    /// Stops the statement (cancel, timeout, shutdown); long loops check it.
    interrupt: &'t Interrupt,
    /// The most bytes the transaction's write set may hold.
    write_limit: usize,
    /// The transaction's start, for `now()`.
    now: i64,
    /// The session's sequence values (`currval`, `lastval`).
    sequences: Option<&'t std::sync::Mutex<crate::sequence::SessionSequences>>,
    /// The session's user and database (the system catalog shows them).
    identity: Option<&'t crate::bind::Identity>,
}

impl<'t> ExecCtx<'t> {
    /// A context over `txn` with parameter values and a memory limit.
    pub fn new(txn: &'t mut Txn, params: &'t [Value], memory_limit: usize) -> Self {
        let now = txn.started_micros();
        ExecCtx {
            now,
            sequences: None,
            identity: None,
            txn: RefCell::new(txn),
            params,
            cache: RefCell::new(HashMap::new()),
            memory: Memory::new(memory_limit),
            interrupt: &interrupt::NEVER,
            write_limit: usize::MAX,
        }
    }

    /// The same context, failing a write that takes the transaction's
    /// write set past `bytes` (54000).
    pub fn with_write_limit(mut self, bytes: usize) -> Self {
        self.write_limit = bytes;
        self
    }

    /// The same context, with the session's sequence values.
    pub fn with_sequences(
        mut self,
        sequences: &'t std::sync::Mutex<crate::sequence::SessionSequences>,
    ) -> Self {
        self.sequences = Some(sequences);
        self
    }

    /// The same context, for the session of `identity`.
    pub fn with_identity(mut self, identity: &'t crate::bind::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The rows of a system catalog relation, as this transaction sees
    /// the catalog.
    pub(crate) fn system_rows(&self, table: syscat::SystemTable) -> Result<Vec<Row>> {
        let fallback = crate::bind::Identity::default();
        let who = self.identity.unwrap_or(&fallback);
        let rows = self.with_txn(|t| table.rows(t, who))?;
        self.memory
            .charge(rows.iter().map(|r| 32 * (r.len() + 1)).sum())?;
        Ok(rows)
    }

    /// The same context, stopped by `interrupt`.
    pub fn with_interrupt(mut self, interrupt: &'t Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Fails if the statement must stop (57014, 57P01). Loops that may run
    /// long call it once per batch or every few thousand rows.
    pub fn check_interrupt(&self) -> Result<()> {
        self.interrupt.check()
    }

    /// For the `i`th row of a loop that writes rows, once every 1024
    /// rows: [`ExecCtx::check_interrupt`], and the bound on the
    /// transaction's write set.
    pub fn check_interrupt_at(&self, i: usize) -> Result<()> {
        if !i.is_multiple_of(1024) {
            return Ok(());
        }
        self.interrupt.check()?;
        let held = self.with_txn(|t| t.write_set_bytes());
        if held > self.write_limit {
            return Err(Error::new(
                ErrorKind::ProgramLimitExceeded,
                format!(
                    "the transaction's writes hold more than its limit of {} bytes \
                     (mako start --max-write-set): write fewer rows per transaction",
                    self.write_limit
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` with the transaction.
    pub fn with_txn<R>(&self, f: impl FnOnce(&mut Txn) -> R) -> R {
        f(&mut self.txn.borrow_mut())
    }

    /// An evaluation environment for `row`.
    pub fn env<'a>(&'a self, row: &'a [Value], outer: &'a [&'a [Value]]) -> Env<'a> {
        Env {
            row,
            params: self.params,
            outer,
            runner: Some(self),
            now: self.now,
        }
    }

    /// Runs a query plan and returns its rows, choosing the execution path.
    pub fn query(&self, plan: &Plan, outer: &[&[Value]]) -> Result<Vec<Row>> {
        if plan.is_point_plan() {
            self.query_rows(plan, outer)
        } else {
            let types = plan.output_types();
            let batches = self.query_batches(plan, outer)?;
            // The rows are a second copy of the result, held until sent.
            self.memory.charge(vector::rows_memory(&batches))?;
            Ok(vector::rows_from_batches(&batches, &types))
        }
    }
}

impl SubqueryRunner for ExecCtx<'_> {
    fn rows(&self, sq: &Subquery, outer: &[&[Value]]) -> Result<Rc<Vec<Row>>> {
        if !sq.correlated
            && let Some(rows) = self.cache.borrow().get(&sq.id)
        {
            return Ok(rows.clone());
        }
        // What a run materializes is freed when it ends (a correlated
        // subquery runs once per outer row); a cached result stays.
        let mark = self.memory.used();
        let rows = Rc::new(self.query(&sq.plan, outer)?);
        self.memory.release_to(mark);
        if !sq.correlated {
            self.memory
                .charge(rows.iter().map(|r| 32 * (r.len() + 1)).sum())?;
            self.cache.borrow_mut().insert(sq.id, rows.clone());
        }
        Ok(rows)
    }

    fn memory_limit(&self) -> usize {
        self.memory.limit
    }

    fn call(&self, f: Func, args: &[Value]) -> Result<Value> {
        let text = |v: Option<String>| v.map_or(Value::Null, Value::text);
        match (f, args) {
            (Func::PgGetIndexdef, [Value::Int(oid), rest @ ..]) => {
                let column = match rest.first() {
                    Some(Value::Int(c)) => *c,
                    _ => 0,
                };
                return Ok(text(
                    self.with_txn(|t| syscat::get_indexdef(t, *oid, column))?,
                ));
            }
            (Func::PgGetConstraintdef, [Value::Int(oid), rest @ ..]) => {
                let pretty = matches!(rest, [Value::Bool(true)]);
                return Ok(text(
                    self.with_txn(|t| syscat::get_constraintdef(t, *oid, pretty))?,
                ));
            }
            (Func::PgGetViewdef, [Value::Int(oid), ..]) => {
                return Ok(text(self.with_txn(|t| syscat::get_viewdef(t, *oid))?));
            }
            (Func::ToRegclass, [Value::Text(name)]) => {
                return Ok(self
                    .with_txn(|t| syscat::regclass(t, name))?
                    .map_or(Value::Null, Value::Int));
            }
            (Func::RegclassName, [Value::Int(oid)]) => {
                let name = self.with_txn(|t| syscat::relation_name(t, *oid))?;
                return Ok(Value::text(name.unwrap_or_else(|| oid.to_string())));
            }
            (Func::PgGetSerialSequence, [Value::Text(table), Value::Text(column)]) => {
                return Ok(text(
                    self.with_txn(|t| syscat::serial_sequence(t, table, column))?,
                ));
            }
            (Func::Regclass, [Value::Text(name)]) => {
                return match self.with_txn(|t| syscat::regclass(t, name))? {
                    Some(oid) => Ok(Value::Int(oid)),
                    None => Err(Error::new(
                        ErrorKind::UndefinedTable,
                        format!("relation \"{name}\" does not exist"),
                    )),
                };
            }
            _ => {}
        }
        let mut own = crate::sequence::SessionSequences::default();
        let mut guard = self
            .sequences
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        let session = guard.as_deref_mut().unwrap_or(&mut own);
        if f == Func::LastVal {
            return session.lastval().map(Value::Int);
        }
        let Some(Value::Text(name)) = args.first() else {
            return Err(Error::internal("sequence function without a name"));
        };
        let name = sequence_name(name);
        let seq = self.with_txn(|t| crate::catalog::require_sequence(t, &name))?;
        let db = self.with_txn(|t| t.db().clone());
        Ok(Value::Int(match (f, &args[1..]) {
            (Func::NextVal, []) => crate::sequence::nextval(&db, &seq, session)?,
            (Func::CurrVal, []) => session.currval(&seq.name)?,
            (Func::SetVal, [Value::Int(v)]) => {
                crate::sequence::setval(&db, &seq, *v, true, session)?
            }
            (Func::SetVal, [Value::Int(v), Value::Bool(called)]) => {
                crate::sequence::setval(&db, &seq, *v, *called, session)?
            }
            _ => return Err(Error::internal(format!("bad arguments to {}", f.name()))),
        }))
    }
}

/// A sequence name as written in `nextval('...')`: folded to lower case
/// unless double-quoted, as a `regclass` literal is.
fn sequence_name(text: &str) -> String {
    // Everything lives in schema `public` (pg_dump writes the schema).
    let text = text
        .strip_prefix("public.")
        .or_else(|| text.strip_prefix("\"public\"."))
        .unwrap_or(text);
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_lowercase(),
    }
}

/// A canonical byte form of a row, for grouping and DISTINCT (numerically
/// equal values group together, as do -0.0 and 0.0).
pub(crate) fn row_key(row: &[Value]) -> Vec<u8> {
    let mut k = Vec::new();
    for v in row {
        encode_key_value(&mut k, v);
    }
    k
}

pub(crate) fn compare_rows(a: &Row, b: &Row, keys: &[SortKey]) -> Ordering {
    for k in keys {
        let (x, y) = (&a[k.column], &b[k.column]);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = x.cmp_non_null(y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
