//! KV/OCC microbenchmark: single-key read-modify-write transactions through
//! `txn::Txn` (get, put, commit with full certification), with 1 and 2
//! threads, on a uniform key choice over 100k keys and on a hot set of 16
//! keys. The baseline, measured in the same run, is the same workload on a
//! `Mutex<BTreeMap>` (one global lock, no versions, no validation).
//!
//! Run: `cargo bench -p benches --bench kv_occ` (BENCH_SECS=seconds per
//! configuration, default 3).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use benches::{Rng, bench_duration, commit_retrying, run_threads};
use kv::keycode::encode_int;
use kv::keys::partition_hash;
use txn::{Db, Placement};

const KEYS: u64 = 100_000;

fn key(i: u64) -> (Vec<u8>, Placement) {
    let mut col = Vec::new();
    encode_int(&mut col, i as i64);
    let mut k = kv::keys::index_prefix(1000, 1);
    k.extend_from_slice(&col);
    (k, Placement::Partitioned(partition_hash(&col)))
}

fn load(db: &Arc<Db>) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut t = db.begin();
        for &i in chunk {
            let (k, p) = key(i);
            t.put(k, Arc::from(0u64.to_le_bytes().as_slice()), p);
        }
        t.commit().unwrap();
    }
}

fn occ(db: &Arc<Db>, threads: usize, keyspace: u64) -> (f64, f64) {
    run_threads(threads, bench_duration(), |t, go| {
        let mut rng = Rng::new(t as u64 + 1);
        let (mut done, mut retried) = (0, 0);
        while go() {
            let (k, p) = key(rng.below(keyspace));
            retried += commit_retrying(db, |txn| {
                let v = txn.get(&k, p).unwrap().expect("loaded");
                let n = u64::from_le_bytes(v[..8].try_into().unwrap()) + 1;
                txn.put(k.clone(), Arc::from(n.to_le_bytes().as_slice()), p);
            });
            done += 1;
        }
        (done, retried)
    })
}

fn mutex_map(threads: usize, keyspace: u64) -> f64 {
    let map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>> = Mutex::new(
        (0..KEYS)
            .map(|i| (key(i).0, 0u64.to_le_bytes().to_vec()))
            .collect(),
    );
    run_threads(threads, bench_duration(), |t, go| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut done = 0;
        while go() {
            let (k, _) = key(rng.below(keyspace));
            let mut m = map.lock().unwrap();
            let v = m.get_mut(&k).expect("loaded");
            let n = u64::from_le_bytes(v[..8].try_into().unwrap()) + 1;
            *v = n.to_le_bytes().to_vec();
            done += 1;
        }
        (done, 0)
    })
    .0
}

fn main() {
    println!("KV/OCC microbenchmark: single-key read-modify-write transactions");
    println!(
        "{} s per configuration, {} CPUs\n",
        bench_duration().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14} {:>10}",
        "configuration", "txn/s", "retries/s", "mutex-map op/s", "ratio"
    );
    for (label, keyspace) in [("uniform over 100k keys", KEYS), ("hot set of 16 keys", 16)] {
        let mut single_shard = [0.0; 2];
        for threads in [1, 2] {
            for shards in [1, 2] {
                let db = Db::in_process(shards);
                load(&db);
                let (tps, retries) = occ(&db, threads, keyspace);
                let base = mutex_map(threads, keyspace);
                if shards == 1 {
                    single_shard[threads - 1] = tps;
                }
                println!(
                    "{:<34} {:>12.0} {:>12.0} {:>14.0} {:>9.2}x",
                    format!("{label}, {threads} thr, {shards} shard"),
                    tps,
                    retries,
                    base,
                    tps / base
                );
            }
        }
        println!(
            "  scaling, 2 threads / 1 thread (1 shard): {:.2}x\n",
            single_shard[1] / single_shard[0]
        );
    }
    println!("ratio = Mako OCC txn/s ÷ global-mutex BTreeMap op/s (same thread count, same run)");
}
