//! The TPC-C driver (`mako tpcc load|run|check`), usable against any
//! PostgreSQL-wire server: Mako, or PostgreSQL for comparison.
//!
//! The schema and the five transactions are plain SQL in `testdata/tpcc/`
//! (compiled in); each file's statements are named with `-- name:` lines
//! and run as prepared statements. The driver follows TPC-C 5.11 for the
//! population (clause 4.3) and the transaction inputs (clause 2), without
//! the keying and think times by default.

pub mod check;
pub mod literal;
pub mod load;
pub mod random;
pub mod run;
pub mod txns;

use std::collections::HashMap;

use tokio_postgres::{Client, NoTls, Statement};

/// Statements of one transaction profile, by name.
pub struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    /// The prepared statement `name`.
    pub fn get(&self, name: &str) -> &Statement {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no statement named {name}"))
    }
}

/// The SQL files, compiled in.
pub mod files {
    /// The nine tables.
    pub const SCHEMA: &str = include_str!("../../../testdata/tpcc/schema.sql");
    /// New-Order.
    pub const NEW_ORDER: &str = include_str!("../../../testdata/tpcc/new_order.sql");
    /// Payment.
    pub const PAYMENT: &str = include_str!("../../../testdata/tpcc/payment.sql");
    /// Order-Status.
    pub const ORDER_STATUS: &str = include_str!("../../../testdata/tpcc/order_status.sql");
    /// Delivery.
    pub const DELIVERY: &str = include_str!("../../../testdata/tpcc/delivery.sql");
    /// Stock-Level.
    pub const STOCK_LEVEL: &str = include_str!("../../../testdata/tpcc/stock_level.sql");
    /// Consistency conditions.
    pub const CHECK: &str = include_str!("../../../testdata/tpcc/check.sql");
    /// The foreign keys (`load --foreign-keys`).
    pub const FOREIGN_KEYS: &str = include_str!("../../../testdata/tpcc/foreign_keys.sql");
}

/// Splits a file into `(name, sql)` by its `-- name: x` lines.
pub fn named_statements(file: &'static str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for line in file.lines() {
        if let Some(name) = line.strip_prefix("-- name:") {
            out.push((name.trim(), String::new()));
        } else if let Some((_, sql)) = out.last_mut()
            && !line.trim_start().starts_with("--")
        {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    for (_, sql) in &mut out {
        *sql = sql.trim().trim_end_matches(';').to_string();
    }
    out
}

/// The statements of a `;`-separated SQL file, without comments.
pub fn plain_statements(file: &str) -> Vec<String> {
    let without_comments: String = file
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The schema's statements, without comments; for PostgreSQL without
/// Mako's `WITH (replicated = true)`.
pub fn schema_statements(for_mako: bool) -> Vec<String> {
    plain_statements(files::SCHEMA)
        .into_iter()
        .map(|s| {
            if for_mako {
                s
            } else {
                s.replace(" WITH (replicated = true)", "")
            }
        })
        .collect()
}

/// Prepares every named statement of `file` on `client`.
pub async fn prepare(
    client: &Client,
    file: &'static str,
) -> Result<Statements, tokio_postgres::Error> {
    let mut map = HashMap::new();
    for (name, sql) in named_statements(file) {
        map.insert(name, client.prepare(&sql).await?);
    }
    Ok(Statements(map))
}

/// Opens a connection.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// True when the server is Mako (its version string says so).
pub async fn is_mako(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let v: String = client.query_one("SELECT version()", &[]).await?.get(0);
    Ok(v.contains("Mako"))
}

/// A driver error for people.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_splits_into_named_statements() {
        for f in [
            files::NEW_ORDER,
            files::PAYMENT,
            files::ORDER_STATUS,
            files::DELIVERY,
            files::STOCK_LEVEL,
            files::CHECK,
        ] {
            let stmts = named_statements(f);
            assert!(!stmts.is_empty());
            for (name, sql) in stmts {
                assert!(!sql.is_empty() && !sql.contains("--"), "{name}: {sql}");
            }
        }
        let mako = schema_statements(true);
        assert_eq!(
            mako.iter()
                .filter(|s| s.starts_with("CREATE TABLE"))
                .count(),
            9
        );
        assert!(mako.iter().any(|s| s.contains("replicated")));
        assert!(
            !schema_statements(false)
                .iter()
                .any(|s| s.contains("replicated"))
        );
    }
}
