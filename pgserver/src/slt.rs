//! Running sqllogictest files against any PostgreSQL-wire server.
//!
//! [`PgDb`] implements the `sqllogictest` crate's `AsyncDB` over
//! `tokio-postgres`'s simple protocol, so the same `.slt` file can run
//! against Mako and against PostgreSQL: results come back as text, `NULL`
//! as `NULL`, empty strings as `(empty)`. Errors carry the server's message
//! and SQLSTATE, so `statement error <regex>` and `statement error (40001)`
//! both work.

use std::fmt;
use std::time::Duration;

use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// An error from the server, displayed as its message (tokio-postgres'
/// own `Display` is only "db error").
#[derive(Debug)]
pub struct DbError {
    /// The server's message (or the client's, for connection errors).
    pub message: String,
    /// The SQLSTATE, when the server sent one.
    pub code: Option<String>,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => DbError {
                message: db.message().to_string(),
                code: Some(db.code().code().to_string()),
            },
            None => DbError {
                message: e.to_string(),
                code: None,
            },
        }
    }
}

/// One connection to a PostgreSQL-wire server.
pub struct PgDb {
    client: Client,
    conn: tokio::task::JoinHandle<()>,
}

impl PgDb {
    /// Connects with a libpq-style URL or key=value string.
    pub async fn connect(url: &str) -> Result<PgDb, DbError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PgDb { client, conn })
    }
}

#[async_trait::async_trait]
impl AsyncDB for PgDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(desc) if columns.is_none() => {
                    columns = Some(desc.len());
                }
                SimpleQueryMessage::Row(row) => {
                    if columns.is_none() {
                        columns = Some(row.len());
                    }
                    let mut out = Vec::with_capacity(row.len());
                    for i in 0..row.len() {
                        out.push(match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(s) => s.to_string(),
                        });
                    }
                    rows.push(out);
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(affected)),
        }
    }

    async fn shutdown(&mut self) {
        self.conn.abort();
    }

    fn engine_name(&self) -> &str {
        "postgresql"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.code.clone()
    }
}

/// Runs one sqllogictest file against the server at `url`, with extra
/// `labels` for `skipif`/`onlyif` (the engine name is `postgresql`).
/// Returns the failure, rendered for a human, if any.
pub async fn run_file(path: &std::path::Path, url: &str, labels: &[&str]) -> Result<(), String> {
    let url = url.to_string();
    let mut runner = sqllogictest::Runner::new(move || {
        let url = url.clone();
        async move { PgDb::connect(&url).await }
    });
    for l in labels {
        runner.add_label(l);
    }
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(false).to_string())
}
