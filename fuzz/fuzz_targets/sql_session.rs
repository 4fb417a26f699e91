//! Arbitrary SQL text through a whole session (parse, bind, plan,
//! execute) over two in-memory shards holding a small schema: any input
//! gives results or errors, never a panic (a panic would end a client's
//! connection, or worse).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sql::session::Session;
use txn::Db;

const SCHEMA: &str = "
    CREATE TABLE t (id INT PRIMARY KEY, a INT, b TEXT, c NUMERIC(10,2), d FLOAT8, e BOOLEAN);
    CREATE TABLE u (k BIGINT, j TEXT, v INT, PRIMARY KEY (k, j));
    CREATE INDEX t_a ON t (a);
    CREATE VIEW w AS SELECT id, a + 1 AS a1, b FROM t WHERE e;
    INSERT INTO t VALUES (1, 10, 'x', 1.5, 0.25, true), (2, NULL, 'yy', -3, 1e10, false),
        (3, 30, NULL, NULL, NULL, NULL);
    INSERT INTO u VALUES (1, 'a', 1), (1, 'b', 2), (2, 'a', NULL);
";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let db: Arc<Db> = Db::in_process(2);
    let mut session = Session::new(db);
    for r in session.execute_script(SCHEMA) {
        r.expect("the schema loads");
    }
    let _ = session.execute_script(text);
});
