//! Shared helpers for Mako's benchmarks. Each benchmark prints its figures
//! together with a baseline measured in the same run, and the ratio.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv::keycode::encode_int;
use kv::keys::partition_hash;
use txn::{Db, Placement};

/// The benchmarks allocate with mimalloc, as the `mako` binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The number in environment variable `name`, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of numbers from the environment (`32,128`),
/// or `default` when unset or unreadable.
pub fn env_usizes(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.split(',').map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// How long each measured configuration runs (`BENCH_SECS`, default 3).
pub fn bench_duration() -> Duration {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// Runs `work` on `threads` threads until `duration` passes; each call
/// returns how many operations it completed and how many it had to retry.
/// Returns (operations per second, retries per second).
pub fn run_threads<F>(threads: usize, duration: Duration, work: F) -> (f64, f64)
where
    F: Fn(usize, &dyn Fn() -> bool) -> (u64, u64) + Sync,
{
    let start = Instant::now();
    let deadline = start + duration;
    let keep_going = || Instant::now() < deadline;
    let (ops, retries) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn({
                    let work = &work;
                    let keep_going = &keep_going;
                    move || work(t, keep_going)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let secs = start.elapsed().as_secs_f64();
    (ops as f64 / secs, retries as f64 / secs)
}

/// A small deterministic PRNG (xorshift64*), so runs are comparable.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Runs `body` in a fresh transaction of `db` until it commits; returns how
/// many serialization failures were retried on the way. Any other error is
/// a bug in the benchmark.
pub fn commit_retrying(db: &std::sync::Arc<txn::Db>, mut body: impl FnMut(&mut txn::Txn)) -> u64 {
    let mut retried = 0;
    loop {
        let mut t = db.begin();
        body(&mut t);
        match t.commit() {
            Ok(_) => return retried,
            Err(e) if e.is_retryable() => retried += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh (empty) directory path for `name`.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mako-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The write-heavy workload of the durability and replication benchmarks:
/// each transaction updates one of `ACCOUNTS` rows and inserts a new one
/// (about 150 bytes each).
pub mod writes {
    use super::*;

    /// Rows updated by the workload.
    pub const ACCOUNTS: u64 = 100_000;

    /// The key and placement of row `i` of `table`.
    pub fn key(table: u32, i: u64) -> (Vec<u8>, Placement) {
        let mut col = Vec::new();
        encode_int(&mut col, i as i64);
        let mut k = kv::keys::index_prefix(table, 1);
        k.extend_from_slice(&col);
        (k, Placement::Partitioned(partition_hash(&col)))
    }

    /// A 150-byte row holding `n`.
    pub fn row(n: u64) -> Arc<[u8]> {
        let mut v = n.to_le_bytes().to_vec();
        v.resize(150, b'x');
        Arc::from(v)
    }

    /// Loads the accounts.
    pub fn load(db: &Arc<Db>) {
        for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(1000) {
            let mut t = db.begin();
            for &i in chunk {
                let (k, p) = key(1000, i);
                t.put(k, row(0), p);
            }
            t.commit().expect("load");
        }
    }

    /// Runs the workload on `threads` threads for `duration`; returns txn/s
    /// and, when `latencies` is given, adds each commit's latency (from
    /// BEGIN to the acknowledgement, retries included) to it.
    pub fn run(
        db: &Arc<Db>,
        threads: usize,
        duration: Duration,
        latencies: Option<&Mutex<Vec<Duration>>>,
    ) -> f64 {
        let (tps, _) = run_threads(threads, duration, |t, go| {
            let mut rng = Rng::new(t as u64 + 7);
            let (mut done, mut retried) = (0, 0);
            let mut n = 0u64;
            let mut mine = Vec::new();
            while go() {
                n += 1;
                let (k, p) = key(1000, rng.below(ACCOUNTS));
                let (ik, ip) = key(1001, ((t as u64) << 40) | n);
                let started = Instant::now();
                retried += commit_retrying(db, |txn| {
                    let v = txn.get(&k, p).expect("read").expect("loaded");
                    let count = u64::from_le_bytes(v[..8].try_into().expect("8 bytes")) + 1;
                    txn.put(k.clone(), row(count), p);
                    txn.put(ik.clone(), row(n), ip);
                });
                if latencies.is_some() {
                    mine.push(started.elapsed());
                }
                done += 1;
            }
            if let Some(l) = latencies {
                l.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            }
            (done, retried)
        });
        tps
    }
}
