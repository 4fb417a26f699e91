//! Joins of many tables plan greedily (polynomial in the number of tables)
//! and answer correctly. The time bound is loose on purpose: it is there to
//! catch an exponential planner, not to measure speed.

use std::time::{Duration, Instant};

use sql::{Outcome, Session, Value};
use txn::Db;

fn run(s: &mut Session, sql: &str) -> Outcome {
    let mut results = s.execute_script(sql);
    results
        .pop()
        .unwrap()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn count(s: &mut Session, sql: &str) -> i64 {
    match run(s, sql) {
        Outcome::Rows { rows, .. } => match rows[0][0] {
            Value::Int(n) => n,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

const TABLES: usize = 20;

fn setup(shards: usize) -> Session {
    let mut s = Session::new(Db::in_process(shards));
    for t in 1..=TABLES {
        run(
            &mut s,
            &format!("CREATE TABLE t{t} (id INT PRIMARY KEY, next INT, v INT)"),
        );
        let rows: Vec<String> = (0..10)
            .map(|i| format!("({i}, {}, {})", (i + t) % 10, i * t % 7))
            .collect();
        run(
            &mut s,
            &format!("INSERT INTO t{t} VALUES {}", rows.join(", ")),
        );
    }
    s
}

#[test]
fn twenty_table_chain_join() {
    let mut s = setup(2);
    // t1.next = t2.id AND t2.next = t3.id ... written in a scrambled order.
    let mut conds: Vec<String> = (1..TABLES)
        .map(|t| format!("t{t}.next = t{}.id", t + 1))
        .collect();
    conds.reverse();
    conds.swap(3, 11);
    let from: Vec<String> = (1..=TABLES).rev().map(|t| format!("t{t}")).collect();
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {} AND t1.v < 3",
        from.join(", "),
        conds.join(" AND ")
    );
    let start = Instant::now();
    let n = count(&mut s, &sql);
    let took = start.elapsed();
    // Every t1 row reaches exactly one chain; t1.v = i % 7 < 3 holds for i in {0,1,2,7,8,9}.
    assert_eq!(n, 6);
    println!("20-table chain join: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "planning must not blow up: {took:?}"
    );
    // The plan is a chain of key lookups (no cross products): each next
    // table is found by its primary key from the previous one's `next`.
    if let Outcome::Rows { rows, .. } = run(&mut s, &format!("EXPLAIN {sql}")) {
        let text: Vec<String> = rows.iter().map(|r| format!("{:?}", r[0])).collect();
        let joins = text
            .iter()
            .filter(|l| l.contains("Lookup Join") || l.contains("Hash Join"))
            .count();
        assert_eq!(joins, TABLES - 1, "{text:#?}");
        assert!(!text.iter().any(|l| l.contains("Nested Loop")), "{text:#?}");
    }
}

#[test]
fn twenty_table_star_join_with_join_syntax() {
    let mut s = setup(1);
    let joins: Vec<String> = (2..=TABLES)
        .map(|t| format!("JOIN t{t} ON t{t}.id = t1.next"))
        .collect();
    let sql = format!(
        "SELECT count(*), sum(t20.v) FROM t1 {} WHERE t1.id < 5",
        joins.join(" ")
    );
    let start = Instant::now();
    match run(&mut s, &sql) {
        Outcome::Rows { rows, .. } => {
            assert_eq!(rows[0][0], Value::Int(5));
            // t20.id = t1.next = (i + 1) % 10 for i in 0..5, t20.v = id * 20 % 7.
            let want: i64 = (1..=5).map(|id| id * 20 % 7).sum();
            assert_eq!(rows[0][1], Value::Int(want));
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}
