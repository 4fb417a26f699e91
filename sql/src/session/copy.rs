//! `COPY … FROM STDIN` and `COPY … TO STDOUT` (text and CSV): the session
//! half. The wire protocol hands the data over in pieces
//! ([`Session::copy_data`]); rows are inserted in batches as they are
//! parsed, in the explicit transaction or in one implicit transaction for
//! the whole COPY (all or nothing, as in PostgreSQL), so the input is never
//! held whole — only the transaction's buffered writes are.

use std::sync::Arc;

use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;
use txn::Txn;

use super::{Outcome, Session};
use crate::bind::Binder;
use crate::bind::expr::{ident, object_name};
use crate::catalog::{self, Table};
use crate::copy::{Options, Parser, Record};
use crate::exec::InsertSource;
use crate::expr::Expr;
use crate::types::cast::cast;
use crate::types::text::format_value;
use crate::types::{DataType, Value};

/// Rows inserted per batch.
const BATCH: usize = 1000;

/// A `COPY … FROM STDIN` in progress.
pub(super) struct CopyIn {
    table: Arc<Table>,
    /// The table column of each field, in the data's order.
    targets: Vec<usize>,
    /// Every column's default (used where no field is given).
    defaults: Vec<(Expr, DataType)>,
    parser: Parser,
    /// Parsed rows not yet inserted.
    batch: Vec<Record>,
    /// Rows inserted so far.
    rows: u64,
    /// The first error: later data is ignored and COPY fails with it.
    error: Option<Error>,
    /// The transaction of a COPY outside a transaction block.
    implicit: Option<Txn>,
}

/// What starting a COPY asks of the wire protocol.
pub(super) enum Started {
    /// Send CopyInResponse with this many columns, then data.
    In { columns: usize, csv: bool },
    /// Done already (inline data, or COPY TO): this is the outcome.
    Done(Outcome),
}

impl Session {
    /// Runs a `COPY` statement: starts a COPY FROM STDIN, or runs a COPY
    /// TO STDOUT whole.
    pub(super) fn start_copy(&mut self, stmt: &ast::Statement) -> Result<Started> {
        let ast::Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            payload,
        } = stmt
        else {
            return Err(Error::internal("not a COPY statement"));
        };
        let opts = Options::from_ast(options, legacy_options)?;
        match (to, target) {
            (true, ast::CopyTarget::Stdout) => self.copy_out(source, opts).map(Started::Done),
            (false, ast::CopyTarget::Stdin) => {
                let ast::CopySource::Table {
                    table_name,
                    columns,
                } = source
                else {
                    bail!(Syntax, "COPY FROM needs a table");
                };
                let csv = opts.csv;
                let n = self.copy_in_begin(table_name, columns, opts)?;
                match payload {
                    Some(p) => {
                        self.copy_data(p.data.as_bytes());
                        self.copy_done().map(Started::Done)
                    }
                    None => Ok(Started::In { columns: n, csv }),
                }
            }
            (_, ast::CopyTarget::File { .. } | ast::CopyTarget::Program { .. }) => bail!(
                InsufficientPrivilege,
                "COPY to or from a file or program is not allowed: use COPY … FROM STDIN / TO STDOUT (psql's \\copy)"
            ),
            _ => bail!(Syntax, "COPY FROM goes with STDIN, COPY TO with STDOUT"),
        }
    }

    /// `COPY table [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`: the
    /// rows formatted, as one text.
    fn copy_out(&mut self, source: &ast::CopySource, opts: Options) -> Result<Outcome> {
        let query = match source {
            ast::CopySource::Query(q) => ast::Statement::Query(q.clone()),
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let cols = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let sql = format!("SELECT {cols} FROM {table_name}");
                super::parse(&sql)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::internal("COPY's query did not parse"))?
            }
        };
        let p = self.prepare_ast(Some(query), &[])?;
        let Outcome::Rows { columns, rows, .. } = self.execute(&p, &[])? else {
            return Err(Error::internal("COPY's query returned no rows"));
        };
        let mut data = Vec::with_capacity(rows.len().max(1));
        let mut text = String::new();
        if opts.header {
            let names: Vec<Option<String>> = columns.iter().map(|c| Some(c.name.clone())).collect();
            opts.format_row(&names, &mut text);
        }
        for row in &rows {
            let fields: Vec<Option<String>> = row
                .iter()
                .zip(&columns)
                .map(|(v, c)| format_value(v, c.ty))
                .collect();
            opts.format_row(&fields, &mut text);
            data.push(std::mem::take(&mut text));
        }
        if !text.is_empty() {
            data.push(text); // a header with no rows
        }
        Ok(Outcome::CopyOut {
            columns: columns.len(),
            csv: opts.csv,
            data,
            rows: rows.len() as u64,
        })
    }

    /// Starts `COPY table [(columns)] FROM STDIN`: returns the number of
    /// columns the data has.
    fn copy_in_begin(
        &mut self,
        table_name: &ast::ObjectName,
        columns: &[ast::Ident],
        opts: Options,
    ) -> Result<usize> {
        if self.failed {
            return Err(super::in_failed_transaction());
        }
        let mut implicit = None;
        let txn = match self.txn.as_mut() {
            Some(t) => t,
            None => implicit.insert(self.db.begin()),
        };
        let name = object_name(table_name)?;
        let table = catalog::require_table(txn, &name)?;
        let targets: Vec<usize> = if columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            let mut seen = Vec::new();
            for c in columns {
                let n = ident(c);
                let Some(i) = table.column_index(&n) else {
                    bail!(
                        UndefinedColumn,
                        "column \"{n}\" of relation \"{}\" does not exist",
                        table.name
                    );
                };
                if seen.contains(&i) {
                    bail!(DuplicateColumn, "column \"{n}\" specified more than once");
                }
                seen.push(i);
            }
            seen
        };
        let mut binder = Binder::new(txn, &[]).with_identity(&self.identity);
        let defaults = table
            .columns
            .iter()
            .map(|c| binder.column_default(c))
            .collect::<Result<Vec<_>>>()?;
        let n = targets.len();
        self.copy = Some(CopyIn {
            table,
            targets,
            defaults,
            parser: Parser::new(opts),
            batch: Vec::new(),
            rows: 0,
            error: None,
            implicit,
        });
        Ok(n)
    }

    /// A COPY FROM STDIN left without CopyDone or CopyFail (the client sent
    /// another message): it fails, and so does the transaction block it
    /// was in, as in PostgreSQL; an implicit transaction just goes.
    pub(super) fn abandon_copy(&mut self) {
        if self.copy.take().is_some() {
            self.note_error();
        }
    }

    /// A piece of COPY data. An error is kept and reported by
    /// [`Session::copy_done`] (the client sends all its data first).
    pub fn copy_data(&mut self, data: &[u8]) {
        let Some(mut c) = self.copy.take() else {
            return;
        };
        if c.error.is_none() {
            match c.parser.feed(data) {
                Ok(records) => {
                    c.batch.extend(records);
                    if c.batch.len() >= BATCH
                        && let Err(e) = self.insert_batch(&mut c)
                    {
                        c.error = Some(e);
                    }
                }
                Err(e) => c.error = Some(e),
            }
        }
        self.copy = Some(c);
    }

    /// The end of the COPY data: inserts what is left and, outside a
    /// transaction block, commits. Returns `COPY n`.
    pub fn copy_done(&mut self) -> Result<Outcome> {
        let Some(mut c) = self.copy.take() else {
            bail!(Protocol, "CopyDone without a COPY in progress");
        };
        let result = (|| {
            if let Some(e) = c.error.take() {
                return Err(e);
            }
            let last = c.parser.finish()?;
            c.batch.extend(last);
            self.insert_batch(&mut c)?;
            if let Some(txn) = c.implicit.take() {
                self.finish(txn)?;
            }
            Ok(Outcome::Command {
                tag: "COPY",
                rows: Some(c.rows),
            })
        })();
        if result.is_err() {
            self.note_error();
        }
        result
    }

    /// The client gave up the COPY (CopyFail): nothing of it stays.
    pub fn copy_fail(&mut self, message: &str) -> Error {
        self.copy = None;
        self.note_error();
        Error::new(
            ErrorKind::QueryCanceled,
            format!("COPY from stdin failed: {message}"),
        )
    }

    /// Inserts the parsed rows waiting in `c`.
    fn insert_batch(&mut self, c: &mut CopyIn) -> Result<()> {
        if c.batch.is_empty() {
            return Ok(());
        }
        let table = c.table.clone();
        let mut rows = Vec::with_capacity(c.batch.len());
        for (line, fields) in c.batch.drain(..) {
            if fields.len() != c.targets.len() {
                let what = if fields.len() < c.targets.len() {
                    "missing data for column"
                } else {
                    "extra data after last expected column"
                };
                let col = c.targets.get(fields.len()).map_or(String::new(), |&i| {
                    format!(" \"{}\"", table.columns[i].name)
                });
                bail!(
                    BadCopyFileFormat,
                    "{what}{} (COPY {}, line {line})",
                    if fields.len() < c.targets.len() {
                        col
                    } else {
                        String::new()
                    },
                    table.name
                );
            }
            let mut row = c.defaults.clone();
            for (field, &i) in fields.into_iter().zip(&c.targets) {
                let column = &table.columns[i];
                let value = match field {
                    None => Value::Null,
                    Some(text) => cast(Value::text(text), DataType::Unknown, column.ty, true)
                        .map_err(|e| {
                            Error::new(
                                e.kind,
                                format!(
                                    "{} (COPY {}, line {line}, column {})",
                                    e.message, table.name, column.name
                                ),
                            )
                        })?,
                };
                row[i] = (Expr::Const(value), column.ty);
            }
            rows.push(row);
        }
        let source = InsertSource::Rows(rows);
        let bounds = self.bounds();
        let limits = bounds.limits();
        let txn = match (c.implicit.as_mut(), self.txn.as_mut()) {
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => return Err(Error::internal("COPY without a transaction")),
        };
        let (n, _) = limits.ctx(txn, &[]).insert(&table, &source, &None, &None)?;
        c.rows += n;
        Ok(())
    }
}
