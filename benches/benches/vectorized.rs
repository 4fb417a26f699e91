//! Scan + filter + aggregate over ~1M rows: the vectorized path (Arrow
//! batches, column-at-a-time kernels) against the row-at-a-time path, on
//! the same bound plan, in the same run. Prints both times and the ratio.
//!
//! Run: `cargo bench -p benches --bench vectorized` (BENCH_ROWS to change
//! the table size, default 1,000,000).

use std::time::{Duration, Instant};

use sql::bind::{Binder, Bound};
use sql::exec::{DEFAULT_MEMORY_LIMIT, ExecCtx};
use sql::{Outcome, Session, Value};
use txn::Db;

const QUERY: &str = "SELECT count(*), sum(v), avg(w), max(s) FROM t WHERE v % 10 < 3 AND w > 100";

fn load(session: &mut Session, rows: usize) {
    let run = |s: &mut Session, sql: &str| {
        for r in s.execute_script(sql) {
            r.unwrap_or_else(|e| panic!("{e}"));
        }
    };
    run(
        session,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT, w INT, s TEXT)",
    );
    let mut id = 0usize;
    while id < rows {
        let n = 2000.min(rows - id);
        let values: Vec<String> = (id..id + n)
            .map(|i| {
                format!(
                    "({i}, {}, {}, 'name{}')",
                    (i * 7919) % 1000,
                    (i * 104_729) % 500,
                    i % 97
                )
            })
            .collect();
        run(
            session,
            &format!("INSERT INTO t VALUES {}", values.join(",")),
        );
        id += n;
    }
}

fn time(db: &std::sync::Arc<Db>, vectorized: bool) -> (Duration, Vec<Value>) {
    let mut txn = db.begin();
    let stmt = sql::session::parse(QUERY).unwrap().pop().unwrap();
    let plan = match Binder::new(&mut txn, &[]).bind(&stmt).unwrap() {
        Bound::Query { plan, .. } => plan,
        _ => unreachable!(),
    };
    let ctx = ExecCtx::new(&mut txn, &[], DEFAULT_MEMORY_LIMIT * 4);
    let start = Instant::now();
    let rows = if vectorized {
        let types = plan.output_types();
        let batches = ctx.query_batches(&plan, &[]).unwrap();
        sql::exec::vector::rows_from_batches(&batches, &types)
    } else {
        ctx.query_rows(&plan, &[]).unwrap()
    };
    (start.elapsed(), rows.into_iter().next().unwrap())
}

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let db = Db::in_process(1);
    let mut session = Session::new(db.clone());
    let start = Instant::now();
    load(&mut session, rows);
    println!(
        "loaded {rows} rows in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if let Outcome::Rows { rows, .. } = session
        .execute_script(&format!("EXPLAIN {QUERY}"))
        .pop()
        .unwrap()
        .unwrap()
    {
        for r in rows {
            if let Value::Text(line) = &r[0] {
                println!("  {line}");
            }
        }
    }
    let mut row_times = Vec::new();
    let mut vec_times = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (t, a) = time(&db, false);
        row_times.push(t);
        answers.push(a);
        let (t, a) = time(&db, true);
        vec_times.push(t);
        answers.push(a);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "both paths must agree: {answers:?}"
    );
    row_times.sort();
    vec_times.sort();
    let (row, vec) = (row_times[2], vec_times[2]);
    println!("answer: {:?}", answers[0]);
    println!(
        "{:<28} {:>10} {:>14}",
        "path (median of 5)", "time", "rows/s"
    );
    println!(
        "{:<28} {:>9.1}ms {:>14.0}",
        "row-at-a-time",
        row.as_secs_f64() * 1e3,
        rows as f64 / row.as_secs_f64()
    );
    println!(
        "{:<28} {:>9.1}ms {:>14.0}",
        "vectorized (Arrow)",
        vec.as_secs_f64() * 1e3,
        rows as f64 / vec.as_secs_f64()
    );
    println!(
        "speedup of the vectorized path: {:.2}x",
        row.as_secs_f64() / vec.as_secs_f64()
    );
}
