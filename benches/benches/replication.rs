//! The cost of replication, measured in one run, on in-process replica
//! groups (each replica with its own RocksDB data directory, synced group
//! commits, talking through in-process channels with injected latency):
//!
//! 1. Throughput of the durability benchmark's write workload (update one
//!    row, insert one) on a group of 1 replica and on a group of 3,
//!    without injected latency, at each count of committing threads in
//!    BENCH_THREADS (default 32,128). A replicated commit waits longer
//!    (two disk writes in a row, more hand-offs), so at a low count the
//!    3-replica group is bound by latency, not work; the peak over the
//!    counts compares what each can do. Prints each, and the cost of
//!    replication at the peak. All replicas share this machine's cores
//!    and disk, so the 3-replica figure also pays for two followers' work
//!    on the leader's cores: it is not the cost Mako reports (~23%, the
//!    target <= 20%), which is with each replica on its own machine;
//!    `benches/replication-cluster` measures that one, with a CPU budget
//!    per replica process.
//! 2. Commit latency with 25 ms one-way latency between the three
//!    replicas' datacenters (a commit needs one round trip to a majority:
//!    50 ms): p50 and p99 over BENCH_LAT_THREADS (default 8) committing
//!    threads, against the target p50 <= one round trip + 10 ms.
//!
//! Both for our Multi-Paxos and for openraft 0.9 (the same stream
//! interface; openraft's heartbeat, which is also its replication
//! timeout, is set above the round trip).
//!
//! Each protocol runs twice: with one stream, and with BENCH_STREAMS
//! streams (default 3) over which the leader spreads its batches (the
//! 1-replica baseline of that row runs as many streams).
//!
//! Run: `cargo bench -p benches --bench replication` (BENCH_SECS seconds
//! per configuration, default 3; BENCH_PROTOCOL=paxos or raft runs one
//! protocol only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benches::{TempDir, bench_duration, env_usize, env_usizes, writes};
use kv::persist::SyncMode;
use node::{Consensus, Node, NodeOptions};
use repl::net::Local;

const SHARDS: usize = 4;

/// A replica group of `n` in-process nodes, each in its own datacenter,
/// `latency` apart (one way). Node 1 leads.
struct Group {
    nodes: Vec<Node>,
    _dirs: Vec<TempDir>,
    _runtime: tokio::runtime::Runtime,
}

impl Group {
    fn start(n: u32, latency: Duration, (consensus, streams): (Consensus, usize)) -> Group {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let net = Local::new();
        let ids: Vec<u32> = (1..=n).collect();
        let members: HashMap<u32, (String, std::net::SocketAddr)> = ids
            .iter()
            .map(|&i| (i, (format!("n{i}"), ([127, 0, 0, 1], 0).into())))
            .collect();
        static GROUPS: AtomicU32 = AtomicU32::new(0);
        let group = GROUPS.fetch_add(1, Ordering::Relaxed);
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for &id in &ids {
            let dir = TempDir::new(&format!("repl-{group}-{id}"));
            let opts = NodeOptions {
                group: "bench".into(),
                id,
                voters: ids.clone(),
                learners: Vec::new(),
                standby: false,
                members: members.clone(),
                data_dir: dir.0.clone(),
                shards: SHARDS,
                sync: SyncMode::Group,
                // openraft's heartbeat is also its replication timeout: it
                // must exceed a round trip plus a follower's sync.
                heartbeat: match consensus {
                    Consensus::Paxos => Duration::from_millis(20),
                    Consensus::Raft => latency * 2 + Duration::from_millis(100),
                },
                // Every replica first waits out the lease (2 s, below),
                // so the others wait far longer: a follower whose timer
                // fired on node 1's tick would win the tie (higher id).
                election: if id == 1 {
                    Duration::from_millis(300) + latency * 4
                } else {
                    Duration::from_secs(10)
                },
                consensus,
                retain_slots: 10_000,
                batching: Default::default(),
                streams,
                initialize: id == 1,
                lease: Duration::from_secs(2),
                layout: None,
                on_deposed: Box::new(|_| {
                    eprintln!("replication bench: the leader was deposed (a bug)");
                    std::process::exit(1);
                }),
            };
            let mut node = Node::open(opts).expect("open a replica");
            net.register(id, node.deliver());
            let peers: Vec<(u32, Duration)> = ids
                .iter()
                .filter(|&&p| p != id)
                .map(|&p| (p, latency))
                .collect();
            let endpoint = {
                let _guard = runtime.enter();
                net.endpoint(id, &peers)
            };
            node.start(Arc::new(endpoint), runtime.handle())
                .expect("start a replica");
            nodes.push(node);
            dirs.push(dir);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes[0].serving() {
            if Instant::now() > deadline {
                for n in &nodes {
                    eprintln!("{:?}", n.statuses());
                }
                panic!("no leader within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Group {
            nodes,
            _dirs: dirs,
            _runtime: runtime,
        }
    }

    fn db(&self) -> &Arc<txn::Db> {
        &self.nodes[0].db
    }

    fn close(self) {
        let Group {
            nodes,
            _dirs,
            _runtime,
        } = self;
        for n in nodes {
            n.close();
        }
        // The transport's tasks hold the nodes' last references: stop them
        // before the directories go.
        drop(_runtime);
        drop(_dirs);
    }
}

fn throughput(n: u32, threads: usize, setup: (Consensus, usize)) -> f64 {
    let g = Group::start(n, Duration::ZERO, setup);
    writes::load(g.db());
    let tps = writes::run(g.db(), threads, bench_duration(), None);
    g.close();
    tps
}

/// Commit latencies (sorted) and txn/s of 3 replicas `one_way` apart.
fn latency(one_way: Duration, threads: usize, setup: (Consensus, usize)) -> (Vec<Duration>, f64) {
    let g = Group::start(3, one_way, setup);
    writes::load(g.db());
    let lat = Mutex::new(Vec::new());
    let tps = writes::run(g.db(), threads, bench_duration(), Some(&lat));
    g.close();
    let mut lat = lat.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort_unstable();
    (lat, tps)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let sweep = env_usizes("BENCH_THREADS", &[32, 128]);
    let lat_threads = env_usize("BENCH_LAT_THREADS", 8);
    println!(
        "replication: {} s per configuration, {sweep:?} committing threads, {SHARDS} shards, \
         sync=group, temp dir {}",
        bench_duration().as_secs_f64(),
        std::env::temp_dir().display()
    );
    let streams = env_usize("BENCH_STREAMS", 3);
    let one_way = Duration::from_millis(25);
    let setups = [
        (Consensus::Paxos, 1),
        (Consensus::Paxos, streams),
        (Consensus::Raft, 1),
        (Consensus::Raft, streams),
    ];
    let only = std::env::var("BENCH_PROTOCOL").ok();
    for setup in setups {
        if only.as_deref().is_some_and(|p| !setup.0.name().contains(p)) {
            continue;
        }
        println!("{}, {} stream(s):", setup.0.name(), setup.1);
        let (mut one, mut three) = (0f64, 0f64);
        for &threads in &sweep {
            let o = throughput(1, threads, setup);
            let t = throughput(3, threads, setup);
            println!(
                "  {threads:>4} threads: 1 replica {o:>7.0} txn/s, 3 replicas {t:>7.0} txn/s: 3/1 {:.2}x",
                t / o
            );
            (one, three) = (one.max(o), three.max(t));
        }
        println!(
            "  peak throughput 3/1: {three:.0} / {one:.0} txn/s = {:.2}x: replication costs {:.0}% \
             with all replicas on these cores (with a CPU budget per replica, as on machines \
             of their own: ./dev bench-replication)",
            three / one,
            (1.0 - three / one) * 100.0
        );
        let (lat, tps) = latency(one_way, lat_threads, setup);
        report_latency(&lat, tps, one_way, lat_threads);
    }
}

fn report_latency(lat: &[Duration], tps: f64, one_way: Duration, threads: usize) {
    let target = 2 * one_way + Duration::from_millis(10);
    let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
    println!(
        "  commit latency, 3 replicas {} ms apart (one way), {threads} threads: \
         p50 {:.1} ms, p99 {:.1} ms over {} commits ({tps:.0} txn/s); \
         p50 / (round trip + 10 ms) = {:.2} (target <= 1)",
        one_way.as_millis(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat.len(),
        p50.as_secs_f64() / target.as_secs_f64()
    );
}
