//! A follower's replay of chosen batches: shards installed one after
//! another against shards installed in parallel (the replay's default),
//! in one run, on replica data directories of 4 shards.
//!
//! Each configuration delivers the same BENCH_BATCHES batches (default
//! 400) of BENCH_ENTRIES entries (default 1000), each entry one 100-byte
//! row on a random shard, through `Persist::deliver` as a follower does,
//! and reports entries applied per second; the checkpoint thread writes
//! them to RocksDB meanwhile, as on a real follower.
//!
//! Run: `cargo bench -p benches --bench replay`.

use std::sync::Arc;
use std::time::Instant;

use benches::{TempDir, env_usize};
use kv::VectorClock;
use kv::log::{LogEntry, StreamValue};
use kv::persist::{Options, SyncMode};

const SHARDS: usize = 4;

/// The batches a leader would have replicated: per shard, clock values in
/// order.
fn batches(count: usize, entries: usize) -> Vec<Vec<LogEntry>> {
    let mut clocks = [0u64; SHARDS];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let value: Arc<[u8]> = Arc::from(vec![7u8; 100]);
    let mut txn = 0;
    (0..count)
        .map(|_| {
            (0..entries)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let shard = (seed % SHARDS as u64) as usize;
                    clocks[shard] += 1;
                    txn += 1;
                    let mut vc = vec![0; SHARDS];
                    vc[shard] = clocks[shard];
                    LogEntry {
                        txn,
                        shard,
                        vc: VectorClock::from_vec(vc),
                        epoch: kv::Epoch(1),
                        writes: vec![(
                            format!("key{:08}", seed % 1_000_000).into_bytes(),
                            Some(value.clone()),
                        )],
                    }
                })
                .collect()
        })
        .collect()
}

/// Entries applied per second.
fn replay(batches: &[Vec<LogEntry>], parallel: bool) -> f64 {
    let dir = TempDir::new(if parallel { "replay-par" } else { "replay-ser" });
    let opts = Options {
        sync: SyncMode::Off,
        shards: Some(SHARDS),
        replica_of: Some("bench".into()),
        parallel_replay: parallel,
        ..Options::default()
    };
    let (persist, _shards, _) = kv::persist::open(&dir.0, opts).expect("open");
    let n: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        let value = StreamValue::Batch(b.clone());
        persist
            .deliver(0, i as u64 + 1, Some(value), false)
            .expect("deliver");
    }
    let secs = started.elapsed().as_secs_f64();
    persist.close();
    n as f64 / secs
}

fn main() {
    let (count, entries) = (
        env_usize("BENCH_BATCHES", 400),
        env_usize("BENCH_ENTRIES", 1000),
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "replay: {count} batches of {entries} entries, {SHARDS} shards, {threads} cores, temp dir {}",
        std::env::temp_dir().display()
    );
    let batches = batches(count, entries);
    let serial = replay(&batches, false);
    println!("  one shard after another {serial:>10.0} entries/s");
    let parallel = replay(&batches, true);
    println!("  shards in parallel       {parallel:>10.0} entries/s");
    println!("  parallel / serial: {:.2}x", parallel / serial);
}
