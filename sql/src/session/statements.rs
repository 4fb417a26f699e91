//! From SQL text to statements: parsing (with the few rewrites the parser
//! needs) and sorting statements into the kinds the session runs.

use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::Kind;
use crate::bind::expr::ident;

/// `FREEZE ON` / `FREEZE OFF` in a COPY's options as `FREEZE TRUE` /
/// `FREEZE FALSE`, outside quotes.
pub(super) fn freeze_on_as_true(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut quoted = false;
    while i < sql.len() {
        let rest = &lower[i..];
        let c = sql[i..].chars().next().unwrap_or(' ');
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && rest.starts_with("freeze") {
            let after = rest[6..].trim_start();
            let gap = rest.len() - 6 - after.len();
            let word_end = |w: &str| {
                after.starts_with(w)
                    && after[w.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            };
            let replaced = [("on", "TRUE"), ("off", "FALSE")]
                .into_iter()
                .find(|(word, _)| gap > 0 && word_end(word));
            if let Some((word, value)) = replaced {
                out.push_str("FREEZE ");
                out.push_str(value);
                i += 6 + gap + word.len();
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Parses SQL text into statements; a syntax error is 42601.
pub fn parse(sql: &str) -> Result<Vec<ast::Statement>> {
    // PostgreSQL's `VACUUM [(options)] [ANALYZE] [VERBOSE] [table, ...]`
    // has forms the parser does not know; it does nothing here, so any
    // statement of its own that starts with VACUUM is one.
    let body = sql.trim().trim_end_matches(';').trim_end();
    if body
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("vacuum"))
        && body[6..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        && !body.contains(';')
    {
        return Ok(vec![ast::Statement::Vacuum(ast::VacuumStatement {
            full: false,
            sort_only: false,
            delete_only: false,
            reindex: false,
            recluster: false,
            table_name: None,
            threshold: None,
            boost: false,
        })]);
    }
    // `COPY … WITH (FREEZE ON)` (pgbench -i): the parser takes only
    // TRUE/FALSE there; FREEZE does nothing here anyway.
    let rewritten;
    let sql = if body
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
    {
        rewritten = freeze_on_as_true(sql);
        rewritten.as_str()
    } else {
        sql
    };
    Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        if let sqlparser::parser::ParserError::RecursionLimitExceeded = e {
            return Error::new(
                ErrorKind::StackDepth,
                "stack depth limit exceeded (the statement nests parentheses, \
                 subqueries or function calls too deeply)",
            );
        }
        let msg = e.to_string();
        let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
        Error::new(ErrorKind::Syntax, format!("syntax error: {msg}"))
    })
}

pub(super) fn classify(stmt: &ast::Statement) -> Result<Kind> {
    use ast::Statement as S;
    Ok(match stmt {
        S::StartTransaction { begin, .. } => {
            Kind::Begin(if *begin { "BEGIN" } else { "START TRANSACTION" })
        }
        S::Commit { chain: false, .. } => Kind::Commit,
        S::Rollback {
            chain: false,
            savepoint: None,
        } => Kind::Rollback,
        S::Rollback {
            chain: false,
            savepoint: Some(name),
        } => Kind::RollbackTo(ident(name)),
        S::Savepoint { name } => Kind::Savepoint(ident(name)),
        S::ReleaseSavepoint { name } => Kind::Release(ident(name)),
        S::Close { cursor } => Kind::Close(match cursor {
            ast::CloseCursor::All => None,
            ast::CloseCursor::Specific { name } => Some(ident(name)),
        }),
        S::UNLISTEN { .. } => Kind::Unlisten,
        S::Copy { .. } => Kind::Copy,
        S::Commit { .. } | S::Rollback { .. } => {
            bail!(FeatureNotSupported, "AND CHAIN is not supported yet")
        }
        S::Set(ast::Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(ident)
                .collect::<Vec<_>>()
                .join(".");
            let value = values
                .iter()
                .map(setting_value)
                .collect::<Vec<_>>()
                .join(", ");
            Kind::Set(name, value)
        }
        S::Set(ast::Set::SetTimeZone { value, .. }) => {
            Kind::Set("timezone".into(), setting_value(value))
        }
        S::Set(ast::Set::SetNames { charset_name, .. }) => {
            Kind::Set("client_encoding".into(), charset_name.value.clone())
        }
        // Every isolation level runs serializable, so the setting stays so.
        S::Set(ast::Set::SetTransaction { .. }) => {
            Kind::Set("transaction_isolation".into(), "serializable".into())
        }
        S::ShowVariable { variable } => {
            // The parser splits both `SHOW a.b` and `SHOW TIME ZONE` into
            // words: the multi-word forms are PostgreSQL's few fixed ones.
            let words = variable.iter().map(ident).collect::<Vec<_>>();
            match words.join(" ").as_str() {
                "all" => Kind::ShowAll,
                "transaction isolation level" => Kind::Show("transaction_isolation".into()),
                "time zone" => Kind::Show("timezone".into()),
                _ => Kind::Show(words.join(".")),
            }
        }
        S::Deallocate { name, .. } => Kind::Deallocate(
            (!(name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all")))
                .then(|| ident(name)),
        ),
        S::Discard { object_type } => Kind::Discard(*object_type),
        S::Reset(r) => match &r.reset {
            ast::Reset::ALL => Kind::Reset(None),
            ast::Reset::ConfigurationParameter(name) => Kind::Reset(Some(
                name.0
                    .iter()
                    .filter_map(|p| p.as_ident())
                    .map(ident)
                    .collect::<Vec<_>>()
                    .join("."),
            )),
            other => bail!(FeatureNotSupported, "RESET {other:?} is not supported"),
        },
        _ => Kind::Data,
    })
}

fn setting_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}
