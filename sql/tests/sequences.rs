//! Sequences are not a point of contention: sessions inserting into a
//! `SERIAL` table at the same time, each in its own explicit transaction,
//! never conflict over the sequence (no 40001), and every id is unique.

use std::collections::HashSet;
use std::sync::Arc;

use sql::{Outcome, Session, Value};
use txn::Db;

fn run(s: &mut Session, sql: &str) -> Result<Outcome, kv::Error> {
    s.execute_script(sql).pop().unwrap()
}

#[test]
fn concurrent_serial_inserts_do_not_conflict() {
    let db = Db::in_process(4);
    let mut setup = Session::new(db.clone());
    run(
        &mut setup,
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, w INT)",
    )
    .unwrap();
    const THREADS: usize = 4;
    const EACH: usize = 200;
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|w| {
            let db = db.clone();
            let conflicts = conflicts.clone();
            std::thread::spawn(move || {
                let mut s = Session::new(db);
                for _ in 0..EACH {
                    run(&mut s, "BEGIN").unwrap();
                    run(&mut s, &format!("INSERT INTO t (w) VALUES ({w})")).unwrap();
                    if let Err(e) = run(&mut s, "COMMIT") {
                        assert!(e.is_retryable(), "{e}");
                        conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        conflicts.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "inserts that share only a sequence must not conflict"
    );
    let Outcome::Rows { rows, .. } = run(&mut setup, "SELECT id FROM t").unwrap() else {
        panic!("rows expected");
    };
    let ids: HashSet<i64> = rows
        .iter()
        .map(|r| match r[0] {
            Value::Int(i) => i,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rows.len(), THREADS * EACH);
    assert_eq!(ids.len(), THREADS * EACH, "ids are unique");
}
