//! A leader cut off from its followers (in-process replicas over channels
//! whose links the test cuts), for both consensus protocols:
//!
//! - the followers elect a new leader, which serves every commit
//!   acknowledged before the cut;
//! - the old leader, whose commit is stuck without a majority, gives up
//!   on it and declares itself deposed (a real node then exits and is
//!   restarted as a follower) — it never acknowledges that commit;
//! - after healing, nothing acknowledged is missing on the new leader.
//!
//! And a learner receives everything, through a change of leader, and
//! never leads or serves, unless it is a standby learner (Paxos), which
//! takes over first when the leader is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kv::persist::SyncMode;
use node::{Consensus, Node, NodeOptions};
use repl::net::Local;
use txn::{Db, Placement};

/// A new data directory's path (not created).
fn temp_data_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mako-partition-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Commits `key = value`, retrying for a while when the node does not
/// serve at the moment (a leader briefly without fresh answers from a
/// majority on a loaded machine), as a client would.
fn put(db: &Arc<Db>, key: &str, value: &str) -> kv::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut t = db.begin();
        t.put(
            key.as_bytes().to_vec(),
            Arc::from(value.as_bytes()),
            Placement::Partitioned(7),
        );
        match t.commit() {
            Err(e) if e.kind == kv::ErrorKind::NotServing && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map(|_| ()),
        }
    }
}

fn get(db: &Arc<Db>, key: &str) -> Option<String> {
    let mut t = db.begin();
    let v = t
        .get(key.as_bytes(), Placement::Partitioned(7))
        .expect("read");
    v.map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

type Group = (Vec<Node>, Vec<Arc<AtomicBool>>, Vec<std::path::PathBuf>);

/// Three in-process voters over `net` (n1 is preferred), and `learners`
/// more (n4 on, standby learners if `standby`, which then stand before
/// n2 and n3), running `streams` streams, once n1 leads. Returns the
/// nodes, each node's deposed flag and the data directories.
///
/// n1 stands first, but on a loaded machine another voter can win the
/// first election (n1's ballots arriving late), and nothing hands the
/// lead back to a healthy n1. The tests are about cutting the leader
/// off, so such a group is closed and started again (new directories).
fn group(
    setup: (Consensus, usize),
    runtime: &tokio::runtime::Runtime,
    net: &Local,
    learners: u32,
    standby: bool,
) -> Group {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (nodes, deposed, dirs) = start_group(setup, runtime, net, learners, standby);
        let deadline = Instant::now() + Duration::from_secs(20);
        let leader = loop {
            if let Some(i) = nodes.iter().position(|n| n.serving()) {
                break Some(i);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match leader {
            Some(0) => return (nodes, deposed, dirs),
            other => {
                assert!(
                    attempts < 3,
                    "n1 did not lead in {attempts} attempts (last: {})",
                    other.map_or("no leader in 20 s".to_string(), |i| format!(
                        "n{} led",
                        i + 1
                    ))
                );
                for n in nodes {
                    n.close();
                }
                for d in dirs {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        }
    }
}

fn start_group(
    (consensus, streams): (Consensus, usize),
    runtime: &tokio::runtime::Runtime,
    net: &Local,
    learners: u32,
    standby: bool,
) -> Group {
    let voters = [1u32, 2, 3];
    let learner_ids: Vec<u32> = (4..4 + learners).collect();
    let ids: Vec<u32> = voters.iter().copied().chain(learner_ids.clone()).collect();
    let members: HashMap<u32, (String, std::net::SocketAddr)> = ids
        .iter()
        .map(|&i| (i, (format!("n{i}"), ([127, 0, 0, 1], 0).into())))
        .collect();
    let deposed: Vec<Arc<AtomicBool>> = ids.iter().map(|_| Arc::default()).collect();
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for &id in &ids {
        let dir = temp_data_dir();
        let flag = deposed[id as usize - 1].clone();
        let (heartbeat, election) = match consensus {
            Consensus::Paxos => (Duration::from_millis(20), Duration::from_millis(150)),
            Consensus::Raft => (Duration::from_millis(50), Duration::from_millis(300)),
        };
        let opts = NodeOptions {
            group: "g".into(),
            id,
            voters: voters.to_vec(),
            learners: learner_ids.clone(),
            standby: standby && id >= 4,
            members: members.clone(),
            data_dir: dir.clone(),
            shards: 1,
            sync: SyncMode::Group,
            heartbeat,
            election: match id {
                1 => election,
                4.. if standby => election,
                _ if standby => election * 3,
                _ => election * 2,
            },
            consensus,
            retain_slots: 10_000,
            batching: Default::default(),
            streams,
            initialize: id == 1,
            lease: election * 2 - heartbeat,
            layout: None,
            on_deposed: Box::new(move |_| flag.store(true, Ordering::SeqCst)),
        };
        let mut node = Node::open(opts).expect("open");
        net.register(id, node.deliver());
        let peers: Vec<(u32, Duration)> = ids
            .iter()
            .filter(|&&p| p != id)
            .map(|&p| (p, Duration::from_millis(2)))
            .collect();
        let endpoint = {
            let _guard = runtime.enter();
            net.endpoint(id, &peers)
        };
        node.start(Arc::new(endpoint), runtime.handle())
            .expect("start");
        nodes.push(node);
        dirs.push(dir);
    }
    (nodes, deposed, dirs)
}

fn close(nodes: Vec<Node>, runtime: tokio::runtime::Runtime, dirs: Vec<std::path::PathBuf>) {
    close_keeping(nodes, runtime);
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Closes the nodes and stops their transport's tasks.
fn close_keeping(nodes: Vec<Node>, runtime: tokio::runtime::Runtime) {
    for n in nodes {
        n.close();
    }
    drop(runtime);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn partitioned_leader(setup: (Consensus, usize)) {
    let (runtime, net) = (runtime(), Local::new());
    let (nodes, deposed, dirs) = group(setup, &runtime, &net, 0, false);
    // Each committing thread appends to one stream: commit from new
    // threads until every stream has carried some (threads are dealt to
    // the streams in turn, but other tests commit from theirs too).
    let mut before = 0;
    while before < 6 || nodes[0].statuses().iter().any(|st| st.chosen <= 2) {
        assert!(before < 300, "some stream carried nothing");
        let db = nodes[0].db.clone();
        let key = format!("b{before}");
        std::thread::spawn(move || put(&db, &key, "0"))
            .join()
            .unwrap()
            .expect("a commit before the cut");
        before += 1;
    }
    put(&nodes[0].db, "before", "1").expect("a commit before the cut");
    let statuses = nodes[0].statuses();
    assert_eq!(statuses.len(), setup.1);
    for (k, st) in statuses.iter().enumerate() {
        assert!(st.chosen > 2, "stream {k} carried too little: {st:?}");
        assert_eq!(st.leader, Some(1), "stream {k}");
    }

    // Cut the leader off. Its lease runs out before another leader can
    // serve: the two never serve at once (checked every 0.2 ms).
    let both = AtomicBool::new(false);
    let watching = AtomicBool::new(true);
    let (stuck, new) = std::thread::scope(|s| {
        s.spawn(|| {
            while watching.load(Ordering::Relaxed) {
                if nodes[0].serving() && (nodes[1].serving() || nodes[2].serving()) {
                    both.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        net.cut(1, 2);
        net.cut(1, 3);
        let old = nodes[0].db.clone();
        let stuck = std::thread::spawn(move || put(&old, "during", "x"));
        wait_for("a new leader", Duration::from_secs(20), || {
            nodes[1].serving() || nodes[2].serving()
        });
        std::thread::sleep(Duration::from_millis(50));
        watching.store(false, Ordering::Relaxed);
        (stuck, if nodes[1].serving() { 1 } else { 2 })
    });
    assert!(
        !both.load(Ordering::Relaxed),
        "the old and the new leader served at the same time"
    );
    assert_eq!(get(&nodes[new].db, "before").as_deref(), Some("1"));
    for i in 0..before {
        assert_eq!(get(&nodes[new].db, &format!("b{i}")).as_deref(), Some("0"));
    }
    // It serves only once it has applied its close of the earlier
    // leaders' entries.
    let closed = (new as u64 + 1, nodes[new].ballot().number);
    assert_eq!(nodes[new].persist.last_close(), closed);
    put(&nodes[new].db, "after", "2").expect("a commit on the new leader");
    // The old leader gives up on the commit it cannot replicate.
    wait_for("the old leader to give up", Duration::from_secs(20), || {
        deposed[0].load(Ordering::SeqCst)
    });
    assert!(!nodes[0].serving());
    assert!(
        !stuck.is_finished() || stuck.join().unwrap().is_err(),
        "the cut-off leader acknowledged a commit"
    );

    net.heal();
    assert_eq!(get(&nodes[new].db, "before").as_deref(), Some("1"));
    assert_eq!(get(&nodes[new].db, "after").as_deref(), Some("2"));
    let other = 3 - new;
    wait_for(
        "the other follower to apply the close",
        Duration::from_secs(20),
        || nodes[other].persist.last_close() == closed,
    );
    assert!(!deposed[new].load(Ordering::SeqCst));
    close(nodes, runtime, dirs);
}

/// A follower cut off for a while stands for election again and again
/// (in vain); when it comes back, the leader stays the leader and the
/// follower catches up.
fn returning_follower(setup: (Consensus, usize)) {
    let (runtime, net) = (runtime(), Local::new());
    let (nodes, deposed, dirs) = group(setup, &runtime, &net, 0, false);
    put(&nodes[0].db, "a", "1").expect("commit");
    let (close, epoch) = (nodes[0].persist.last_close(), nodes[0].ballot().number);
    assert_eq!(close, (1, epoch));
    net.cut(1, 3);
    net.cut(2, 3);
    for i in 0..20 {
        put(&nodes[0].db, &format!("k{i}"), "v").expect("commit while n3 is away");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Commits go on while n3 comes back and the leader stands again for
    // a later ballot.
    let stop = AtomicBool::new(false);
    let acked = std::sync::Mutex::new(vec![b"b".to_vec()]);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("h{i}");
                if put(&nodes[0].db, &key, "v").is_ok() {
                    acked.lock().unwrap().push(key.into_bytes());
                }
                i += 1;
            }
        });
        net.heal();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let chosen = nodes[0].status().chosen;
    wait_for("n3 to catch up", Duration::from_secs(20), || {
        nodes[2].status().chosen >= chosen
    });
    put(&nodes[0].db, "b", "2").expect("commit after the heal");
    assert!(nodes[0].serving(), "the leader stopped serving");
    assert!(!deposed[0].load(Ordering::SeqCst), "the leader was deposed");
    // A Paxos leader stood again for a later ballot (n3 had raised the
    // promises), and did not close again: a close would cut off its own
    // batches in flight.
    if setup.0 == Consensus::Paxos {
        assert!(
            nodes[0].ballot().number > epoch,
            "the leader did not stand again"
        );
    }
    assert_eq!(
        nodes[0].persist.last_close(),
        close,
        "the leader closed again after standing again"
    );
    // Every replica ends with the leader's data.
    wait_for(
        "every replica to apply everything",
        Duration::from_secs(20),
        || {
            let want: Vec<_> = nodes[0].statuses().iter().map(|s| s.chosen).collect();
            nodes[1..].iter().all(|n| {
                let have: Vec<_> = n.statuses().iter().map(|s| s.chosen).collect();
                have == want
            })
        },
    );
    std::thread::sleep(Duration::from_millis(300)); // the appliers
    close_keeping(nodes, runtime);
    drop(net);
    let group = match setup.0 {
        Consensus::Paxos => "g",
        Consensus::Raft => "g (raft)",
    };
    {
        let dumps: Vec<_> = dirs
            .iter()
            .map(|d| node::replica_rows(d, group, setup.1).expect("a replica's rows"))
            .collect();
        assert!(dumps[0].len() > 20);
        assert!(dumps.iter().all(|d| d == &dumps[0]), "the replicas differ");
        let keys: std::collections::HashSet<&[u8]> =
            dumps[0].iter().map(|(_, k, _)| k.as_slice()).collect();
        let acked = acked.into_inner().unwrap();
        let lost: Vec<_> = acked
            .iter()
            .filter(|k| !keys.contains(k.as_slice()))
            .collect();
        assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
    }
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_returning_paxos_follower_does_not_depose_the_leader() {
    returning_follower((Consensus::Paxos, 1));
}

/// With several streams the leader stands again on each (new ballots)
/// and keeps serving: it does not close again, which would cut off its
/// own batches in flight.
#[test]
fn a_returning_follower_of_three_paxos_streams_does_not_depose_the_leader() {
    returning_follower((Consensus::Paxos, 3));
}

#[test]
fn a_returning_raft_follower_does_not_depose_the_leader() {
    returning_follower((Consensus::Raft, 1));
}

#[test]
fn a_partitioned_paxos_leader_is_replaced_and_gives_up() {
    partitioned_leader((Consensus::Paxos, 1));
}

#[test]
fn a_partitioned_leader_of_three_paxos_streams_is_replaced_and_gives_up() {
    partitioned_leader((Consensus::Paxos, 3));
}

#[test]
fn a_partitioned_raft_leader_is_replaced_and_gives_up() {
    partitioned_leader((Consensus::Raft, 1));
}

#[test]
fn a_partitioned_leader_of_three_raft_streams_is_replaced_and_gives_up() {
    partitioned_leader((Consensus::Raft, 3));
}

/// A learner gets every commit, follows a new leader when the first is
/// cut off, and never leads or serves (it refuses transactions like a
/// follower).
fn learner(setup: (Consensus, usize)) {
    let (runtime, net) = (runtime(), Local::new());
    let (nodes, _deposed, dirs) = group(setup, &runtime, &net, 1, false);
    for i in 0..10 {
        put(&nodes[0].db, &format!("k{i}"), "v").expect("commit");
    }
    let last = nodes[0].persist.last_txn();
    wait_for("the learner to catch up", Duration::from_secs(20), || {
        nodes[3].persist.last_txn() >= last
    });
    assert!(!nodes[3].serving());
    let mut t = nodes[3].db.begin();
    let err = t
        .get(b"k1", Placement::Partitioned(7))
        .expect_err("a learner serves nothing");
    assert_eq!(err.kind, kv::ErrorKind::NotServing, "{}", err.message);
    // The leader is cut off from everyone; the learner follows the new one.
    for n in [2, 3, 4] {
        net.cut(1, n);
    }
    wait_for("a new leader", Duration::from_secs(20), || {
        nodes[1].serving() || nodes[2].serving()
    });
    let new = if nodes[1].serving() { 1 } else { 2 };
    put(&nodes[new].db, "after", "1").expect("a commit on the new leader");
    let last_close = nodes[new].persist.last_close();
    wait_for(
        "the learner to follow the new leader",
        Duration::from_secs(20),
        || nodes[3].persist.last_close() == last_close,
    );
    assert!(!nodes[3].serving());
    assert_ne!(nodes[3].status().leader, Some(4), "the learner led");
    net.heal();
    close(nodes, runtime, dirs);
}

#[test]
fn a_paxos_learner_receives_everything_and_never_leads() {
    learner((Consensus::Paxos, 1));
}

#[test]
fn a_learner_of_three_paxos_streams_receives_everything_and_never_leads() {
    learner((Consensus::Paxos, 3));
}

#[test]
fn a_raft_learner_receives_everything_and_never_leads() {
    learner((Consensus::Raft, 1));
}

/// A standby learner (in the leader's datacenter) takes over first when
/// the leader is lost, with a majority of the voters, none of which it
/// is: it serves every commit acknowledged before, and the voters follow
/// it.
fn standby_learner(streams: usize) {
    let (runtime, net) = (runtime(), Local::new());
    let (nodes, _deposed, dirs) = group((Consensus::Paxos, streams), &runtime, &net, 1, true);
    for i in 0..10 {
        put(&nodes[0].db, &format!("k{i}"), "v").expect("commit");
    }
    let last = nodes[0].persist.last_txn();
    wait_for("the learner to catch up", Duration::from_secs(20), || {
        nodes[3].persist.last_txn() >= last
    });
    assert!(!nodes[3].serving(), "the learner serves beside the leader");
    for n in [2, 3, 4] {
        net.cut(1, n);
    }
    wait_for("the learner to serve", Duration::from_secs(20), || {
        nodes[3].serving()
    });
    assert!(!nodes[0].serving() && !nodes[1].serving() && !nodes[2].serving());
    for st in nodes[3].statuses() {
        assert_eq!(st.leader, Some(4), "{st:?}");
    }
    for i in 0..10 {
        assert_eq!(get(&nodes[3].db, &format!("k{i}")).as_deref(), Some("v"));
    }
    for i in 0..6 {
        put(&nodes[3].db, &format!("after{i}"), "1").expect("a commit on the learner");
    }
    // The voters apply its close and its commits.
    let (closed, last) = (nodes[3].persist.last_close(), nodes[3].persist.last_txn());
    assert_eq!(closed, (4, nodes[3].ballot().number));
    for v in [1, 2] {
        wait_for(
            "the voters to follow the learner",
            Duration::from_secs(20),
            || nodes[v].persist.last_close() == closed && nodes[v].persist.last_txn() >= last,
        );
    }
    net.heal();
    close(nodes, runtime, dirs);
}

#[test]
fn a_standby_paxos_learner_takes_over_from_a_lost_leader() {
    standby_learner(1);
}

#[test]
fn a_standby_learner_of_three_paxos_streams_takes_over_from_a_lost_leader() {
    standby_learner(3);
}
