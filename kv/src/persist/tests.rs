//! Tests of persistence: restarts, refusals, damaged logs, group commit,
//! partial cross-shard commits, abort markers and log failures.

use std::ops::ControlFlow;

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mako-persist-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(shards: usize, checkpoint_entries: usize) -> Options {
    Options {
        sync: SyncMode::Group,
        shards: Some(shards),
        checkpoint_entries,
        faults: Faults::default(),
        replica_of: None,
        streams: 1,
        parallel_replay: true,
        batching: Batching::default(),
    }
}

fn vc(entries: &[u64]) -> VectorClock {
    VectorClock::from_vec(entries.to_vec())
}

fn image(writes: &[(&str, Option<&str>)]) -> Vec<crate::log::AfterImage> {
    writes
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| Arc::from(v.as_bytes()))))
        .collect()
}

/// Locks, logs and installs `writes` on `shard` with `vc` (the clock
/// already taken), without waiting for durability.
fn install(
    p: &Persist,
    shard: &Shard,
    txn: u64,
    vc: &VectorClock,
    writes: &[(&str, Option<&str>)],
) {
    for (k, _) in writes {
        shard.try_lock(k.as_bytes()).expect("unlocked");
    }
    let writes = image(writes);
    p.append(LogEntry {
        txn,
        shard: shard.id(),
        vc: vc.clone(),
        epoch: Epoch(1),
        writes: writes.clone(),
    })
    .unwrap();
    for (k, v) in writes {
        shard.install(&k, v, vc.clone(), Epoch(1));
    }
}

#[test]
fn a_commit_durable_on_one_shard_only_is_dropped_with_what_read_it() {
    let dir = TempDir::new("partial");
    {
        let (p, shards, _) = open(&dir.0, opts(2, 1)).unwrap();
        commit(&p, &shards[0], 1, &[("a", Some("1"))]);
        commit(&p, &shards[1], 2, &[("x", Some("1"))]);
        // Transaction 3 writes both shards; only its shard-0 entry
        // reaches the log before the crash.
        let (c0, c1) = (shards[0].next_clock(), shards[1].next_clock());
        let t3 = vc(&[c0, c1]);
        install(&p, &shards[0], 3, &t3, &[("a", Some("3"))]);
        // Transaction 4 read transaction 3's write (its clock covers
        // t3's) and wrote shard 0 only: durable there, but it depends
        // on t3.
        let c = shards[0].next_clock();
        install(&p, &shards[0], 4, &vc(&[c, c1]), &[("b", Some("4"))]);
        // Transaction 5 read nothing of them: it stays.
        let c = shards[0].next_clock();
        install(&p, &shards[0], 5, &vc(&[c, 0]), &[("c", Some("5"))]);
        shards[0].wait_watermark(c).unwrap();
        assert!(!p.marks.covers(&t3), "t3 is not stable");
        p.close();
    }
    let (p, shards, rec) = open(&dir.0, opts(2, 1)).unwrap();
    assert_eq!(rec.log_entries_dropped, 2, "{rec:?}");
    assert_eq!(rec.last_txn, 5);
    assert_eq!(contents(&shards[0]), pairs(&[("a", "1"), ("c", "5")]));
    assert_eq!(contents(&shards[1]), pairs(&[("x", "1")]));
    // Shard 1's clock continues from its durable watermark; the value
    // t3 took there is handed out again, and nothing old resurfaces.
    assert_eq!(shards[1].clock(), 1);
    commit(&p, &shards[1], 6, &[("y", Some("6"))]);
    p.close();
    drop(p);
    let (p, shards, rec) = open(&dir.0, opts(2, 1)).unwrap();
    assert_eq!(rec.log_entries_dropped, 0, "{rec:?}");
    assert_eq!(contents(&shards[0]), pairs(&[("a", "1"), ("c", "5")]));
    assert_eq!(contents(&shards[1]), pairs(&[("x", "1"), ("y", "6")]));
    p.close();
}

#[test]
fn an_aborted_clock_value_needs_its_marker_before_the_watermark_passes_it() {
    let dir = TempDir::new("marker");
    let (p, shards, _) = open(&dir.0, opts(1, 1)).unwrap();
    let aborted = shards[0].next_clock();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 2, &vc(&[c]), &[("a", Some("2"))]);
    while p.stats().0 < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(shards[0].watermark(), 0, "held below the aborted value");
    p.append(LogEntry {
        txn: 1,
        shard: 0,
        vc: vc(&[aborted]),
        epoch: Epoch(0),
        writes: Vec::new(),
    })
    .unwrap();
    shards[0].wait_watermark(c).unwrap();
    p.close();
    drop(p);
    let (p, shards, rec) = open(&dir.0, opts(1, 1)).unwrap();
    assert_eq!(rec.log_entries_dropped, 0, "{rec:?}");
    assert_eq!(contents(&shards[0]), pairs(&[("a", "2")]));
    assert_eq!(shards[0].clock(), aborted + 1);
    p.close();
}

#[test]
fn a_failed_log_write_fails_the_commit_and_rolls_it_back() {
    let dir = TempDir::new("full");
    let failing = Options {
        faults: Faults {
            fail_after_writes: Some(2),
            ..Faults::default()
        },
        ..opts(1, 1_000_000)
    };
    {
        let (p, shards, _) = open(&dir.0, failing).unwrap();
        commit(&p, &shards[0], 1, &[("a", Some("1"))]);
        commit(&p, &shards[0], 2, &[("a", Some("2")), ("b", Some("2"))]);
        let version = shards[0].read(b"a").version;
        let c = shards[0].next_clock();
        install(
            &p,
            &shards[0],
            3,
            &vc(&[c]),
            &[("a", Some("3")), ("n", Some("3"))],
        );
        let err = shards[0].wait_watermark(c).expect_err("never durable");
        assert_eq!(err.kind, ErrorKind::DiskFull, "{err:?}");
        // Rolled back before the committer is told: reads see the
        // durable state, and a transaction that read the undone version
        // cannot validate.
        assert_eq!(contents(&shards[0]), pairs(&[("a", "2"), ("b", "2")]));
        assert!(shards[0].read(b"a").version > version + 1);
        // Nothing more is taken.
        let err = p
            .append(LogEntry {
                txn: 4,
                shard: 0,
                vc: vc(&[c + 1]),
                epoch: Epoch(1),
                writes: image(&[("z", Some("4"))]),
            })
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::DiskFull);
        p.close();
    }
    let (p, shards, _) = open(&dir.0, opts(1, 10)).unwrap();
    assert_eq!(contents(&shards[0]), pairs(&[("a", "2"), ("b", "2")]));
    p.close();
}

/// Commits `writes` on `shard` the way a participant does: lock, take a
/// clock, append, install; then waits until durable.
fn commit(p: &Persist, shard: &Shard, txn: u64, writes: &[(&str, Option<&str>)]) {
    let c = shard.next_clock();
    let mut entries = vec![0; p.shards.len()];
    entries[shard.id()] = c;
    install(p, shard, txn, &VectorClock::from_vec(entries), writes);
    shard.wait_watermark(c).unwrap();
}

fn contents(shard: &Shard) -> Vec<(String, String)> {
    let mut out = Vec::new();
    shard.scan(
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        |k, r| {
            if let Some(v) = r.value {
                out.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
            ControlFlow::Continue(())
        },
    );
    out
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn commits_survive_a_restart_from_the_log_and_from_checkpoints() {
    for checkpoint_entries in [1, 1_000_000] {
        let dir = TempDir::new("restart");
        {
            let (p, shards, rec) = open(&dir.0, opts(2, checkpoint_entries)).unwrap();
            assert!(rec.created);
            commit(&p, &shards[0], 1, &[("a", Some("1")), ("b", Some("2"))]);
            commit(&p, &shards[1], 2, &[("x", Some("9"))]);
            commit(&p, &shards[0], 3, &[("a", Some("3")), ("b", None)]);
            assert_eq!(shards[0].watermark(), 2);
            p.close();
        }
        let (p, shards, rec) = open(&dir.0, opts(2, checkpoint_entries)).unwrap();
        assert!(!rec.created);
        assert_eq!(rec.last_txn, 3);
        assert_eq!(contents(&shards[0]), pairs(&[("a", "3")]));
        assert_eq!(contents(&shards[1]), pairs(&[("x", "9")]));
        // Clocks continue after the recovered ones.
        assert_eq!(shards[0].clock(), 2);
        assert_eq!(shards[0].watermark(), 2);
        commit(&p, &shards[0], 4, &[("c", Some("4"))]);
        p.close();
    }
}

#[test]
fn refuses_a_foreign_directory_or_another_shard_count() {
    let dir = TempDir::new("refuse");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("notes.txt"), "hello").unwrap();
    let err = open(&dir.0, opts(1, 10)).err().expect("refused");
    assert!(err.message.contains("not a Mako data directory"), "{err:?}");

    let dir = TempDir::new("shards");
    let (p, _, _) = open(&dir.0, opts(2, 10)).unwrap();
    p.close();
    drop(p);
    let err = open(&dir.0, opts(3, 10)).err().expect("refused");
    assert!(err.message.contains("--shards 2"), "{err:?}");
    let (p, shards, _) = open(
        &dir.0,
        Options {
            shards: None,
            ..opts(0, 10)
        },
    )
    .unwrap();
    assert_eq!(shards.len(), 2);
    p.close();
}

#[test]
fn a_damaged_log_entry_refuses_recovery() {
    let dir = TempDir::new("damaged");
    {
        let (p, shards, _) = open(&dir.0, opts(1, 1_000_000)).unwrap();
        commit(&p, &shards[0], 1, &[("a", Some("1"))]);
        p.close();
        // The final checkpoint covered entry 1; damage the next one.
        let log = cf(&p.db, CF_LOG).unwrap();
        p.db.put_cf(log, 2u64.to_be_bytes(), b"garbage").unwrap();
    }
    let err = open(&dir.0, opts(1, 10)).err().expect("refused");
    assert!(err.message.contains("corrupt data: log entry 2"), "{err:?}");
}

#[test]
fn group_commit_shares_syncs() {
    let dir = TempDir::new("group");
    let (p, shards, _) = open(&dir.0, opts(1, 1_000_000)).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (p, shard) = (&p, &shards[0]);
            s.spawn(move || {
                for i in 0..50u64 {
                    let key = format!("k{t}-{i}");
                    commit(p, shard, t * 1000 + i, &[(&key, Some("v"))]);
                }
            });
        }
    });
    let (entries, writes) = p.stats();
    assert_eq!(entries, 400);
    assert!(writes < entries, "{writes} syncs for {entries} entries");
    p.close();
}

/// A stand-in for the replication streams: it keeps what it is given,
/// with the stream, or refuses once told to.
#[derive(Default)]
struct Proposals {
    got: Mutex<Vec<(usize, Vec<LogEntry>)>>,
    refuse: std::sync::atomic::AtomicBool,
}

impl Proposals {
    /// The batches proposed so far, on any stream.
    fn batches(&self) -> Vec<Vec<LogEntry>> {
        lock(&self.got).iter().map(|(_, b)| b.clone()).collect()
    }
}

impl crate::log::Replicate for Proposals {
    fn propose(
        &self,
        stream: usize,
        batch: Vec<LogEntry>,
    ) -> std::result::Result<(), (Error, Vec<LogEntry>)> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err((Error::new(ErrorKind::NotServing, "deposed"), batch));
        }
        lock(&self.got).push((stream, batch));
        Ok(())
    }

    fn serving(&self) -> Result<()> {
        Ok(())
    }

    fn durability(&self) -> String {
        "test".into()
    }

    fn status(&self) -> String {
        "test".into()
    }
}

fn replica_opts(group: &str) -> Options {
    Options {
        replica_of: Some(group.into()),
        streams: 1,
        parallel_replay: true,
        ..opts(1, 1)
    }
}

fn entry(txn: u64, clock: u64, writes: &[(&str, Option<&str>)]) -> LogEntry {
    LogEntry {
        txn,
        shard: 0,
        vc: vc(&[clock]),
        epoch: Epoch(1),
        writes: image(writes),
    }
}

#[test]
fn a_leader_acknowledges_only_what_the_stream_chose() {
    let dir = TempDir::new("repl-leader");
    let (p, shards, rec) = open(&dir.0, replica_opts("g")).unwrap();
    assert_eq!(rec.applied_slot, 1);
    let stream = Arc::new(Proposals::default());
    p.start_replication(stream.clone()).unwrap();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 1, &vc(&[c]), &[("a", Some("1"))]);
    // The log hands the batch to the stream instead of writing it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock(&stream.got).is_empty() {
        assert!(Instant::now() < deadline, "nothing was proposed");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        shards[0].watermark(),
        0,
        "acknowledged before it was chosen"
    );
    let batch = lock(&stream.got).remove(0).1;
    p.chosen(1, batch, true).unwrap();
    shards[0].wait_watermark(c).unwrap();
    assert_eq!(p.last_txn(), 1);
    p.close();
}

/// Shard 1 is another replica group's. A commit on shard 0 that read
/// that group's clock value 7 is chosen here, but its reply waits (shard
/// 1's watermark, which the gate checks, stays below 7) until that group
/// reports 7 durable; a follower applies the entry only then.
#[test]
fn a_commit_naming_another_groups_shard_waits_for_its_reported_watermark() {
    let grouped = || Options {
        replica_of: Some("g".into()),
        streams: 1,
        parallel_replay: true,
        ..opts(2, 1)
    };
    let dir = TempDir::new("repl-remote-leader");
    let (p, shards, _) = open(&dir.0, grouped()).unwrap();
    p.set_remote_shards(&[false, true]).unwrap();
    let stream = Arc::new(Proposals::default());
    p.start_replication(stream.clone()).unwrap();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 1, &vc(&[c, 7]), &[("a", Some("1"))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock(&stream.got).is_empty() {
        assert!(Instant::now() < deadline, "nothing was proposed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let batch = lock(&stream.got).remove(0).1;
    p.chosen(1, batch.clone(), true).unwrap();
    shards[0].wait_watermark(c).unwrap();
    let remote = shards[1].clone();
    let waiter = std::thread::spawn(move || remote.wait_watermark(7));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !waiter.is_finished(),
        "acknowledged before the other group's watermark"
    );
    p.remote_watermark(1, 6).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !waiter.is_finished(),
        "acknowledged below the other group's watermark"
    );
    p.remote_watermark(1, 7).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the report did not release the reply"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    waiter.join().unwrap().unwrap();
    p.close();

    // A follower of the group holds the entry back until the report.
    let dir = TempDir::new("repl-remote-follower");
    let (f, shards, _) = open(&dir.0, grouped()).unwrap();
    f.set_remote_shards(&[false, true]).unwrap();
    f.chosen(1, batch, false).unwrap();
    assert!(
        shards[0].read(b"a").value.is_none(),
        "applied before it was stable"
    );
    assert_eq!(f.replay_waiting(), 1);
    f.remote_watermark(1, 7).unwrap();
    assert!(shards[0].read(b"a").value.is_some());
    assert_eq!(f.replay_waiting(), 0);
    f.close();
}

#[test]
fn a_follower_installs_chosen_batches_and_resumes_after_its_checkpoint() {
    let dir = TempDir::new("repl-follower");
    {
        let (p, shards, _) = open(&dir.0, replica_opts("g")).unwrap();
        p.chosen(
            1,
            vec![entry(7, 1, &[("a", Some("1")), ("b", Some("2"))])],
            false,
        )
        .unwrap();
        p.chosen(
            2,
            vec![
                entry(8, 2, &[("a", Some("3"))]),
                entry(9, 3, &[("b", None), ("c", Some("4"))]),
            ],
            false,
        )
        .unwrap();
        assert_eq!(contents(&shards[0]), pairs(&[("a", "3"), ("c", "4")]));
        assert_eq!(shards[0].clock(), 3);
        assert_eq!(shards[0].watermark(), 3);
        assert_eq!(p.last_txn(), 9);
        p.close();
    }
    let (p, shards, rec) = open(&dir.0, replica_opts("g")).unwrap();
    assert_eq!(contents(&shards[0]), pairs(&[("a", "3"), ("c", "4")]));
    assert_eq!(rec.last_txn, 9);
    // Slot 2 is in the checkpoint; the stream resumes after it, or at it
    // (applying a slot again is harmless).
    assert!((2..=3).contains(&rec.applied_slot), "{rec:?}");
    assert_eq!(shards[0].clock(), 3);
    p.chosen(3, vec![entry(10, 4, &[("d", Some("5"))])], false)
        .unwrap();
    assert_eq!(shards[0].watermark(), 4);
    p.close();
}

#[test]
fn a_replicas_stream_count_is_fixed_and_an_older_checkpoint_is_refused() {
    let dir = TempDir::new("repl-streams");
    let three = Options {
        streams: 3,
        ..replica_opts("g")
    };
    {
        let (p, _, rec) = open(&dir.0, three.clone()).unwrap();
        assert_eq!(rec.applied_slots, vec![1, 1, 1]);
        p.deliver(
            2,
            1,
            Some(crate::log::StreamValue::Batch(vec![entry(
                1,
                1,
                &[("a", Some("1"))],
            )])),
            false,
        )
        .unwrap();
        p.close();
    }
    {
        let (p, shards, rec) = open(&dir.0, three.clone()).unwrap();
        assert_eq!(rec.applied_slots, vec![1, 1, 2]);
        assert_eq!(contents(&shards[0]), pairs(&[("a", "1")]));
        p.close();
    }
    let err = open(&dir.0, replica_opts("g")).err().expect("refused");
    assert!(err.message.contains("3 streams"), "{}", err.message);
    // A checkpoint written before the replay recorded its clock values.
    {
        let cfs = [CF_LOG, CF_DATA, CF_META, CF_REPL, snapshot::CF_STAGING];
        let db = DB::open_cf(&rocksdb::Options::default(), &dir.0, cfs).unwrap();
        db.delete_cf(cf(&db, CF_META).unwrap(), META_REPLAY)
            .unwrap();
    }
    let err = open(&dir.0, three).err().expect("refused");
    assert!(err.message.contains("older Mako"), "{}", err.message);
}

#[test]
fn a_replicas_directory_and_a_single_nodes_are_not_interchangeable() {
    let dir = TempDir::new("repl-kind");
    {
        let (p, _, _) = open(&dir.0, replica_opts("g")).unwrap();
        p.close();
    }
    let err = open(&dir.0, opts(1, 1)).err().expect("refused");
    assert!(
        err.message.contains("replica of group g"),
        "{}",
        err.message
    );
    let err = open(&dir.0, replica_opts("h")).err().expect("refused");
    assert!(err.message.contains("group h"), "{}", err.message);
    let (p, _, _) = open(&dir.0, replica_opts("g")).unwrap();
    // Without a stream, it refuses transactions.
    assert_eq!(p.serving().unwrap_err().kind, ErrorKind::NotServing);
    p.close();
}

/// Every part of a snapshot of `from`, read in parts of `part_bytes`.
fn snapshot_parts(from: &Persist, part_bytes: usize) -> (u64, Vec<Vec<u8>>) {
    let mut reader = from.snapshot(part_bytes).unwrap();
    let mut parts = Vec::new();
    while let Some(p) = reader.next_part().unwrap() {
        parts.push(p);
    }
    (reader.slot(), parts)
}

#[test]
fn a_snapshot_replaces_a_lagging_replicas_state() {
    let ahead = TempDir::new("snap-ahead");
    let behind = TempDir::new("snap-behind");
    {
        let (p, _, _) = open(&ahead.0, replica_opts("g")).unwrap();
        p.chosen(
            1,
            vec![entry(1, 1, &[("a", Some("1")), ("b", Some("2"))])],
            false,
        )
        .unwrap();
        p.chosen(
            2,
            vec![entry(2, 2, &[("b", None), ("c", Some("3"))])],
            false,
        )
        .unwrap();
        let mut many = Vec::new();
        for i in 0..100 {
            many.push((format!("k{i:03}"), Some(format!("v{i}"))));
        }
        let writes: Vec<(&str, Option<&str>)> = many
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        p.chosen(3, vec![entry(3, 3, &writes)], false).unwrap();
        p.close();
        let (p, _, _) = open(&behind.0, replica_opts("g")).unwrap();
        p.chosen(
            1,
            vec![entry(1, 1, &[("a", Some("1")), ("b", Some("2"))])],
            false,
        )
        .unwrap();
        p.close();
    }
    let (a, a_shards, a_rec) = open(&ahead.0, replica_opts("g")).unwrap();
    let (slot, parts) = snapshot_parts(&a, 256);
    assert_eq!(slot, a_rec.applied_slot);
    assert!(slot >= 3, "{a_rec:?}");
    assert!(parts.len() > 3, "the data should span several parts");
    let expect = contents(&a_shards[0]);
    a.close();

    // Staged in part, never completed: nothing is installed.
    {
        let (b, _, _) = open(&behind.0, replica_opts("g")).unwrap();
        b.stage_snapshot(0, &parts[0]).unwrap();
        b.stage_snapshot(1, &parts[1]).unwrap();
        b.close();
    }
    {
        let (b, shards, rec) = open(&behind.0, replica_opts("g")).unwrap();
        assert_eq!(rec.snapshot_installed, None);
        assert_eq!(contents(&shards[0]), pairs(&[("a", "1"), ("b", "2")]));
        for (seq, part) in parts.iter().enumerate() {
            b.stage_snapshot(seq as u64, part).unwrap();
        }
        b.snapshot_staged(slot).unwrap();
        b.close();
    }
    // Installed at open: the state is the sender's (b is gone), and the
    // stream resumes at the snapshot's slot.
    let (b, shards, rec) = open(&behind.0, replica_opts("g")).unwrap();
    assert_eq!(rec.snapshot_installed, Some(slot));
    assert_eq!(rec.applied_slot, slot);
    assert_eq!(contents(&shards[0]), expect);
    assert_eq!(rec.last_txn, 3);
    assert_eq!(shards[0].clock(), 3);
    assert_eq!(shards[0].watermark(), 3);
    b.close();
    drop(b);
    // Once only.
    let (b, _, rec) = open(&behind.0, replica_opts("g")).unwrap();
    assert_eq!(rec.snapshot_installed, None);
    b.close();
}

#[test]
fn a_snapshot_of_another_shard_count_is_refused() {
    let two = TempDir::new("snap-two");
    let one = TempDir::new("snap-one");
    let (a, _, _) = open(
        &two.0,
        Options {
            shards: Some(2),
            ..replica_opts("g")
        },
    )
    .unwrap();
    let (_, parts) = snapshot_parts(&a, 1 << 20);
    a.close();
    let (b, _, _) = open(&one.0, replica_opts("g")).unwrap();
    let err = b.stage_snapshot(0, &parts[0]).unwrap_err();
    assert!(err.message.contains("2 shards"), "{}", err.message);
    b.close();
}

#[test]
fn a_chosen_batch_naming_an_unknown_shard_is_refused_whole() {
    let dir = TempDir::new("repl-unknown-shard");
    let (p, shards, _) = open(&dir.0, replica_opts("g")).unwrap();
    let mut bad = entry(2, 1, &[("b", Some("2"))]);
    bad.shard = 5;
    let err = p
        .chosen(1, vec![entry(1, 1, &[("a", Some("1"))]), bad], false)
        .unwrap_err();
    assert!(err.message.contains("shard 5"), "{}", err.message);
    assert!(
        contents(&shards[0]).is_empty(),
        "part of the batch was applied"
    );
    p.close();
}

/// An install interrupted after it emptied `data` and copied part of the
/// snapshot (a crash) is done over at the next open, from the staged copy.
#[test]
fn an_interrupted_snapshot_install_starts_over() {
    let ahead = TempDir::new("snap-int-ahead");
    let behind = TempDir::new("snap-int-behind");
    let writes: Vec<(String, Option<String>)> = (0..50)
        .map(|i| (format!("k{i:02}"), Some(format!("v{i}"))))
        .collect();
    let writes: Vec<(&str, Option<&str>)> = writes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    {
        let (p, _, _) = open(&ahead.0, replica_opts("g")).unwrap();
        p.chosen(1, vec![entry(1, 1, &writes)], false).unwrap();
        p.chosen(2, vec![entry(2, 2, &[("x", Some("1"))])], false)
            .unwrap();
        p.close();
    }
    let (a, a_shards, _) = open(&ahead.0, replica_opts("g")).unwrap();
    let (slot, parts) = snapshot_parts(&a, 64);
    let expect = contents(&a_shards[0]);
    a.close();
    drop(a);
    {
        let (b, _, _) = open(&behind.0, replica_opts("g")).unwrap();
        b.chosen(1, vec![entry(1, 1, &[("old", Some("1"))])], false)
            .unwrap();
        for (seq, part) in parts.iter().enumerate() {
            b.stage_snapshot(seq as u64, part).unwrap();
        }
        b.snapshot_staged(slot).unwrap();
        b.close();
    }
    // The crash: `data` emptied and a third of the staged rows copied,
    // the marker still there.
    {
        let cfs = [CF_LOG, CF_DATA, CF_META, CF_REPL, snapshot::CF_STAGING];
        let db = DB::open_cf(&rocksdb::Options::default(), &behind.0, cfs).unwrap();
        let (data, staging) = (
            cf(&db, CF_DATA).unwrap(),
            cf(&db, snapshot::CF_STAGING).unwrap(),
        );
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(data, &b""[..], &b"\xff\xff\xff\xff\xff"[..]);
        let staged: Vec<_> = db
            .iterator_cf(staging, IteratorMode::Start)
            .map(|r| r.unwrap())
            .filter(|(k, _)| k.first() == Some(&b'd'))
            .collect();
        assert!(staged.len() > 10);
        for (k, v) in &staged[..staged.len() / 3] {
            wb.put_cf(data, &k[1..], v);
        }
        db.write(wb).unwrap();
    }
    let (b, shards, rec) = open(&behind.0, replica_opts("g")).unwrap();
    assert_eq!(rec.snapshot_installed, Some(slot));
    assert_eq!(rec.applied_slot, slot);
    assert_eq!(contents(&shards[0]), expect);
    b.close();
}

/// A replica's log hands the stream batches of at most `max_entries`
/// log entries, in order.
#[test]
fn a_replica_batches_at_most_max_entries() {
    let dir = TempDir::new("repl-batching");
    let opts = Options {
        batching: Batching {
            max_entries: 2,
            delay: Duration::from_millis(500),
            ..Batching::default()
        },
        ..replica_opts("g")
    };
    let (p, shards, _) = open(&dir.0, opts).unwrap();
    let stream = Arc::new(Proposals::default());
    p.start_replication(stream.clone()).unwrap();
    for txn in 1..=5 {
        let c = shards[0].next_clock();
        install(&p, &shards[0], txn, &vc(&[c]), &[("k", Some("v"))]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.batches().iter().map(Vec::len).sum::<usize>() < 5 {
        assert!(Instant::now() < deadline, "not everything was proposed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let batches = stream.batches();
    assert!(batches.iter().all(|b| b.len() <= 2), "{batches:?}");
    let txns: Vec<u64> = batches.iter().flatten().map(|e| e.txn).collect();
    assert_eq!(txns, vec![1, 2, 3, 4, 5]);
    // With the delay, the five commits made quickly wait for one another:
    // three batches, not five.
    assert_eq!(batches.len(), 3, "{batches:?}");
    p.close();
}

/// A replica in `dir` whose log holds a batch while one is in flight, at
/// most `wait` after the last went, replicating to a stand-in.
fn one_in_flight(dir: &TempDir, wait: Duration) -> (Arc<Persist>, Vec<Arc<Shard>>, Arc<Proposals>) {
    let batching = Batching {
        max_in_flight: 1,
        in_flight_wait: wait,
        ..Batching::default()
    };
    let opts = Options {
        batching,
        ..replica_opts("g")
    };
    let (p, shards, _) = open(&dir.0, opts).unwrap();
    let stream = Arc::new(Proposals::default());
    p.start_replication(stream.clone()).unwrap();
    (p, shards, stream)
}

/// While `max_in_flight` batches are proposed and not chosen, a
/// replica's log holds the next (gathering what queues meanwhile) until
/// one is chosen, or until `in_flight_wait` has passed since the last
/// went.
#[test]
fn a_replica_holds_a_batch_while_enough_are_in_flight() {
    let dir = TempDir::new("repl-in-flight");
    let (p, shards, stream) = one_in_flight(&dir, Duration::from_secs(3600));
    let commit = |txn: u64| {
        let c = shards[0].next_clock();
        install(&p, &shards[0], txn, &vc(&[c]), &[("k", Some("v"))]);
    };
    let proposed = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stream.batches().len() < n {
            assert!(Instant::now() < deadline, "{:?}", stream.batches());
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    commit(1);
    proposed(1);
    for txn in 2..=4 {
        commit(txn);
    }
    // Batch 1 is in flight: the others wait.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stream.batches().len(), 1, "{:?}", stream.batches());
    // It is chosen (or lost, which tells the same): the rest go together.
    p.proposal_done(0);
    proposed(2);
    let txns: Vec<Vec<u64>> = stream
        .batches()
        .iter()
        .map(|b| b.iter().map(|e| e.txn).collect())
        .collect();
    assert_eq!(txns, vec![vec![1], vec![2, 3, 4]]);
    p.close();

    // With a short wait, a batch goes that long after the last, chosen
    // or not.
    let dir = TempDir::new("repl-in-flight-wait");
    let (p, shards, stream) = one_in_flight(&dir, Duration::from_millis(100));
    let start = Instant::now();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 1, &vc(&[c]), &[("k", Some("v"))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.batches().is_empty() {
        assert!(Instant::now() < deadline, "not proposed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = shards[0].next_clock();
    install(&p, &shards[0], 2, &vc(&[c]), &[("k", Some("w"))]);
    while stream.batches().len() < 2 {
        assert!(Instant::now() < deadline, "not proposed after the wait");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The first went after `start`, the second at least 100 ms after it.
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    p.close();
}

/// On a replica of 3 streams each committing thread appends to one
/// stream's queue, whose log thread proposes on that stream only; a
/// stream that refuses stops the whole log: every queue refuses, the
/// unchosen writes are rolled back, and the directory closes.
#[test]
fn each_worker_logs_on_its_own_stream_and_a_failure_stops_every_queue() {
    let dir = TempDir::new("repl-workers");
    let (p, shards, _) = open(
        &dir.0,
        Options {
            streams: 3,
            ..replica_opts("g")
        },
    )
    .unwrap();
    let streams = Arc::new(Proposals::default());
    p.start_replication(streams.clone()).unwrap();
    // Six workers, each committing three times.
    for w in 0..6u64 {
        let (p, shard) = (p.clone(), shards[0].clone());
        std::thread::spawn(move || {
            for i in 0..3 {
                let c = shard.next_clock();
                let key = format!("w{w}-{i}");
                install(&p, &shard, w * 10 + i, &vc(&[c]), &[(&key, Some("v"))]);
            }
        })
        .join()
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock(&streams.got)
        .iter()
        .map(|(_, b)| b.len())
        .sum::<usize>()
        < 18
    {
        assert!(Instant::now() < deadline, "not everything was proposed");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Every worker's entries went to one stream, in its order.
    let mut stream_of = std::collections::HashMap::new();
    let mut order: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    for (stream, batch) in lock(&streams.got).iter() {
        assert!(*stream < 3);
        for e in batch {
            let w = e.txn / 10;
            assert_eq!(
                *stream_of.entry(w).or_insert(*stream),
                *stream,
                "worker {w}"
            );
            order.entry(w).or_default().push(e.txn % 10);
        }
    }
    assert!(order.values().all(|o| o == &[0, 1, 2]), "{order:?}");
    let used: BTreeSet<usize> = stream_of.values().copied().collect();
    assert!(used.len() >= 2, "six workers on one stream: {stream_of:?}");

    // A stream refuses (its node was deposed): the log stops.
    streams.refuse.store(true, Ordering::SeqCst);
    let c = shards[0].next_clock();
    install(&p, &shards[0], 99, &vc(&[c]), &[("lost", Some("x"))]);
    let err = shards[0].wait_watermark(c).expect_err("never chosen");
    assert_eq!(err.kind, ErrorKind::NotServing, "{err:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while shards[0].read(b"lost").value.is_some() {
        assert!(Instant::now() < deadline, "not rolled back");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every queue refuses now, whichever stream a worker is on.
    for w in 0..3 {
        let p = p.clone();
        let refused = std::thread::spawn(move || {
            p.append(LogEntry {
                txn: 100 + w,
                shard: 0,
                vc: vc(&[c + 1 + w]),
                epoch: Epoch(1),
                writes: image(&[("z", Some("z"))]),
            })
        })
        .join()
        .unwrap();
        assert!(refused.is_err());
    }
    p.close();
}

/// A waker that counts its wake-ups.
struct CountWakes(AtomicU64);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `shard`'s watermark for `c` as a task would: pending until a
/// wake-up, then ready.
fn poll_until_ready(shard: &Shard, c: u64) -> Result<()> {
    let wakes = Arc::new(CountWakes(AtomicU64::new(0)));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = wakes.0.load(Ordering::SeqCst);
        if let std::task::Poll::Ready(r) = shard.poll_watermark(c, &mut cx) {
            return r;
        }
        // Pending: polled again only once woken.
        while wakes.0.load(Ordering::SeqCst) == seen {
            assert!(Instant::now() < deadline, "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A task waiting for the watermark (a server's session does not block
/// its thread) is pending while the entry is not durable, woken once it
/// is; and woken with the log's error when the log stops.
#[test]
fn a_task_polling_the_watermark_is_woken_when_it_passes_or_the_log_stops() {
    let dir = TempDir::new("poll-watermark");
    let slow = Options {
        faults: Faults {
            write_delay: Duration::from_millis(200),
            ..Faults::default()
        },
        ..opts(1, 1_000_000)
    };
    let (p, shards, _) = open(&dir.0, slow).unwrap();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 1, &vc(&[c]), &[("a", Some("1"))]);
    let waker = std::task::Waker::noop();
    let pending = shards[0].poll_watermark(c, &mut std::task::Context::from_waker(waker));
    assert!(pending.is_pending(), "durable before its log write");
    poll_until_ready(&shards[0], c).unwrap();
    assert!(shards[0].watermark() >= c);
    p.close();

    let dir = TempDir::new("poll-watermark-full");
    let failing = Options {
        faults: Faults {
            fail_after_writes: Some(0),
            write_delay: Duration::from_millis(100),
        },
        ..opts(1, 1_000_000)
    };
    let (p, shards, _) = open(&dir.0, failing).unwrap();
    let c = shards[0].next_clock();
    install(&p, &shards[0], 1, &vc(&[c]), &[("a", Some("1"))]);
    let err = poll_until_ready(&shards[0], c).expect_err("never durable");
    assert_eq!(err.kind, ErrorKind::DiskFull, "{err:?}");
    p.close();
}
