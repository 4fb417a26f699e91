//! The cost of durability, measured in one run:
//!
//! 1. A write-heavy workload — each transaction updates one row and inserts
//!    another (about 150 bytes each), through the `txn` API on a node with
//!    4 logged shards, from many threads (commits block on the disk, so
//!    there are more threads than cores) — with `--sync group` (the default:
//!    acknowledged after an fsync shared by the commits queued together),
//!    with `--sync off` (written, not synced) and with `--sync always` (one
//!    fsync per commit). Prints txn/s of each, the ratio group/off (Mako's
//!    persistence costs about 2% in the paper; the target here is >= 0.9)
//!    and the average group-commit batch.
//! 2. Recovery: a data directory holding about RECOVERY_MB (default 256) MB
//!    of rows is closed and opened again; prints the time it took and the
//!    rate in seconds per GB.
//!
//! For reference, the same workload runs first on shards without a log
//! (in memory only).
//!
//! Run: `cargo bench -p benches --bench durability` (BENCH_SECS seconds per
//! configuration, default 3; BENCH_THREADS committing threads, default 32).
//! Data directories go to the system temp dir and are removed afterwards.

use std::sync::Arc;
use std::time::Instant;

use benches::writes::{self, key, row};
use benches::{TempDir, bench_duration};
use kv::persist::{self, Options, SyncMode};
use txn::Db;

const SHARDS: usize = 4;

fn threads() -> usize {
    benches::env_usize("BENCH_THREADS", 32)
}

/// Opens a fresh directory with `sync`, loads the accounts, runs the
/// workload; returns (txn/s, average entries per log write).
fn workload(sync: SyncMode) -> (f64, f64) {
    let dir = TempDir::new(sync.name());
    let opts = Options {
        sync,
        shards: Some(SHARDS),
        ..Options::default()
    };
    let (log, shards, _) = persist::open(&dir.0, opts).expect("open");
    let db = Db::logged(shards, log.clone(), 0);
    let (entries0, writes0) = log.stats();
    let tps = transfers(&db);
    let (entries, writes) = log.stats();
    log.close();
    let batch = (entries - entries0) as f64 / (writes - writes0).max(1) as f64;
    (tps, batch)
}

/// Loads the accounts into `db` and runs the workload; returns txn/s.
fn transfers(db: &Arc<Db>) -> f64 {
    writes::load(db);
    writes::run(db, threads(), bench_duration(), None)
}

/// Fills a directory with about `mb` MB of rows, closes it, and times the
/// reopening; returns (seconds, GB recovered).
fn recovery(mb: u64) -> (f64, f64) {
    let dir = TempDir::new("recovery");
    let opts = || Options {
        sync: SyncMode::Off,
        shards: Some(SHARDS),
        ..Options::default()
    };
    let rows = mb * 1_000_000 / 180;
    {
        let (log, shards, _) = persist::open(&dir.0, opts()).expect("open");
        let db = Db::logged(shards, log.clone(), 0);
        for chunk in (0..rows).collect::<Vec<_>>().chunks(2000) {
            let mut t = db.begin();
            for &i in chunk {
                let (k, p) = key(1000, i);
                t.put(k, row(i), p);
            }
            t.commit().expect("fill");
        }
        log.close();
    }
    let started = Instant::now();
    let (log, shards, recovered) = persist::open(&dir.0, opts()).expect("reopen");
    let secs = started.elapsed().as_secs_f64();
    let loaded: usize = shards.iter().map(|s| s.record_count()).sum();
    assert_eq!(loaded as u64, rows, "every row recovered");
    log.close();
    (secs, recovered.bytes as f64 / 1e9)
}

fn main() {
    println!(
        "durability: {} s per configuration, {} committing threads, {SHARDS} shards, temp dir {}",
        bench_duration().as_secs_f64(),
        threads(),
        std::env::temp_dir().display()
    );
    let memory = transfers(&Db::in_process(SHARDS));
    println!("  no log (memory) {memory:>9.0} txn/s   (reference: nothing persisted)");
    let mut results = Vec::new();
    for sync in [SyncMode::Off, SyncMode::Group, SyncMode::Always] {
        let (tps, batch) = workload(sync);
        println!(
            "  --sync {:<7} {tps:>9.0} txn/s   {batch:>6.1} commits per log write",
            sync.name()
        );
        results.push(tps);
    }
    println!(
        "ratio group/off: {:.2}x (target >= 0.9); always/off: {:.2}x; group/no log: {:.2}x",
        results[1] / results[0],
        results[2] / results[0],
        results[1] / memory
    );
    let mb = std::env::var("RECOVERY_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let (secs, gb) = recovery(mb);
    println!(
        "recovery: {gb:.3} GB of rows in {secs:.2} s = {:.1} s per GB",
        secs / gb.max(1e-9)
    );
}
