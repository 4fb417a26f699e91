//! Foreign keys hold under concurrency: a transaction that inserts a row
//! referencing a parent and one that deletes that parent, interleaved so
//! that each checks before the other commits, cannot both commit (the
//! child's insert read the parent; the delete scanned for children); and
//! under a random mix of such transactions on 4 shards no orphan is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sql::{Outcome, Session, Value};
use txn::Db;

fn run(s: &mut Session, sql: &str) -> Result<Outcome, kv::Error> {
    s.execute_script(sql).pop().unwrap()
}

fn count(s: &mut Session, sql: &str) -> i64 {
    match run(s, sql).unwrap() {
        Outcome::Rows { rows, .. } => match rows[0][0] {
            Value::Int(i) => i,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn setup(db: &Arc<Db>) -> Session {
    let mut s = Session::new(db.clone());
    run(&mut s, "CREATE TABLE parent (id INT PRIMARY KEY)").unwrap();
    run(
        &mut s,
        "CREATE TABLE child (id INT PRIMARY KEY, pid INT REFERENCES parent)",
    )
    .unwrap();
    s
}

#[test]
fn an_insert_of_a_reference_and_a_delete_of_its_parent_do_not_both_commit() {
    let db = Db::in_process(4);
    let mut s = setup(&db);
    run(&mut s, "INSERT INTO parent VALUES (1)").unwrap();
    let mut a = Session::new(db.clone());
    let mut b = Session::new(db.clone());
    run(&mut a, "BEGIN").unwrap();
    run(&mut b, "BEGIN").unwrap();
    // Each passes its check: b sees no child yet, a sees the parent.
    run(&mut b, "DELETE FROM parent WHERE id = 1").unwrap();
    run(&mut a, "INSERT INTO child VALUES (10, 1)").unwrap();
    let committed_b = run(&mut b, "COMMIT").is_ok();
    let committed_a = run(&mut a, "COMMIT");
    if committed_b {
        let e = committed_a.expect_err("the child of a deleted parent committed");
        assert!(e.is_retryable(), "{e}");
    }
    let orphans = count(
        &mut s,
        "SELECT count(*) FROM child WHERE pid NOT IN (SELECT id FROM parent)",
    );
    assert_eq!(orphans, 0);
}

#[test]
fn concurrent_inserts_and_deletes_leave_no_orphan() {
    let db = Db::in_process(4);
    let mut s = setup(&db);
    const PARENTS: i64 = 20;
    for p in 0..PARENTS {
        run(&mut s, &format!("INSERT INTO parent VALUES ({p})")).unwrap();
    }
    let next_child = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..4u64)
        .map(|w| {
            let db = db.clone();
            let next_child = next_child.clone();
            std::thread::spawn(move || {
                let mut s = Session::new(db);
                let mut x = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..150 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let p = (x % PARENTS as u64) as i64;
                    let sql = match x % 3 {
                        0 => format!("DELETE FROM parent WHERE id = {p}"),
                        1 => format!("INSERT INTO parent VALUES ({p}) ON CONFLICT DO NOTHING"),
                        _ => format!(
                            "INSERT INTO child VALUES ({}, {p})",
                            next_child.fetch_add(1, Ordering::Relaxed)
                        ),
                    };
                    run(&mut s, "BEGIN").unwrap();
                    let ok = match run(&mut s, &sql) {
                        Ok(_) => true,
                        Err(e) => {
                            let code = e.kind;
                            assert!(
                                e.is_retryable() || code == kv::ErrorKind::ForeignKeyViolation,
                                "{sql}: {e}"
                            );
                            false
                        }
                    };
                    let end = if ok { "COMMIT" } else { "ROLLBACK" };
                    if let Err(e) = run(&mut s, end) {
                        assert!(e.is_retryable(), "{e}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let orphans = count(
        &mut s,
        "SELECT count(*) FROM child WHERE pid NOT IN (SELECT id FROM parent)",
    );
    assert_eq!(orphans, 0, "a child outlived its parent");
    assert!(count(&mut s, "SELECT count(*) FROM child") > 0);
}
