//! Shared helpers for Mako's benchmarks. Each benchmark prints its figures
//! together with a baseline measured in the same run, and the ratio.

use std::time::{Duration, Instant};

/// The benchmarks allocate with mimalloc, as the `mako` binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
