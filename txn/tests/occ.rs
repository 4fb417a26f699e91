//! OCC and certification behaviour of `Txn`, including the anomaly cases
//! (lost update, write skew, phantom) and a concurrent bank invariant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kv::keycode;
use kv::keys::partition_hash;
use txn::{Db, KeyRange, Placement, ScanPlacement, Txn, prefix_range};

/// A partitioned key `<table 1000><index 1><int id>` and its placement.
fn key(id: i64) -> (Vec<u8>, Placement) {
    let mut k = kv::keys::index_prefix(1000, 1);
    let mut col = Vec::new();
    keycode::encode_int(&mut col, id);
    k.extend_from_slice(&col);
    (k, Placement::Partitioned(partition_hash(&col)))
}

fn val(n: i64) -> Arc<[u8]> {
    Arc::from(n.to_be_bytes().as_slice())
}

fn num(v: &[u8]) -> i64 {
    i64::from_be_bytes(v.try_into().unwrap())
}

fn get(t: &mut Txn, id: i64) -> Option<i64> {
    let (k, p) = key(id);
    t.get(&k, p).unwrap().map(|v| num(&v))
}

fn put(t: &mut Txn, id: i64, n: i64) {
    let (k, p) = key(id);
    t.put(k, val(n), p);
}

fn table() -> KeyRange {
    prefix_range(&kv::keys::index_prefix(1000, 1))
}

fn setup(shards: usize, accounts: i64, balance: i64) -> Arc<Db> {
    let db = Db::in_process(shards);
    let mut t = db.begin();
    for id in 0..accounts {
        put(&mut t, id, balance);
    }
    t.commit().unwrap();
    db
}

#[test]
fn reads_see_own_writes_and_rollback_discards() {
    let db = setup(2, 0, 0);
    let mut t = db.begin();
    assert_eq!(get(&mut t, 1), None);
    put(&mut t, 1, 10);
    assert_eq!(get(&mut t, 1), Some(10));
    let rows = t.scan(&table(), ScanPlacement::AllShards, None).unwrap();
    assert_eq!(rows.len(), 1);
    t.rollback();
    let mut t = db.begin();
    assert_eq!(get(&mut t, 1), None, "rolled back writes are gone");
}

#[test]
fn rollback_to_a_savepoint_undoes_later_writes_only() {
    let db = setup(2, 3, 5);
    let mut t = db.begin();
    put(&mut t, 0, 6);
    let empty = t.write_set_bytes();
    let outer = t.savepoint();
    put(&mut t, 1, 7);
    t.delete(key(2).0, key(2).1);
    let inner = t.savepoint();
    put(&mut t, 1, 8);
    put(&mut t, 9, 9);
    t.rollback_to(inner);
    assert_eq!(get(&mut t, 1), Some(7));
    assert_eq!(get(&mut t, 9), None);
    put(&mut t, 1, 10);
    t.rollback_to(outer);
    assert_eq!(get(&mut t, 0), Some(6));
    assert_eq!(get(&mut t, 1), Some(5));
    assert_eq!(get(&mut t, 2), Some(5));
    let rows = t.scan(&table(), ScanPlacement::AllShards, None).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(t.write_set_bytes(), empty);
    t.release();
    t.release();
    // Undo records count against the write set's bound.
    let sp = t.savepoint();
    let before = t.write_set_bytes();
    for _ in 0..10 {
        put(&mut t, 0, 6);
    }
    assert!(t.write_set_bytes() > before);
    t.rollback_to(sp);
    t.release();
    assert_eq!(t.write_set_bytes(), before);
    put(&mut t, 2, 11);
    t.commit().unwrap();
    let mut r = db.begin();
    assert_eq!(
        (0..3).map(|i| get(&mut r, i)).collect::<Vec<_>>(),
        vec![Some(6), Some(5), Some(11)]
    );
}

#[test]
fn lost_update_aborts_one_writer() {
    for shards in [1, 3] {
        let db = setup(shards, 1, 100);
        let mut a = db.begin();
        let mut b = db.begin();
        let x = get(&mut a, 0).unwrap();
        let y = get(&mut b, 0).unwrap();
        put(&mut a, 0, x + 1);
        put(&mut b, 0, y + 1);
        a.commit().unwrap();
        let err = b.commit().unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let mut t = db.begin();
        assert_eq!(get(&mut t, 0), Some(101));
    }
}

#[test]
fn write_skew_aborts_one_of_two() {
    // Constraint: x + y >= 0. Each transaction checks it and withdraws 100
    // from a different account: serially, the second would see the first.
    for shards in [1, 4] {
        let db = setup(shards, 2, 50);
        let mut a = db.begin();
        let mut b = db.begin();
        let (ax, ay) = (get(&mut a, 0).unwrap(), get(&mut a, 1).unwrap());
        let (bx, by) = (get(&mut b, 0).unwrap(), get(&mut b, 1).unwrap());
        assert!(ax + ay >= 100 && bx + by >= 100);
        put(&mut a, 0, ax - 100);
        put(&mut b, 1, by - 100);
        let ra = a.commit();
        let rb = b.commit();
        assert!(ra.is_ok() != rb.is_ok(), "exactly one commits");
        let mut t = db.begin();
        assert!(get(&mut t, 0).unwrap() + get(&mut t, 1).unwrap() >= 0);
    }
}

#[test]
fn phantom_insert_into_scanned_range_aborts_the_scanner() {
    for shards in [1, 4] {
        let db = setup(shards, 3, 1);
        let mut a = db.begin();
        let count = a
            .scan(&table(), ScanPlacement::AllShards, None)
            .unwrap()
            .len() as i64;
        let mut b = db.begin();
        put(&mut b, 10, 1);
        b.commit().unwrap();
        put(&mut a, 100, count); // write derived from the scan
        let err = a.commit().unwrap_err();
        assert!(err.is_retryable(), "phantom must abort: {err}");
    }
}

#[test]
fn phantom_on_missing_point_read_aborts() {
    let db = setup(2, 0, 0);
    let mut a = db.begin();
    assert_eq!(get(&mut a, 7), None);
    let mut b = db.begin();
    put(&mut b, 7, 1);
    b.commit().unwrap();
    put(&mut a, 8, 1);
    assert!(a.commit().unwrap_err().is_retryable());
}

#[test]
fn delete_in_scanned_range_aborts_the_scanner() {
    let db = setup(2, 4, 1);
    let mut a = db.begin();
    a.scan(&table(), ScanPlacement::AllShards, None).unwrap();
    let mut b = db.begin();
    let (k, p) = key(2);
    b.delete(k, p);
    b.commit().unwrap();
    put(&mut a, 50, 1);
    assert!(a.commit().unwrap_err().is_retryable());
}

#[test]
fn unrelated_insert_does_not_abort_a_limited_scan() {
    let db = setup(1, 10, 1);
    let mut a = db.begin();
    let first = a.scan(&table(), ScanPlacement::AllShards, Some(2)).unwrap();
    assert_eq!(first.len(), 2);
    let mut b = db.begin();
    put(&mut b, 1_000, 1); // beyond the covered part of the range
    b.commit().unwrap();
    put(&mut a, 2_000, 1);
    a.commit()
        .expect("the insert is outside what the scan covered");
}

#[test]
fn read_only_transactions_validate() {
    let db = setup(2, 2, 5);
    let mut a = db.begin();
    get(&mut a, 0);
    let mut b = db.begin();
    put(&mut b, 0, 6);
    b.commit().unwrap();
    assert!(a.commit().unwrap_err().is_retryable());
}

#[test]
fn vector_clocks_cover_what_was_read() {
    let db = setup(4, 8, 1);
    let mut a = db.begin();
    put(&mut a, 1, 2);
    put(&mut a, 5, 2);
    let first = a.commit().unwrap();
    let mut b = db.begin();
    get(&mut b, 1);
    put(&mut b, 6, 3);
    let second = b.commit().unwrap();
    for (x, y) in first.vc.entries().iter().zip(second.vc.entries()) {
        assert!(x <= y, "{:?} must be ≤ {:?}", first.vc, second.vc);
    }
}

#[test]
fn replicated_keys_are_written_everywhere_and_validated_anywhere() {
    let db = Db::in_process(3);
    let rk = b"replicated-key".to_vec();
    let mut t = db.begin();
    t.put(rk.clone(), val(1), Placement::Replicated);
    let info = t.commit().unwrap();
    assert_eq!(info.participants, 3);
    for s in 0..3 {
        let copy = db.store(s).unwrap().read(&rk);
        assert_eq!(copy.value.as_deref().map(num), Some(1));
        assert_eq!(copy.vc, Some(info.vc.clone()), "copies share the VC");
    }
    // A reader on one shard, writing another, conflicts with a change of the
    // replicated key made meanwhile.
    let mut a = db.begin();
    put(&mut a, 3, 1);
    assert_eq!(
        a.get(&rk, Placement::Replicated)
            .unwrap()
            .as_deref()
            .map(num),
        Some(1)
    );
    let mut b = db.begin();
    b.put(rk.clone(), val(2), Placement::Replicated);
    b.commit().unwrap();
    assert!(a.commit().unwrap_err().is_retryable());
    // Without the concurrent change, reading a replicated key keeps a
    // single-partition transaction on one shard.
    let mut c = db.begin();
    put(&mut c, 3, 1);
    c.get(&rk, Placement::Replicated).unwrap();
    assert_eq!(c.commit().unwrap().participants, 1);
}

#[test]
fn held_lock_aborts_a_concurrent_committer() {
    // A record locked by a committing transaction makes Lock fail (no-wait).
    let db = setup(1, 1, 1);
    let (k, _) = key(0);
    let store = db.store(0).unwrap().clone();
    store.try_lock(&k).unwrap();
    let mut t = db.begin();
    put(&mut t, 0, 5);
    assert!(t.commit().unwrap_err().is_retryable());
    store.unlock(&k);
}

/// Many threads move money between accounts spread over several shards,
/// retrying aborts; concurrent read-only audits must always see the total,
/// and the final total is unchanged.
#[test]
fn bank_transfers_keep_the_total() {
    const ACCOUNTS: i64 = 20;
    const BALANCE: i64 = 1_000;
    const THREADS: u64 = 4;
    const TRANSFERS: u64 = 2_000;
    let db = setup(4, ACCOUNTS, BALANCE);
    let stop = Arc::new(AtomicBool::new(false));
    let aborts = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, aborts) = (db.clone(), aborts.clone());
            std::thread::spawn(move || {
                let mut seed = t * 7919 + 1;
                let mut rand = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut done = 0;
                while done < TRANSFERS {
                    let from = (rand() % ACCOUNTS as u64) as i64;
                    let to = (rand() % ACCOUNTS as u64) as i64;
                    let amount = (rand() % 50) as i64;
                    let mut tx = db.begin();
                    let a = get(&mut tx, from).unwrap();
                    let b = get(&mut tx, to).unwrap();
                    if from == to {
                        continue;
                    }
                    put(&mut tx, from, a - amount);
                    put(&mut tx, to, b + amount);
                    match tx.commit() {
                        Ok(_) => done += 1,
                        Err(e) if e.is_retryable() => {
                            aborts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let auditor = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut audits = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = db.begin();
                let rows = tx.scan(&table(), ScanPlacement::AllShards, None).unwrap();
                let total: i64 = rows.iter().map(|(_, v)| num(v)).sum();
                if tx.commit().is_ok() {
                    assert_eq!(
                        total,
                        ACCOUNTS * BALANCE,
                        "a committed audit saw a partial transfer"
                    );
                    audits += 1;
                }
            }
            audits
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    auditor.join().unwrap();
    let mut tx = db.begin();
    let total: i64 = (0..ACCOUNTS).map(|id| get(&mut tx, id).unwrap()).sum();
    assert_eq!(total, ACCOUNTS * BALANCE);
    let stats = &db.stats;
    assert!(stats.cross_shard_commits.load(Ordering::Relaxed) > 0);
    assert!(stats.single_shard_commits.load(Ordering::Relaxed) > 0);
}

#[test]
fn check_reads_detects_a_stale_read_without_committing() {
    let db = setup(2, 2, 5);
    let mut a = db.begin();
    get(&mut a, 0);
    a.scan(&table(), ScanPlacement::AllShards, None).unwrap();
    a.check_reads().expect("nothing changed yet");
    let mut b = db.begin();
    put(&mut b, 1, 6);
    b.commit().unwrap();
    assert!(a.check_reads().unwrap_err().is_retryable());
}

#[test]
fn inverted_range_reads_nothing_even_with_buffered_writes() {
    let db = setup(1, 3, 1);
    let mut t = db.begin();
    put(&mut t, 7, 1);
    let (k5, _) = key(5);
    let (k3, _) = key(3);
    let range = KeyRange {
        start: std::ops::Bound::Excluded(k5),
        end: std::ops::Bound::Excluded(k3),
    };
    assert!(
        t.scan(&range, ScanPlacement::AllShards, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn reverse_limited_scan_returns_the_largest_keys_and_covers_only_them() {
    for shards in [1, 3] {
        let db = setup(shards, 10, 1);
        let mut a = db.begin();
        let rows = a
            .scan_ordered(&table(), ScanPlacement::AllShards, Some(2), true)
            .unwrap();
        let ids: Vec<Vec<u8>> = rows.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(ids, vec![key(9).0, key(8).0], "descending, the two largest");
        // An insert below what the reverse scan covered does not conflict...
        let mut b = db.begin();
        put(&mut b, -5, 1);
        b.commit().unwrap();
        put(&mut a, 500, 1);
        a.commit().expect("the insert is outside the covered part");
        // ...one inside does.
        let mut c = db.begin();
        c.scan_ordered(&table(), ScanPlacement::AllShards, Some(2), true)
            .unwrap();
        let mut d = db.begin();
        put(&mut d, 1_000, 1);
        d.commit().unwrap();
        put(&mut c, 501, 1);
        assert!(c.commit().unwrap_err().is_retryable(), "{shards} shards");
    }
}

/// A key read as missing, then inserted and deleted by others and its
/// tombstone collected, is not "still missing": the reader must fail
/// validation (here the history T1 -rw-> T2 -rw-> T1 is a cycle).
#[test]
fn collected_tombstone_does_not_hide_an_insert_and_delete() {
    let db = setup(1, 2, 100);
    let mut t1 = db.begin();
    assert_eq!(get(&mut t1, 7), None);

    let mut t2 = db.begin();
    assert_eq!(get(&mut t2, 0), Some(100));
    put(&mut t2, 7, 1);
    t2.commit().unwrap();
    let mut t3 = db.begin();
    let (k, p) = key(7);
    t3.delete(k, p);
    t3.commit().unwrap();
    assert_eq!(db.store(0).unwrap().collect_tombstones(), 1);

    put(&mut t1, 0, 0);
    let err = t1.commit().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // A fresh reader of the missing key commits an insert of it.
    let mut t4 = db.begin();
    assert_eq!(get(&mut t4, 7), None);
    put(&mut t4, 7, 2);
    t4.commit().unwrap();
    assert_eq!(get(&mut db.begin(), 7), Some(2));
}

/// A commit log that keeps what it is given and makes it durable at once.
struct RecordingLog {
    shards: Vec<Arc<kv::Shard>>,
    entries: std::sync::Mutex<Vec<kv::log::LogEntry>>,
}

impl kv::log::CommitLog for RecordingLog {
    fn append(&self, entry: kv::log::LogEntry) -> kv::Result<()> {
        let shard = &self.shards[entry.shard];
        shard.clock_durable(entry.clock());
        shard.wake_waiters();
        self.entries.lock().unwrap().push(entry);
        Ok(())
    }

    fn failure(&self) -> Option<kv::Error> {
        None
    }

    fn durability(&self) -> String {
        "recorded".into()
    }
}

/// A transaction that only read (and validated) on a logged shard took
/// no clock value there and logs nothing: an entry would carry the clock
/// value of the version it read and settle that writer's value before the
/// writer's own entry is durable.
#[test]
fn a_read_only_commit_logs_nothing() {
    let marks = Arc::new(kv::shard::Watermarks::new(1));
    let shards: Vec<Arc<kv::Shard>> = vec![Arc::new(kv::Shard::logged(0, marks))];
    let log = Arc::new(RecordingLog {
        shards: shards.clone(),
        entries: Default::default(),
    });
    let db = Db::logged(shards, log.clone(), 0);
    let mut w = db.begin();
    put(&mut w, 1, 5);
    w.commit().unwrap();
    let mut r = db.begin();
    assert_eq!(get(&mut r, 1), Some(5));
    r.commit().unwrap();
    let entries = log.entries.lock().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(!entries[0].writes.is_empty());
}

#[test]
fn a_presence_read_survives_updates_not_deletes() {
    let db = setup(2, 3, 100);
    // Another transaction updates the row after it was read for presence:
    // the read still holds.
    let mut t = db.begin();
    let (k1, p1) = key(1);
    assert!(t.exists(&k1, p1).unwrap());
    put(&mut t, 10, 1);
    let mut u = db.begin();
    put(&mut u, 1, 5);
    u.commit().unwrap();
    t.commit().unwrap();
    // A deletion of it invalidates the read.
    let mut t = db.begin();
    let (k2, p2) = key(2);
    assert!(t.exists(&k2, p2).unwrap());
    put(&mut t, 11, 1);
    let mut d = db.begin();
    d.delete(k2.clone(), p2);
    d.commit().unwrap();
    let e = t.commit().expect_err("the row read as present was deleted");
    assert!(e.is_retryable(), "{e}");
    // A key read as absent must stay absent.
    let mut t = db.begin();
    let (k9, p9) = key(9);
    assert!(!t.exists(&k9, p9).unwrap());
    put(&mut t, 12, 1);
    let mut i = db.begin();
    put(&mut i, 9, 1);
    i.commit().unwrap();
    assert!(t.commit().is_err());
}
