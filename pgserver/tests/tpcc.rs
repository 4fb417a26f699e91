//! A short TPC-C run through the real binaries: `mako tpcc load
//! --foreign-keys`, `run` (prepared, then literal style) and `check`
//! against a `mako start` server with 4 shards (then `check`
//! again after killing it with SIGKILL and restarting it), and, when
//! `TPCC_POSTGRES_URL` names a PostgreSQL database (`./dev test` starts a
//! throwaway PostgreSQL 15 for it), the same against PostgreSQL.
//!
//! TPCC_WAREHOUSES (default 2), TPCC_CONNECTIONS (default 4) and
//! TPCC_SECS (default 20) size the run. The run must complete transactions
//! of every type with no errors, and the consistency conditions must hold
//! afterwards.

use std::path::Path;
use std::process::Command;

mod common;

use common::Mako;

fn setting(name: &str, default: u64) -> String {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
        .to_string()
}

/// Runs `mako tpcc <args>` and returns its stdout, failing the test with
/// the output when it exits unsuccessfully.
fn tpcc(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mako"))
        .arg("tpcc")
        .args(args)
        .output()
        .expect("run mako tpcc");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "mako tpcc {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Load, run and check against the server at `url`.
fn load_run_check(url: &str, report: &Path) {
    let warehouses = setting("TPCC_WAREHOUSES", 2);
    let w = warehouses.as_str();
    tpcc(&["load", "--url", url, "--warehouses", w, "--foreign-keys"]);
    run_check(url, report, w, "prepared", &setting("TPCC_SECS", 20));
    // The same transactions as SQL text over the simple protocol, on the
    // same data: what other TPC-C implementations send.
    let secs = (setting("TPCC_SECS", 20).parse::<u64>().unwrap_or(20) / 2).max(1);
    run_check(url, report, w, "literal", &secs.to_string());
}

/// One run in `style`; every type completes, no errors, conditions hold.
fn run_check(url: &str, report: &Path, w: &str, style: &str, secs: &str) {
    tpcc(&[
        "run",
        "--url",
        url,
        "--warehouses",
        w,
        "--connections",
        &setting("TPCC_CONNECTIONS", 4),
        "--duration",
        secs,
        "--style",
        style,
        "--json",
        report.to_str().expect("utf-8 temp path"),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("report written"))
            .expect("report is JSON");
    assert_eq!(json["errors"], 0, "{json:#}");
    assert!(json["tpmc"].as_f64().unwrap_or(0.0) > 0.0, "{json:#}");
    let kinds = json["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 5, "{json:#}");
    for kind in kinds {
        assert!(kind[1]["completed"].as_u64().unwrap_or(0) > 0, "{json:#}");
    }
    let check = tpcc(&["check", "--url", url, "--warehouses", w]);
    for condition in 1..=4 {
        assert!(
            check.contains(&format!("PASS condition_{condition}")),
            "{check}"
        );
    }
    assert!(!check.contains("FAIL"), "{check}");
}

fn temp_report(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mako-tpcc-{}-{name}.json", std::process::id()))
}

#[test]
fn tpcc_on_mako_with_four_shards() {
    let mut mako = Mako::start(4);
    let report = temp_report("mako");
    load_run_check(&mako.url(), &report);
    let _ = std::fs::remove_file(&report);
    // After a crash and a restart on the same data directory, the database
    // is the same: every condition still holds.
    mako.restart();
    let check = tpcc(&["check", "--url", &mako.url()]);
    assert_eq!(check.matches("PASS").count(), 4, "{check}");
    assert!(mako.terminate().success());
}

#[test]
fn tpcc_on_postgres() {
    let Ok(url) = std::env::var("TPCC_POSTGRES_URL") else {
        eprintln!("skipping: TPCC_POSTGRES_URL is not set (./dev test sets it)");
        return;
    };
    let report = temp_report("postgres");
    load_run_check(&url, &report);
    let _ = std::fs::remove_file(&report);
}
