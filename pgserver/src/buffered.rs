//! Fewer socket writes for the extended protocol.
//!
//! pgwire's default Parse/Bind/Describe/Execute/Close hooks `send` each
//! reply, which flushes the socket: five `sendto` calls for one prepared
//! statement where PostgreSQL makes one. The client does not read them
//! before it has sent Sync (or Flush) anyway, so [`Connection`] runs those
//! default hooks through [`Deferred`] on a [`NoFlush`] sink: replies are
//! queued in the connection's write buffer, and Sync or Flush write them
//! all at once. A large result still goes out as it is produced, because
//! the framed writer flushes whenever its buffer passes its limit.
//!
//! [`Connection`]: crate::handler::Connection

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Portal;
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::Response;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, SessionExtensions,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Describe, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, ProtocolVersion};

use crate::handler::{Connection, Statement, StatementParser};

/// A client whose flushes are deferred: messages only go to its buffer.
pub struct NoFlush<'a, C>(pub &'a mut C);

impl<C: Sink<PgWireBackendMessage> + Unpin> Sink<PgWireBackendMessage> for NoFlush<'_, C> {
    type Error = C::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), C::Error> {
        Pin::new(&mut *self.0).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

impl<C: ClientInfo> ClientInfo for NoFlush<'_, C> {
    fn socket_addr(&self) -> SocketAddr {
        self.0.socket_addr()
    }

    fn is_secure(&self) -> bool {
        self.0.is_secure()
    }

    fn protocol_version(&self) -> ProtocolVersion {
        self.0.protocol_version()
    }

    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.0.set_protocol_version(version)
    }

    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.0.pid_and_secret_key()
    }

    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.0.set_pid_and_secret_key(pid, secret_key)
    }

    fn state(&self) -> PgWireConnectionState {
        self.0.state()
    }

    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.0.set_state(new_state)
    }

    fn transaction_status(&self) -> TransactionStatus {
        self.0.transaction_status()
    }

    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.0.set_transaction_status(new_status)
    }

    fn metadata(&self) -> &HashMap<String, String> {
        self.0.metadata()
    }

    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.0.metadata_mut()
    }

    fn session_extensions(&self) -> &SessionExtensions {
        self.0.session_extensions()
    }
}

impl<C: ClientPortalStore> ClientPortalStore for NoFlush<'_, C> {
    type PortalStore = C::PortalStore;

    fn portal_store(&self) -> &C::PortalStore {
        self.0.portal_store()
    }
}

/// pgwire's default extended-protocol hooks over a connection's own query
/// execution (the connection overrides the hooks to call these with a
/// [`NoFlush`] client).
pub struct Deferred<'a>(pub &'a Connection);

#[async_trait]
impl ExtendedQueryHandler for Deferred<'_> {
    type Statement = Statement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.0.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.0.do_query(client, portal, max_rows).await
    }

    /// Describe, as PostgreSQL answers it: a statement that returns no
    /// rows (INSERT, UPDATE, DELETE without RETURNING, DDL, …) gets NoData
    /// — pgwire's default sends an empty RowDescription whenever the
    /// statement has parameters, and pgjdbc then expects rows.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let fields = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let described = self.do_describe_statement(client, &stmt).await?;
                    let oids = described.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(oids),
                        ))
                        .await?;
                    stmt.statement.returns_rows().then_some(described.fields)
                }
                Some(Entry::Empty) => {
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(Vec::new()),
                        ))
                        .await?;
                    None
                }
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let described = self.do_describe_portal(client, &portal).await?;
                    portal
                        .statement
                        .statement
                        .returns_rows()
                        .then_some(described.fields)
                }
                Some(Entry::Empty) => None,
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        match fields {
            Some(fields) => {
                client
                    .send(PgWireBackendMessage::RowDescription(RowDescription::new(
                        fields.iter().map(Into::into).collect(),
                    )))
                    .await?
            }
            None => {
                client
                    .send(PgWireBackendMessage::NoData(NoData::new()))
                    .await?
            }
        }
        Ok(())
    }
}
