//! TPC-C, native: the five transactions as stored procedures calling
//! `txn::Txn` directly (no SQL), the way Silo's and Mako's own TPC-C drivers
//! call their engines, on one in-process shard.
//!
//! Two configurations run in turn, each on a freshly loaded database: 1
//! thread with 1 warehouse, then 2 threads with 2 warehouses. Each thread is
//! bound to its own home warehouse and runs the standard mix (45% New-Order,
//! 43% Payment, 4% each of Order-Status, Delivery and Stock-Level) without
//! keying or think time; with 2 warehouses 1% of order lines and 15% of
//! payments go to the other warehouse. A transaction that fails with a
//! retryable error (an OCC abort) runs again with the same inputs until it
//! commits. New-Orders rolled back by their unused item (1%) count as
//! completed, as in the spec. Departures from the spec: Delivery runs
//! inline, all ten districts in one transaction, rather than queued; each
//! thread's Stock-Level uses one fixed district, as one terminal would.
//!
//! Printed per configuration: load time, transactions per second (total and
//! per thread), tpmC (New-Orders per minute), the abort rate (retried
//! attempts over all attempts), the measured mix, and consistency
//! conditions 1-4 of clause 3.3.2, checked after the run (the benchmark
//! panics if any fails). The baseline is the 1-thread run: the ratio
//! printed is 2-thread / 1-thread txn/s, measured in the same run.
//! Published figures of Mako and Silo are printed for reference only; they
//! were not measured here.
//!
//! Run: `cargo bench -p benches --bench tpcc_native` (BENCH_SECS=seconds per
//! configuration, default 3).
//!
//! Layout, in `tpcc_native/`: `schema` (keys and rows), `random` (TPC-C
//! inputs), `load` (the population), `txns` (the five procedures and the
//! terminal), `check` (consistency conditions).

#[path = "tpcc_native/check.rs"]
mod check;
#[path = "tpcc_native/load.rs"]
mod load;
#[path = "tpcc_native/random.rs"]
mod random;
#[path = "tpcc_native/schema.rs"]
mod schema;
#[path = "tpcc_native/txns.rs"]
mod txns;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use benches::{bench_duration, run_threads};
use txn::Db;

use txns::{Kind, Outcome, Terminal};

/// Microseconds since the Unix epoch (O_ENTRY_D, H_DATE, OL_DELIVERY_D).
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// What one configuration measured.
struct Measured {
    /// Threads, and warehouses.
    threads: usize,
    /// Completed transactions per second, all threads.
    tps: f64,
    /// Retried attempts per second, all threads.
    retries_per_sec: f64,
    /// Completed transactions by profile, in [`Kind::ALL`] order.
    completed: [u64; 5],
    /// New-Orders rolled back by their unused item.
    rolled_back: u64,
}

impl Measured {
    /// New-Orders per minute.
    fn tpmc(&self) -> f64 {
        let total: u64 = self.completed.iter().sum();
        self.tps * 60.0 * self.completed[Kind::NewOrder as usize] as f64 / total.max(1) as f64
    }

    /// Retried attempts over all attempts.
    fn abort_rate(&self) -> f64 {
        self.retries_per_sec / (self.tps + self.retries_per_sec)
    }
}

/// Runs the mix on `threads` threads, thread `t` at home in warehouse
/// `t + 1`, for the benchmark duration.
fn measure(db: &Arc<Db>, threads: usize) -> Measured {
    let completed: [AtomicU64; 5] = Default::default();
    let rolled_back = AtomicU64::new(0);
    let (tps, retries_per_sec) = run_threads(threads, bench_duration(), |t, keep_going| {
        let mut terminal = Terminal::new(t, threads as i64);
        let mut done = [0u64; 5];
        let (mut rolled, mut retried) = (0, 0);
        while keep_going() {
            let request = terminal.next_request();
            let outcome = loop {
                match request.execute(db) {
                    Ok(outcome) => break outcome,
                    Err(e) if e.is_retryable() => retried += 1,
                    Err(e) => panic!("{}: {e}; request {request:?}", request.kind().name()),
                }
            };
            done[request.kind() as usize] += 1;
            if outcome == Outcome::RolledBack {
                rolled += 1;
            }
        }
        for (total, n) in completed.iter().zip(done) {
            total.fetch_add(n, Ordering::Relaxed);
        }
        rolled_back.fetch_add(rolled, Ordering::Relaxed);
        (done.iter().sum(), retried)
    });
    Measured {
        threads,
        tps,
        retries_per_sec,
        completed: completed.map(AtomicU64::into_inner),
        rolled_back: rolled_back.into_inner(),
    }
}

/// Loads, runs and checks one configuration; returns what it measured and
/// whether every consistency condition held.
fn configuration(threads: usize) -> (Measured, bool) {
    let warehouses = threads as i64;
    let db = Db::in_process(1);
    let start = Instant::now();
    load::load(&db, warehouses);
    println!(
        "{threads} thread(s), {warehouses} warehouse(s): loaded in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let m = measure(&db, threads);
    let total: u64 = m.completed.iter().sum();
    let mix: Vec<String> = Kind::ALL
        .iter()
        .zip(m.completed)
        .map(|(k, n)| {
            format!(
                "{} {:.1}%",
                k.name(),
                100.0 * n as f64 / total.max(1) as f64
            )
        })
        .collect();
    println!(
        "  {total} transactions; mix: {}; {:.2}% of New-Orders rolled back (unused item)",
        mix.join(", "),
        100.0 * m.rolled_back as f64 / m.completed[Kind::NewOrder as usize].max(1) as f64
    );
    let conditions = match check::check(&db, warehouses) {
        Ok(conditions) => conditions,
        Err(e) => panic!("the consistency check could not run: {e}"),
    };
    let mut all_hold = true;
    for c in &conditions {
        match &c.violation {
            None => println!("  consistency {:<60} pass", c.statement),
            Some(v) => {
                all_hold = false;
                println!("  consistency {:<60} FAIL: {v}", c.statement);
            }
        }
    }
    println!();
    (m, all_hold)
}

fn main() {
    println!("TPC-C, native stored procedures on txn::Txn, 1 in-process shard");
    println!(
        "{} s per configuration, {} CPUs; full mix, no think time, one home warehouse per thread\n",
        bench_duration().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (one, one_ok) = configuration(1);
    let (two, two_ok) = configuration(2);

    println!(
        "{:<22} {:>10} {:>14} {:>12} {:>11}",
        "configuration", "txn/s", "txn/s/thread", "tpmC", "abort rate"
    );
    for m in [&one, &two] {
        println!(
            "{:<22} {:>10.0} {:>14.0} {:>12.0} {:>10.3}%",
            format!("{0} thread(s), W={0}", m.threads),
            m.tps,
            m.tps / m.threads as f64,
            m.tpmc(),
            100.0 * m.abort_rate()
        );
    }
    println!(
        "scaling, 2 threads / 1 thread (txn/s, same run): {:.2}x\n",
        two.tps / one.tps
    );
    println!("Published reference figures, NOT measured here:");
    println!("  Mako (paper): ~40K TPS per thread on one shard");
    println!("  Silo: ~44K TPS on 1 thread, ~70K TPS on 2 threads, on this kind of machine");

    assert!(
        one_ok && two_ok,
        "a TPC-C consistency condition failed (see above)"
    );
}
