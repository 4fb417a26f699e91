//! One client connection: pgwire's handler traits over a `sql::Session`.
//!
//! - Simple protocol: the whole query string goes to
//!   `Session::execute_script`, which stops at the first error.
//! - Extended protocol: Parse prepares and binds the statement (parameter
//!   types are inferred when the client sends none), Describe answers from
//!   the bound statement without executing, Bind/Execute decode the
//!   parameters in the client's format and run it.
//! - The ReadyForQuery status byte always comes from the session (idle, in
//!   transaction, failed), not from guesses about the responses sent: a
//!   COMMIT that fails certification leaves the session idle, not failed.
//! - Statements (parsing, binding, executing, encoding the rows) run on the
//!   runtime's blocking pool, never on its async workers: a long statement
//!   must not hold up other connections' bytes or new connections. The
//!   session's [`Interrupt`] stops them (cancel request, timeout, shutdown).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
    send_ready_for_query,
};
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse, Sync as PgSync};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion};
use sql::bind::OutputColumn;
use sql::interrupt::Interrupt;
use sql::{Outcome, Prepared, Session, TxnStatus, Value};
use txn::Db;

use crate::buffered::{Deferred, NoFlush};
use crate::sessions::{Registration, Sessions};
use crate::sqlstate::sqlstate;
use crate::wire::{Cell, declared_type, decode_binary, decode_text, pg_type};

/// Converts an error to what the client sees.
pub fn error_info(e: &kv::Error) -> ErrorInfo {
    if e.kind == kv::ErrorKind::Internal {
        tracing::error!(error = %e.message, "internal error");
    }
    ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate(e.kind).to_owned(),
        e.message.clone(),
    )
}

fn user_error(e: &kv::Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn status_byte(s: TxnStatus) -> TransactionStatus {
    match s {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InBlock => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

/// A statement prepared by the extended protocol.
#[derive(Clone, Debug)]
pub struct Statement(Arc<Prepared>);

impl Statement {
    /// Whether the statement returns rows (a query, `RETURNING`, `SHOW`):
    /// Describe answers RowDescription for it, NoData otherwise.
    pub fn returns_rows(&self) -> bool {
        self.0.columns.is_some()
    }
}

/// Parses and binds statements for the extended protocol.
pub struct StatementParser {
    session: Arc<Mutex<Session>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the session is a bug; the session's state is
    // still consistent enough to report errors, so keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn schema(columns: &[OutputColumn], format: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            FieldInfo::new(c.name.clone(), None, None, pg_type(c.ty), f)
        })
        .collect()
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if sql == crate::protocol::INVALID_TEXT {
            let _ = blocking(&self.session, None, |session| {
                session.mark_failed();
                Ok(())
            })
            .await;
            return Err(crate::protocol::invalid_text_error());
        }
        let declared: kv::Result<Vec<_>> = types
            .iter()
            .map(|t| t.as_ref().map_or(Ok(None), declared_type))
            .collect();
        let sql = sql.to_owned();
        let result = blocking(&self.session, None, move |session| {
            let result = declared.and_then(|d| session.prepare(&sql, &d));
            if result.is_err() {
                session.mark_failed();
            }
            result
        })
        .await;
        match result {
            Ok(p) => Ok(Some(Statement(Arc::new(p)))),
            Err(e) => Err(user_error(&e)),
        }
    }

    fn get_parameter_types(&self, stmt: &Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.0.param_types.iter().map(|t| pg_type(*t)).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt
            .0
            .columns
            .as_deref()
            .map(|c| schema(c, format))
            .unwrap_or_default())
    }
}

/// Waits, without blocking the thread, until `commits` are durable: a
/// statement that committed is acknowledged only then (Mako §4.3). An
/// error means the commit's outcome is unknown to the client. Nothing may
/// cut this wait short with another answer (a query cancel, were it
/// wired in, would have to report the outcome unknown, not "canceled":
/// the transaction is installed, and a client would retry it).
async fn durable(commits: Vec<txn::Installed>) -> txn::Result<()> {
    for commit in commits {
        let mut pending = commit.durable();
        loop {
            // A missed wake-up would leave the client waiting for good:
            // poll again now and then, as the blocking wait does.
            match tokio::time::timeout(std::time::Duration::from_millis(50), &mut pending).await {
                Ok(done) => {
                    done?;
                    break;
                }
                Err(_) => continue,
            }
        }
    }
    Ok(())
}

/// Runs `f` on the session on a thread of the blocking pool and waits for
/// it as a task. `interrupt`, when given, is armed for the call: a cancel
/// request stops what `f` runs. A panic in `f` (a bug) becomes an
/// internal error for this client; the server and the session go on.
async fn blocking<T: Send + 'static>(
    session: &Arc<Mutex<Session>>,
    interrupt: Option<&Arc<Interrupt>>,
    f: impl FnOnce(&mut Session) -> kv::Result<T> + Send + 'static,
) -> kv::Result<T> {
    let session = session.clone();
    if let Some(i) = interrupt {
        i.start_query();
    }
    let joined = tokio::task::spawn_blocking(move || f(&mut lock(&session))).await;
    if let Some(i) = interrupt {
        i.finish_query();
    }
    joined.unwrap_or_else(|e| {
        Err(kv::Error::internal(format!(
            "the statement's thread failed: {e}"
        )))
    })
}

/// When a session sits idle inside a transaction block, and for how long
/// it may (`idle_in_transaction_session_timeout`): the server's watchdog
/// ([`Connection::idle_timeout`]) ends a session that waits too long.
#[derive(Debug)]
pub struct Idle {
    /// Nanoseconds after `origin` when the session last reported
    /// ReadyForQuery inside a transaction block; `u64::MAX` while it is
    /// busy or outside a transaction.
    since: AtomicU64,
    /// The timeout in milliseconds; 0: none.
    timeout_ms: AtomicU64,
    /// The instant `since` counts from.
    origin: std::time::Instant,
}

impl Idle {
    fn new() -> Self {
        Idle {
            since: AtomicU64::new(u64::MAX),
            timeout_ms: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }

    /// Work starts on the session: it is not idle.
    fn busy(&self) {
        self.since.store(u64::MAX, Ordering::Release);
    }

    /// The session reports ReadyForQuery with `status`.
    fn ready(&self, status: TransactionStatus) {
        let in_block = !matches!(status, TransactionStatus::Idle);
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.since
            .store(if in_block { now } else { u64::MAX }, Ordering::Release);
    }

    /// How long until the session has been idle in a transaction for too
    /// long: `Some(ZERO)` once it has, `None` while it is busy, outside a
    /// transaction, or without a timeout.
    fn remaining(&self) -> Option<std::time::Duration> {
        let timeout = self.timeout_ms.load(Ordering::Acquire);
        let since = self.since.load(Ordering::Acquire);
        if timeout == 0 || since == u64::MAX {
            return None;
        }
        let deadline = since.saturating_add(timeout.saturating_mul(1_000_000));
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        Some(std::time::Duration::from_nanos(
            deadline.saturating_sub(now),
        ))
    }
}

/// The server-wide settings every connection gets.
#[derive(Clone)]
pub struct ServerLimits {
    /// The most memory one statement may use (`mako.statement_memory` may
    /// only lower it).
    pub statement_memory: usize,
    /// The most sessions at once; more are refused with 53300.
    pub max_connections: usize,
    /// The most bytes one transaction's writes may hold (54000 past it).
    pub max_write_set: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            statement_memory: sql::exec::DEFAULT_MEMORY_LIMIT,
            max_connections: 100,
            max_write_set: sql::session::DEFAULT_WRITE_LIMIT,
        }
    }
}

/// The per-connection handler.
pub struct Connection {
    session: Arc<Mutex<Session>>,
    parser: Arc<StatementParser>,
    /// Stops the session's running statement.
    interrupt: Arc<Interrupt>,
    /// The session's pid and secret key for cancel requests; dropped (and
    /// so unregistered) with the connection's last handle.
    registration: Arc<Registration>,
    /// Whether this connection is one too many (refused at startup).
    over_limit: bool,
    /// Idle time inside a transaction block, for the watchdog.
    idle: Arc<Idle>,
    /// Names of the statements the client prepared (Parse), so that
    /// `DEALLOCATE ALL` / `DISCARD ALL` can forget them all.
    prepared_names: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl Connection {
    /// A new connection with its own session on `db`, registered in
    /// `sessions`.
    pub fn new(db: Arc<Db>, sessions: &Arc<Sessions>, limits: &ServerLimits) -> Self {
        let mut session = Session::new(db);
        // Commits are awaited here (`durable`), not on the session's
        // thread: a worker blocked for a replication round trip would hold
        // up every task queued behind it on that worker, other sessions'
        // commits included.
        session.defer_durability();
        session.set_memory_ceiling(limits.statement_memory);
        session.set_write_limit(limits.max_write_set);
        let interrupt = session.interrupt();
        let over_limit = sessions.len() >= limits.max_connections;
        let registration = Arc::new(sessions.register(interrupt.clone()));
        let session = Arc::new(Mutex::new(session));
        Connection {
            parser: Arc::new(StatementParser {
                session: session.clone(),
            }),
            session,
            interrupt,
            registration,
            over_limit,
            idle: Arc::new(Idle::new()),
            prepared_names: Default::default(),
        }
    }

    /// Completes once the session has sat idle inside a transaction block
    /// for longer than its `idle_in_transaction_session_timeout`: the
    /// server then ends the connection (its transaction rolls back; with
    /// optimistic concurrency it held no locks, but it holds a connection
    /// slot and its write set).
    pub async fn idle_timeout(&self) {
        loop {
            let wait = match self.idle.remaining() {
                Some(left) if left.is_zero() => return,
                Some(left) => left.min(std::time::Duration::from_millis(250)),
                None => std::time::Duration::from_millis(250),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs `f` on the session off the async workers, armed for cancel
    /// requests; the session is busy meanwhile, and afterwards its idle
    /// timeout is read for the watchdog.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> kv::Result<T> + Send + 'static,
    ) -> kv::Result<T> {
        self.idle.busy();
        let idle = self.idle.clone();
        blocking(&self.session, Some(&self.interrupt), move |session| {
            let out = f(session);
            let timeout = session.idle_in_transaction_timeout();
            idle.timeout_ms.store(
                timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                Ordering::Release,
            );
            out
        })
        .await
    }

    fn status(&self) -> TransactionStatus {
        status_byte(lock(&self.session).status())
    }
}

fn to_response(outcome: Outcome, format: Option<&Format>) -> PgWireResult<Response> {
    Ok(match outcome {
        Outcome::Empty => Response::EmptyQuery,
        Outcome::CopyIn { columns, .. } => {
            Response::CopyIn(CopyResponse::new(0, columns, stream::empty()))
        }
        Outcome::CopyOut { columns, data, .. } => Response::CopyOut(CopyResponse::new(
            0,
            columns,
            stream::iter(
                data.into_iter()
                    .map(|row| Ok(CopyData::new(bytes::Bytes::from(row)))),
            ),
        )),
        Outcome::Command { tag, rows } => {
            let t = match (tag, rows) {
                ("INSERT", Some(n)) => Tag::new("INSERT").with_oid(0).with_rows(n as usize),
                (tag, Some(n)) => Tag::new(tag).with_rows(n as usize),
                (tag, None) => Tag::new(tag),
            };
            match tag {
                "BEGIN" | "START TRANSACTION" => Response::TransactionStart(t),
                "COMMIT" | "ROLLBACK" => Response::TransactionEnd(t),
                _ => Response::Execution(t),
            }
        }
        Outcome::Rows { columns, rows, tag } => {
            let fields = Arc::new(schema(&columns, format));
            let mut encoder = DataRowEncoder::new(fields.clone());
            let mut data = Vec::with_capacity(rows.len());
            for row in &rows {
                for (v, c) in row.iter().zip(&columns) {
                    encoder.encode_field(&Cell { value: v, ty: c.ty })?;
                }
                data.push(Ok(encoder.take_row()));
            }
            let mut resp = QueryResponse::new(fields, stream::iter(data));
            resp.set_command_tag(tag);
            Response::Query(resp)
        }
    })
}

fn decode_params(
    types: &[sql::DataType],
    parameters: &[Option<bytes::Bytes>],
    format: &Format,
) -> kv::Result<Vec<Value>> {
    if parameters.len() != types.len() {
        return Err(kv::Error::new(
            kv::ErrorKind::Protocol,
            format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                parameters.len(),
                types.len()
            ),
        ));
    }
    parameters
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (raw, ty))| match raw {
            None => Ok(Value::Null),
            Some(bytes) if format.is_binary(i) => decode_binary(bytes, *ty),
            Some(bytes) => decode_text(bytes, *ty),
        })
        .collect()
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        if query.query == crate::protocol::INVALID_TEXT {
            // As any error inside a transaction block, it fails the block.
            let _ = blocking(&self.session, None, |session| {
                session.mark_failed();
                Ok(())
            })
            .await;
            return Err(crate::protocol::invalid_text_error());
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let responses = SimpleQueryHandler::do_query(self, client, &query.query).await?;
        for r in responses {
            match r {
                Response::EmptyQuery => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?
                }
                Response::Query(q) => send_query_response(client, q, true).await?,
                Response::Execution(t)
                | Response::TransactionStart(t)
                | Response::TransactionEnd(t) => send_execution_response(client, t).await?,
                Response::Error(e) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                        .await?
                }
                Response::CopyOut(resp) => {
                    pgwire::api::copy::send_copy_out_response(client, resp).await?
                }
                Response::CopyIn(resp) => {
                    // The data follows; ReadyForQuery comes after CopyDone
                    // (see the CopyHandler below).
                    pgwire::api::copy::send_copy_in_response(client, resp).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    return Ok(());
                }
                _ => {}
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let status = self.status();
        client.set_transaction_status(status);
        self.idle.ready(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let query = query.to_owned();
        let ran = self
            .run(move |session| {
                let results = session.execute_script(&query);
                let commits = session.take_deferred();
                let dropped = session.take_deallocated();
                // Rows are encoded here too: a large result is work.
                let responses: Vec<PgWireResult<Response>> = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(o) => to_response(o, None),
                        Err(e) => Ok(Response::Error(Box::new(error_info(&e)))),
                    })
                    .collect();
                Ok((responses, commits, dropped))
            })
            .await;
        let (mut responses, commits, dropped) = match ran {
            Ok(r) => r,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e)))]),
        };
        self.forget_statements(client, dropped);
        if let Err(e) = durable(commits).await
            && let Some(last) = responses.last_mut()
        {
            // The statement that committed (a script of several waits for
            // each commit itself) is not acknowledged.
            *last = Ok(Response::Error(Box::new(error_info(&e))));
        }
        responses.into_iter().collect()
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Statement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = portal.statement.statement.0.clone();
        let parameters = portal.parameters.clone();
        let parameter_format = portal.parameter_format.clone();
        let result_format = portal.result_column_format.clone();
        let ran = self
            .run(move |session| {
                let result = decode_params(&statement.param_types, &parameters, &parameter_format)
                    .and_then(|params| session.execute(&statement, &params));
                if result.is_err() {
                    session.mark_failed();
                }
                let commits = session.take_deferred();
                let dropped = session.take_deallocated();
                Ok((
                    result.map(|o| to_response(o, Some(&result_format))),
                    commits,
                    dropped,
                ))
            })
            .await;
        let (result, commits, dropped) = ran.map_err(|e| user_error(&e))?;
        self.forget_statements(client, dropped);
        durable(commits).await.map_err(|e| user_error(&e))?;
        match result {
            Ok(response) => response,
            Err(e) => Err(user_error(&e)),
        }
    }

    // Replies to these wait in the write buffer until Sync or Flush (see
    // `crate::buffered`).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(name) = message.name.as_deref().filter(|n| !n.is_empty()) {
            lock(&self.prepared_names).insert(name.to_string());
        }
        Deferred(self).on_parse(&mut NoFlush(client), message).await
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Deferred(self).on_bind(&mut NoFlush(client), message).await
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Deferred(self)
            .on_describe(&mut NoFlush(client), message)
            .await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Deferred(self)
            .on_execute(&mut NoFlush(client), message)
            .await
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Deferred(self).on_close(&mut NoFlush(client), message).await
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = self.status();
        client.set_transaction_status(status);
        self.idle.ready(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            {
                let user = startup.parameters.get("user").map_or("", String::as_str);
                let database = startup
                    .parameters
                    .get("database")
                    .map_or(user, String::as_str);
                lock(&self.session).set_identity(user, database);
            }
            if self.over_limit {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_owned(),
                    "53300".to_owned(),
                    "sorry, too many clients already (mako start --max-connections)".to_owned(),
                ))));
            }
            if self.interrupt.is_shut_down() {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_owned(),
                    "57P03".to_owned(),
                    "the database system is shutting down".to_owned(),
                ))));
            }
            let short = client.protocol_version() == ProtocolVersion::PROTOCOL3_0;
            let secret = self.registration.new_secret(short);
            client.set_pid_and_secret_key(self.registration.pid, secret);
            let mut params = DefaultServerParameterProvider::default();
            params.server_version = sql::SERVER_VERSION.to_owned();
            params.search_path = "\"$user\", public".to_owned();
            params.time_zone = "UTC".to_owned();
            params.date_style = "ISO, MDY".to_owned();
            finish_authentication(client, &params).await?;
            tracing::debug!(addr = %client.socket_addr(), "client connected");
        }
        Ok(())
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone_handle())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone_handle())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.clone_handle())
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.registration.sessions()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(self.clone_handle())
    }
}

/// `COPY … FROM STDIN`'s data: handed to the session piece by piece; the
/// rows go in as they are parsed ([`Session::copy_data`]).
#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let data = copy_data.data;
        blocking(&self.session, Some(&self.interrupt), move |s| {
            s.copy_data(&data);
            Ok(())
        })
        .await
        .map_err(|e| user_error(&e))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = blocking(&self.session, Some(&self.interrupt), |s| {
            let outcome = s.copy_done();
            Ok((outcome, s.take_deferred()))
        })
        .await;
        // Acknowledged only once durable, as every commit.
        let result = match result {
            Ok((Ok(outcome), commits)) => durable(commits).await.map(|()| outcome),
            Ok((Err(e), _)) | Err(e) => Err(e),
        };
        let status = self.status();
        client.set_transaction_status(status);
        self.idle.ready(status);
        match result {
            Ok(Outcome::Command { rows, .. }) => {
                let tag = Tag::new("COPY").with_rows(rows.unwrap_or(0) as usize);
                client
                    .send(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
                Ok(())
            }
            Ok(_) => Err(user_error(&kv::Error::internal(
                "COPY ended without a count",
            ))),
            Err(e) => Err(user_error(&e)),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let message = fail.message;
        let e = blocking(&self.session, None, move |s| Ok(s.copy_fail(&message)))
            .await
            .unwrap_or_else(|e| e);
        let status = self.status();
        client.set_transaction_status(status);
        self.idle.ready(status);
        user_error(&e)
    }
}

impl Connection {
    /// Forgets the prepared statements `DEALLOCATE` / `DISCARD ALL` named
    /// (`None`: every one).
    fn forget_statements<C>(&self, client: &C, names: Vec<Option<String>>)
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        for name in names {
            let mut known = lock(&self.prepared_names);
            match name {
                Some(n) => {
                    client.portal_store().rm_statement(&n);
                    known.remove(&n);
                }
                None => {
                    for n in std::mem::take(&mut *known) {
                        client.portal_store().rm_statement(&n);
                    }
                }
            }
        }
    }

    fn clone_handle(&self) -> Connection {
        Connection {
            session: self.session.clone(),
            parser: self.parser.clone(),
            interrupt: self.interrupt.clone(),
            registration: self.registration.clone(),
            over_limit: self.over_limit,
            idle: self.idle.clone(),
            prepared_names: self.prepared_names.clone(),
        }
    }
}
