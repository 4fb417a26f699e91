//! Running sqllogictest files against any PostgreSQL-wire server
//! (`mako slt`, and the `.slt` suites of the test command).
//!
//! Files are parsed with the `sqllogictest` crate; records run here, one by
//! one, so a failure is counted and the file goes on. Two formats:
//!
//! - **sqllogictest-rs** (`.slt`): results as the server prints them, one
//!   row per line; `statement error (SQLSTATE)` matches by SQLSTATE.
//! - **SQLite** (`.test`, or any file with a `hash-threshold` line): values
//!   are formatted by the expected column type (`I` as an integer, `R` as
//!   `%.3f`, `T` as text), results may be given one value per line, and
//!   long results as `N values hashing to <md5>`.
//!
//! In both, NULL prints as `NULL` and the empty string as `(empty)`;
//! `skipif`/`onlyif` see the labels `postgresql` plus any given.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use sqllogictest::{
    Condition, Connection, DefaultColumnType, QueryExpect, Record, SortMode, StatementExpect,
};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// How long one statement may run before it counts as failed.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which conventions a file follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// sqllogictest-rs: server text, row per line.
    Rs,
    /// SQLite's original format: typed formatting, value per line, hashes.
    Sqlite,
}

impl Format {
    /// Guesses the format of a file from its name and content.
    pub fn detect(path: &Path, content: &str) -> Format {
        let sqlite = path.extension().is_some_and(|e| e == "test")
            || content
                .lines()
                .any(|l| l.trim_start().starts_with("hash-threshold"));
        if sqlite { Format::Sqlite } else { Format::Rs }
    }
}

/// One failed record.
#[derive(Debug)]
pub struct Failure {
    /// Where the record starts.
    pub location: String,
    /// Its SQL.
    pub sql: String,
    /// What went wrong.
    pub reason: String,
}

/// The outcome of one file.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Records that ran and passed.
    pub passed: usize,
    /// Records that ran and failed.
    pub failed: usize,
    /// Records skipped by `skipif`/`onlyif` or not supported here.
    pub skipped: usize,
    /// The failures, in order.
    pub failures: Vec<Failure>,
}

/// An error from the server, with its SQLSTATE.
struct DbError {
    message: String,
    code: Option<String>,
}

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

/// What a statement returned.
enum Output {
    Rows(Vec<Vec<Option<String>>>),
    Count(u64),
}

/// Connections by name, opened on first use.
struct Connections {
    url: String,
    open: HashMap<Connection, Client>,
}

impl Connections {
    async fn get(&mut self, name: &Connection) -> Result<&Client, DbError> {
        if !self.open.contains_key(name) {
            let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.open.insert(name.clone(), client);
        }
        Ok(&self.open[name])
    }

    async fn run(&mut self, name: &Connection, sql: &str) -> Result<Output, DbError> {
        let client = self.get(name).await?;
        let messages = match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(sql)).await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(DbError {
                    message: format!("no answer within {STATEMENT_TIMEOUT:?}"),
                    code: None,
                });
            }
        };
        let mut rows = Vec::new();
        let mut is_query = false;
        let mut count = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(_) => is_query = true,
                SimpleQueryMessage::Row(row) => {
                    is_query = true;
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(if is_query {
            Output::Rows(rows)
        } else {
            Output::Count(count)
        })
    }
}

fn skipped(conditions: &[Condition], labels: &[&str]) -> bool {
    conditions.iter().any(|c| match c {
        Condition::OnlyIf { label } => !labels.contains(&label.as_str()),
        Condition::SkipIf { label } => labels.contains(&label.as_str()),
    })
}

/// A value as the SQLite runner prints it for a column of `ty`.
fn sqlite_value(v: Option<&str>, ty: &DefaultColumnType) -> String {
    let Some(v) = v else {
        return "NULL".into();
    };
    if v.is_empty() {
        return "(empty)".into();
    }
    match ty {
        DefaultColumnType::Integer => match (v.parse::<i64>(), v.parse::<f64>()) {
            (Ok(i), _) => i.to_string(),
            (_, Ok(f)) => (f.trunc() as i64).to_string(),
            _ if v == "t" => "1".into(),
            _ if v == "f" => "0".into(),
            _ => v.into(),
        },
        DefaultColumnType::FloatingPoint => match v.parse::<f64>() {
            Ok(f) => format!("{f:.3}"),
            Err(_) => v.into(),
        },
        _ => v
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '@' })
            .collect(),
    }
}

fn plain_value(v: Option<&str>) -> String {
    match v {
        None => "NULL".into(),
        Some("") => "(empty)".into(),
        Some(s) => s.into(),
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Compares a query's rows with the expected lines; `Err` explains how they
/// differ.
fn check_results(
    rows: Vec<Vec<Option<String>>>,
    types: &[DefaultColumnType],
    sort: SortMode,
    expected: &[String],
    format: Format,
    hash_threshold: usize,
) -> Result<(), String> {
    let mut values: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| match format {
                    Format::Sqlite => sqlite_value(
                        v.as_deref(),
                        types.get(i).unwrap_or(&DefaultColumnType::Text),
                    ),
                    Format::Rs => plain_value(v.as_deref()),
                })
                .collect()
        })
        .collect();
    match sort {
        SortMode::NoSort => {}
        SortMode::RowSort => values.sort(),
        SortMode::ValueSort => {
            let mut flat: Vec<String> = values.into_iter().flatten().collect();
            flat.sort();
            values = flat.into_iter().map(|v| vec![v]).collect();
        }
    }
    let flat: Vec<&String> = values.iter().flatten().collect();
    let hashed = |flat: &[&String]| {
        let mut md5 = Md5::new();
        for v in flat {
            md5.update(v.as_bytes());
            md5.update(b"\n");
        }
        format!("{} values hashing to {:x}", flat.len(), md5.finalize())
    };
    if let [line] = expected
        && line.contains(" values hashing to ")
    {
        let actual = hashed(&flat);
        return if normalize(line) == actual {
            Ok(())
        } else {
            Err(format!("expected {line}, got {actual}"))
        };
    }
    if hash_threshold > 0 && flat.len() > hash_threshold && expected.len() == 1 {
        let actual = hashed(&flat);
        return if normalize(&expected[0]) == actual {
            Ok(())
        } else {
            Err(format!("expected {}, got {actual}", expected[0]))
        };
    }
    let expected_norm: Vec<String> = expected.iter().map(|l| normalize(l)).collect();
    let row_wise: Vec<String> = values.iter().map(|r| normalize(&r.join(" "))).collect();
    if row_wise == expected_norm {
        return Ok(());
    }
    let value_wise: Vec<String> = flat.iter().map(|v| normalize(v)).collect();
    if value_wise == expected_norm {
        return Ok(());
    }
    let mut msg = String::from("results differ\n  expected:\n");
    for l in expected.iter().take(20) {
        let _ = writeln!(msg, "    {l}");
    }
    msg.push_str("  actual:\n");
    for r in row_wise.iter().take(20) {
        let _ = writeln!(msg, "    {r}");
    }
    Err(msg)
}

/// Runs one file against the server at `url` (a libpq-style URL or
/// key=value string). `labels` are added to `postgresql` for
/// `skipif`/`onlyif`. Fails only when the file cannot be read or parsed.
pub async fn run_file(
    path: &Path,
    url: &str,
    labels: &[&str],
    format: Option<Format>,
) -> Result<FileReport, String> {
    let content = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let format = format.unwrap_or_else(|| Format::detect(path, &content));
    let records = sqllogictest::parse_file::<DefaultColumnType>(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut all_labels = vec!["postgresql"];
    all_labels.extend_from_slice(labels);
    let mut conns = Connections {
        url: url.to_string(),
        open: HashMap::new(),
    };
    let mut report = FileReport::default();
    let mut hash_threshold = 0usize;
    let mut default_sort = SortMode::NoSort;
    for record in records {
        match record {
            Record::Statement {
                loc,
                conditions,
                connection,
                sql,
                expected,
                ..
            } => {
                if skipped(&conditions, &all_labels) {
                    report.skipped += 1;
                    continue;
                }
                let result = conns.run(&connection, &sql).await;
                let verdict = match (&expected, result) {
                    (StatementExpect::Ok, Ok(_)) => Ok(()),
                    (StatementExpect::Count(n), Ok(Output::Count(c))) if *n == c => Ok(()),
                    (StatementExpect::Count(n), Ok(Output::Count(c))) => {
                        Err(format!("expected {n} rows affected, got {c}"))
                    }
                    (StatementExpect::Count(_), Ok(Output::Rows(_))) => {
                        Err("expected a row count, got rows".into())
                    }
                    (StatementExpect::Error(e), Err(err))
                        if e.is_match(&err.message, err.code.as_deref()) =>
                    {
                        Ok(())
                    }
                    (StatementExpect::Error(e), Err(err)) => Err(format!(
                        "expected error {e}, got: {} ({})",
                        err.message,
                        err.code.unwrap_or_default()
                    )),
                    (StatementExpect::Error(_), Ok(_)) => {
                        Err("expected an error, but it succeeded".into())
                    }
                    (_, Err(err)) => Err(format!(
                        "{} ({})",
                        err.message,
                        err.code.unwrap_or_default()
                    )),
                };
                tally(&mut report, verdict, loc.to_string(), sql);
            }
            Record::Query {
                loc,
                conditions,
                connection,
                sql,
                expected,
                ..
            } => {
                if skipped(&conditions, &all_labels) {
                    report.skipped += 1;
                    continue;
                }
                let result = conns.run(&connection, &sql).await;
                let verdict = match (expected, result) {
                    (QueryExpect::Error(e), Err(err))
                        if e.is_match(&err.message, err.code.as_deref()) =>
                    {
                        Ok(())
                    }
                    (QueryExpect::Error(e), Err(err)) => Err(format!(
                        "expected error {e}, got: {} ({})",
                        err.message,
                        err.code.unwrap_or_default()
                    )),
                    (QueryExpect::Error(_), Ok(_)) => {
                        Err("expected an error, but it succeeded".into())
                    }
                    (QueryExpect::Results { .. }, Err(err)) => Err(format!(
                        "{} ({})",
                        err.message,
                        err.code.unwrap_or_default()
                    )),
                    (QueryExpect::Results { .. }, Ok(Output::Count(_))) => {
                        Err("expected rows, got a command".into())
                    }
                    (
                        QueryExpect::Results {
                            types,
                            sort_mode,
                            results,
                            ..
                        },
                        Ok(Output::Rows(rows)),
                    ) => check_results(
                        rows,
                        &types,
                        sort_mode.unwrap_or(default_sort),
                        &results,
                        format,
                        hash_threshold,
                    ),
                };
                tally(&mut report, verdict, loc.to_string(), sql);
            }
            Record::HashThreshold { threshold, .. } => hash_threshold = threshold as usize,
            Record::Control(sqllogictest::Control::SortMode(m)) => default_sort = m,
            Record::Halt { .. } => break,
            Record::Sleep { duration, .. } => tokio::time::sleep(duration).await,
            Record::Include { .. } | Record::System { .. } | Record::Let { .. } => {
                report.skipped += 1
            }
            _ => {}
        }
    }
    Ok(report)
}

fn tally(report: &mut FileReport, verdict: Result<(), String>, location: String, sql: String) {
    match verdict {
        Ok(()) => report.passed += 1,
        Err(reason) => {
            report.failed += 1;
            report.failures.push(Failure {
                location,
                sql,
                reason,
            });
        }
    }
}

/// Prints a file's report the way `mako slt` shows it.
pub fn print_report(name: &str, report: &FileReport, max_failures: usize) {
    let status = if report.failed == 0 { "ok  " } else { "FAIL" };
    println!(
        "{status} {name}: {} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    for f in report.failures.iter().take(max_failures) {
        println!(
            "  at {}:\n    {}\n  {}",
            f.location,
            f.sql.replace('\n', "\n    "),
            f.reason.trim_end().replace('\n', "\n  ")
        );
    }
    if report.failures.len() > max_failures {
        println!(
            "  ... and {} more failures",
            report.failures.len() - max_failures
        );
    }
}
