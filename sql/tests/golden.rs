//! Transcript tests: each file in `tests/golden/` is a session transcript.
//! Lines starting with `>` are statements (prefix `@name>` runs them in
//! another session, for concurrency scenarios; `@@shards N` at the top sets
//! the shard count); the lines after a statement are its output, as this test
//! renders it. Lines starting with `#` are comments.
//!
//! The test re-runs every statement and compares the whole transcript.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p
//! sql --test golden`, then read the diff.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use sql::types::text::format_value;
use sql::{Outcome, Session};
use txn::Db;

fn render(result: &kv::Result<Outcome>, out: &mut String) {
    match result {
        Ok(Outcome::Rows { columns, rows, tag }) => {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            let _ = writeln!(out, "{}", names.join(" | "));
            for r in rows {
                let cells: Vec<String> = r
                    .iter()
                    .zip(columns)
                    .map(|(v, c)| format_value(v, c.ty).unwrap_or_else(|| "NULL".into()))
                    .collect();
                let _ = writeln!(out, "{}", cells.join(" | "));
            }
            let _ = writeln!(out, "({tag} {})", rows.len());
        }
        Ok(Outcome::Command { tag, rows }) => match rows {
            Some(n) => {
                let _ = writeln!(out, "{tag} {n}");
            }
            None => {
                let _ = writeln!(out, "{tag}");
            }
        },
        Ok(Outcome::Empty) => out.push_str("(empty)\n"),
        Ok(Outcome::CopyIn { columns, .. }) => {
            let _ = writeln!(out, "(copy in, {columns} columns)");
        }
        Ok(Outcome::CopyOut { data, rows, .. }) => {
            out.push_str(&data.concat());
            let _ = writeln!(out, "(COPY {rows})");
        }
        Err(e) => {
            let _ = writeln!(out, "ERROR ({:?}): {}", e.kind, e.message);
        }
    }
}

fn run_file(path: &Path) -> (String, String) {
    let original = std::fs::read_to_string(path).unwrap();
    let shards = original
        .lines()
        .find_map(|l| l.strip_prefix("@@shards "))
        .map_or(1, |n| n.trim().parse().unwrap());
    let db = Db::in_process(shards);
    let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
    let mut out = String::new();
    for line in original.lines() {
        let (who, stmt) = if let Some(rest) = line.strip_prefix('>') {
            ("main".to_string(), rest.trim())
        } else if let Some(rest) = line.strip_prefix('@').filter(|r| !r.starts_with('@')) {
            match rest.split_once('>') {
                Some((name, stmt)) => (name.trim().to_string(), stmt.trim()),
                None => continue,
            }
        } else {
            if line.starts_with('#') || line.starts_with("@@") {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        out.push_str(line);
        out.push('\n');
        let session = sessions
            .entry(who)
            .or_insert_with(|| Session::new(db.clone()));
        for r in session.execute_script(stmt) {
            render(&r, &mut out);
        }
    }
    (original, out)
}

#[test]
fn golden_transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let (original, actual) = run_file(&path);
        if update {
            std::fs::write(&path, &actual).unwrap();
        } else if original != actual {
            let diff: Vec<String> = original
                .lines()
                .zip(actual.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .map(|(i, (a, b))| format!("  line {}:\n    want: {a}\n    got:  {b}", i + 1))
                .collect();
            failures.push(format!("{}:\n{}", path.display(), diff.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "transcripts differ (UPDATE_GOLDEN=1 to regenerate):\n{}",
        failures.join("\n")
    );
}
