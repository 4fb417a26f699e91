//! Runs every `.slt` file under `testdata/slt/` over the wire against an
//! in-process server, once with one shard and once with four (so that
//! cross-shard certification runs under SQL too).
//!
//! With `SLT_POSTGRES_URL=<url of a PostgreSQL admin database>`, runs the same
//! files against PostgreSQL instead, each in a fresh database, to check that
//! the expected results are PostgreSQL's (see `scripts/slt-postgres`).
//! `SLT_FILTER=<substring>` runs only matching files. Files under
//! `testdata/slt/sqlite/` are in SQLite's original format.

use std::path::{Path, PathBuf};

use tools::slt::{FileReport, print_report, run_file};
use txn::Db;

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("testdata/slt")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt" || e == "test") {
            out.push(p);
        }
    }
}

async fn against_postgres(admin_url: &str, file: &Path, n: usize) -> Result<FileReport, String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let db = format!("mako_slt_{n}");
    client
        .simple_query(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .map_err(|e| e.to_string())?;
    client
        .simple_query(&format!("CREATE DATABASE {db}"))
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("{admin_url} dbname={db}");
    run_file(file, &url, &[], None).await
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    if let Ok(f) = std::env::var("SLT_FILTER") {
        files.retain(|p| p.to_string_lossy().contains(&f));
    }
    assert!(!files.is_empty(), "no .slt files under {}", root.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let postgres = std::env::var("SLT_POSTGRES_URL").ok();
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut records = 0;
    for (n, file) in files.iter().enumerate() {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let configs: Vec<usize> = if postgres.is_some() {
            vec![0]
        } else {
            vec![1, 4]
        };
        for shards in configs {
            runs += 1;
            let result = rt.block_on(async {
                match &postgres {
                    Some(url) => against_postgres(url, file, n).await,
                    None => {
                        let server = pgserver::server::start("127.0.0.1:0", Db::in_process(shards))
                            .await
                            .unwrap();
                        let url = format!(
                            "host=127.0.0.1 port={} user=mako dbname=mako",
                            server.addr.port()
                        );
                        let r = run_file(file, &url, &["mako"], None).await;
                        server.stop().await;
                        r
                    }
                }
            });
            let target = if postgres.is_some() {
                "postgresql".to_string()
            } else {
                format!("mako, {shards} shard(s)")
            };
            let label = format!("{name} ({target})");
            match result {
                Ok(report) => {
                    print_report(&label, &report, 5);
                    records += report.passed + report.failed;
                    if report.failed > 0 {
                        failures.push(label);
                    }
                }
                Err(e) => {
                    println!("FAIL {label}: {e}");
                    failures.push(label);
                }
            }
        }
    }
    println!(
        "\n{} of {runs} file runs passed ({records} records run)",
        runs - failures.len()
    );
    if !failures.is_empty() {
        println!("failed: {}", failures.join(", "));
        std::process::exit(1);
    }
}
