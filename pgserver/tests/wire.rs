//! Over-the-wire behaviour with a real driver (tokio-postgres): the extended
//! protocol with parameters and binary results, error codes, transaction
//! states, and concurrency invariants across shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgserver::server::{RunningServer, start};
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};
use txn::Db;

async fn server(shards: usize) -> RunningServer {
    start("127.0.0.1:0", Db::in_process(shards)).await.unwrap()
}

async fn connect(s: &RunningServer) -> Client {
    let url = format!(
        "host=127.0.0.1 port={} user=test dbname=test",
        s.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn extended_protocol_infers_parameter_types() {
    let s = server(1).await;
    let c = connect(&s).await;
    c.batch_execute(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, price NUMERIC(10,2), qty INT)",
    )
    .await
    .unwrap();
    let insert = c
        .prepare("INSERT INTO t (id, name, price, qty) VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    assert_eq!(
        insert.params(),
        &[Type::INT8, Type::TEXT, Type::NUMERIC, Type::INT4]
    );
    for i in 1..=3i64 {
        let n = c
            .execute(
                &insert,
                &[
                    &i,
                    &format!("item{i}"),
                    &Decimal::new(i * 150, 2),
                    &(i as i32 * 10),
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let select = c
        .prepare("SELECT name, price, qty * 2 AS twice FROM t WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(select.params(), &[Type::INT8]);
    let cols: Vec<(&str, Type)> = select
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_().clone()))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("name", Type::TEXT),
            ("price", Type::NUMERIC),
            ("twice", Type::INT4)
        ]
    );
    let row = c.query_one(&select, &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "item2");
    assert_eq!(row.get::<_, Decimal>(1).to_string(), "3.00");
    assert_eq!(row.get::<_, i32>(2), 40);
    // Arithmetic context and explicit casts type parameters too.
    let row = c
        .query_one("SELECT $1 + 1, $2::int8 * 2", &[&41i32, &21i64])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (42, 42));
    // NULL parameters.
    let rows = c
        .query("SELECT id FROM t WHERE name = $1", &[&None::<String>])
        .await
        .unwrap();
    assert!(rows.is_empty());
    let n = c
        .execute(
            "UPDATE t SET price = price + $1 WHERE id >= $2",
            &[&Decimal::new(5, 1), &2i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let total: Decimal = c
        .query_one("SELECT sum(price) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total.to_string(), "10.00");
    s.stop().await;
}

#[tokio::test]
async fn binary_results_for_every_type() {
    let s = server(1).await;
    let c = connect(&s).await;
    c.batch_execute(
        "CREATE TABLE all_types (id INT PRIMARY KEY, s SMALLINT, b BIGINT, n NUMERIC, r REAL, d DOUBLE PRECISION, \
         v VARCHAR(5), ch CHAR(3), t TEXT, f BOOLEAN, ts TIMESTAMP);
         INSERT INTO all_types VALUES (1, -7, 9000000000, -1234.5678, 1.5, 0.25, 'vv', 'c', 'text', true, '2024-01-02 03:04:05.25')",
    )
    .await
    .unwrap();
    let row = c
        .query_one(
            "SELECT id, s, b, n, r, d, v, ch, t, f, ts FROM all_types",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, i16>(1), -7);
    assert_eq!(row.get::<_, i64>(2), 9_000_000_000);
    assert_eq!(row.get::<_, Decimal>(3).to_string(), "-1234.5678");
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(row.get::<_, f64>(5), 0.25);
    assert_eq!(row.get::<_, String>(6), "vv");
    assert_eq!(row.get::<_, String>(7), "c  ", "CHAR(n) is blank-padded");
    assert_eq!(row.get::<_, String>(8), "text");
    assert!(row.get::<_, bool>(9));
    let ts: SystemTime = row.get(10);
    let micros = ts.duration_since(UNIX_EPOCH).unwrap().as_micros();
    assert_eq!(micros, 1_704_164_645_250_000);
    // A timestamp parameter in binary.
    let found: i32 = c
        .query_one("SELECT id FROM all_types WHERE ts = $1", &[&ts])
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    s.stop().await;
}

#[tokio::test]
async fn errors_carry_sqlstate_and_keep_the_connection() {
    let s = server(2).await;
    let c = connect(&s).await;
    c.batch_execute("CREATE TABLE u (id INT PRIMARY KEY, v TEXT NOT NULL)")
        .await
        .unwrap();
    c.execute("INSERT INTO u VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let cases: Vec<(&str, SqlState)> = vec![
        ("INSERT INTO u VALUES (1, 'b')", SqlState::UNIQUE_VIOLATION),
        (
            "INSERT INTO u VALUES (2, NULL)",
            SqlState::NOT_NULL_VIOLATION,
        ),
        ("SELECT * FROM nope", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM u", SqlState::UNDEFINED_COLUMN),
        ("CREATE TABLE u (x INT)", SqlState::DUPLICATE_TABLE),
        ("SELEKT 1", SqlState::SYNTAX_ERROR),
        ("SELECT 1/0", SqlState::DIVISION_BY_ZERO),
        (
            "SELECT 2147483647 + 1",
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ),
        ("SELECT 'x'::int", SqlState::INVALID_TEXT_REPRESENTATION),
        ("SELECT 1; SELECT 2", SqlState::SYNTAX_ERROR),
        (
            "CREATE TYPE mood AS ENUM ('a', 'b')",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
    ];
    for (sql, want) in cases {
        // Extended protocol (prepare + execute)...
        let err = c.query(sql, &[]).await.expect_err(sql);
        assert_eq!(err.code(), Some(&want), "{sql}: {err:?}");
    }
    // ...and the simple protocol.
    let err = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    // A wrong parameter value is an error too, not a dropped connection.
    let err = c
        .query("SELECT v FROM u WHERE id = $1", &[&"x"])
        .await
        .unwrap_err();
    assert!(
        err.code().is_none() || err.code() == Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{err}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM u", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the connection still works");
    s.stop().await;
}

#[tokio::test]
async fn transaction_states_over_the_wire() {
    let s = server(1).await;
    let c = connect(&s).await;
    c.batch_execute("CREATE TABLE k (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO k VALUES (1, 1)", &[]).await.unwrap();
    let err = c
        .execute("INSERT INTO k VALUES (1, 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let err = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the failed transaction's insert was rolled back");
    // The driver's transaction API.
    let mut c = c;
    let t = c.transaction().await.unwrap();
    t.execute("INSERT INTO k VALUES (2, 2)", &[]).await.unwrap();
    t.commit().await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    s.stop().await;
}

#[tokio::test]
async fn conflicting_commit_reports_40001() {
    let s = server(4).await;
    let a = connect(&s).await;
    let b = connect(&s).await;
    a.batch_execute(
        "CREATE TABLE acc (id INT PRIMARY KEY, bal INT); INSERT INTO acc VALUES (1, 100), (2, 100)",
    )
    .await
    .unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let x: i32 = a
        .query_one("SELECT bal FROM acc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let y: i32 = b
        .query_one("SELECT bal FROM acc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    a.execute("UPDATE acc SET bal = $1 WHERE id = 1", &[&(x - 10)])
        .await
        .unwrap();
    b.execute("UPDATE acc SET bal = $1 WHERE id = 1", &[&(y - 20)])
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    let err = b.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE),
        "{err:?}"
    );
    // After a failed COMMIT the session is idle again and usable.
    let bal: i32 = b
        .query_one("SELECT bal FROM acc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bal, 90);
    s.stop().await;
}

/// Several clients move money between accounts on four shards with explicit
/// transactions, retrying 40001; an auditor's committed reads always see the
/// full total, and so does the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_total_is_invariant_over_the_wire() {
    const ACCOUNTS: i32 = 12;
    const CLIENTS: usize = 4;
    const TRANSFERS: usize = 150;
    let s = server(4).await;
    let setup = connect(&s).await;
    setup
        .batch_execute("CREATE TABLE bank (id INT PRIMARY KEY, bal BIGINT NOT NULL)")
        .await
        .unwrap();
    for id in 0..ACCOUNTS {
        setup
            .execute("INSERT INTO bank VALUES ($1, 1000)", &[&id])
            .await
            .unwrap();
    }
    let retries = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let mut c = connect(&s).await;
        let retries = retries.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = n as u64 * 7 + 3;
            let mut next = move |m: i32| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) % m as u64) as i32
            };
            let mut done = 0;
            while done < TRANSFERS {
                let (from, to, amount) = (next(ACCOUNTS), next(ACCOUNTS), next(100) as i64);
                if from == to {
                    continue;
                }
                let result: Result<(), tokio_postgres::Error> = async {
                    let t = c.transaction().await?;
                    let a: i64 = t
                        .query_one("SELECT bal FROM bank WHERE id = $1", &[&from])
                        .await?
                        .get(0);
                    let b: i64 = t
                        .query_one("SELECT bal FROM bank WHERE id = $1", &[&to])
                        .await?
                        .get(0);
                    t.execute(
                        "UPDATE bank SET bal = $1 WHERE id = $2",
                        &[&(a - amount), &from],
                    )
                    .await?;
                    t.execute(
                        "UPDATE bank SET bal = $1 WHERE id = $2",
                        &[&(b + amount), &to],
                    )
                    .await?;
                    t.commit().await
                }
                .await;
                match result {
                    Ok(()) => done += 1,
                    Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("transfer failed: {e:?}"),
                }
            }
        }));
    }
    let auditor = {
        let mut c = connect(&s).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut audits = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = c.transaction().await.unwrap();
                let total: Decimal = t
                    .query_one("SELECT sum(bal) FROM bank", &[])
                    .await
                    .unwrap()
                    .get(0);
                match t.commit().await {
                    Ok(()) => {
                        assert_eq!(
                            total,
                            Decimal::from(ACCOUNTS * 1000),
                            "a committed audit saw a partial transfer"
                        );
                        audits += 1;
                    }
                    Err(e) => assert_eq!(
                        e.code(),
                        Some(&SqlState::T_R_SERIALIZATION_FAILURE),
                        "{e:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            audits
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    auditor.await.unwrap();
    let total: Decimal = setup
        .query_one("SELECT sum(bal) FROM bank", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, Decimal::from(ACCOUNTS * 1000));
    let shards_used = s.db.stats.cross_shard_commits.load(Ordering::Relaxed);
    assert!(shards_used > 0, "transfers crossed shards");
    s.stop().await;
}

#[tokio::test]
async fn protocol_garbage_does_not_hurt_the_server() {
    let s = server(1).await;
    // Junk instead of a startup packet, a truncated message, and a huge
    // length prefix.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0, 0, 0, 8, 0, 3][..],
        &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4][..],
    ] {
        let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let _ = sock.write_all(junk).await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
    }
    // Garbage after a proper startup: a message with an impossible length.
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut startup = Vec::new();
    let body = b"\0\x03\0\0user\0test\0\0";
    startup.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    startup.extend_from_slice(body);
    sock.write_all(&startup).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "server closed during startup");
        seen.extend_from_slice(&buf[..n]);
    }
    sock.write_all(&[b'Q', 0, 0, 0, 2, b'x']).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
    let c = connect(&s).await;
    let n: i64 = c
        .query_one("SELECT 41::int8 + 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42, "the server still serves new clients");
    s.stop().await;
}

#[tokio::test]
async fn prepared_statement_survives_schema_change() {
    let s = server(1).await;
    let c = connect(&s).await;
    c.batch_execute("CREATE TABLE p (id INT PRIMARY KEY, v TEXT); INSERT INTO p VALUES (1, 'old')")
        .await
        .unwrap();
    let q = c.prepare("SELECT v FROM p WHERE id = $1").await.unwrap();
    assert_eq!(
        c.query_one(&q, &[&1i32]).await.unwrap().get::<_, String>(0),
        "old"
    );
    c.batch_execute("DROP TABLE p; CREATE TABLE p (id INT PRIMARY KEY, v TEXT); INSERT INTO p VALUES (1, 'new')").await.unwrap();
    assert_eq!(
        c.query_one(&q, &[&1i32]).await.unwrap().get::<_, String>(0),
        "new"
    );
    c.batch_execute("DROP TABLE p").await.unwrap();
    let err = c.query(&q, &[&1i32]).await.unwrap_err();
    assert_eq!(code(&err), "42P01");
    s.stop().await;
}

/// A frontend message: type byte, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads backend messages until ReadyForQuery; returns their type bytes.
async fn message_types(sock: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
            if buf.len() < len + 1 {
                break;
            }
            let kind = buf[0];
            buf.drain(..len + 1);
            seen.push(kind);
            if kind == b'Z' {
                return seen;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn describe_answers_nodata_for_statements_without_rows() {
    // pgjdbc reads a RowDescription as "this statement returns rows": an
    // INSERT with parameters must be described as NoData, as PostgreSQL
    // does, and a query as its columns.
    let s = server(1).await;
    connect(&s)
        .await
        .batch_execute("CREATE TABLE nd (a INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let body = b"\0\x03\0\0user\0test\0database\0test\0\0";
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(body);
    sock.write_all(&startup).await.unwrap();
    assert_eq!(message_types(&mut sock).await.last(), Some(&b'Z'));

    let mut batch = Vec::new();
    batch.extend(message(
        b'P',
        b"ins\0INSERT INTO nd VALUES ($1)\0\0\x01\0\0\0\x17",
    ));
    batch.extend(message(b'D', b"Sins\0"));
    batch.extend(message(b'P', b"sel\0SELECT a FROM nd WHERE a = $1\0\0\0"));
    batch.extend(message(b'D', b"Ssel\0"));
    // Bind `ins` to portal `p` with the text parameter '7', describe it.
    batch.extend(message(b'B', b"p\0ins\0\0\0\0\x01\0\0\0\x017\0\0"));
    batch.extend(message(b'D', b"Pp\0"));
    batch.extend(message(b'E', b"p\0\0\0\0\0"));
    batch.extend(message(b'S', b""));
    sock.write_all(&batch).await.unwrap();
    let types = message_types(&mut sock).await;
    assert_eq!(
        String::from_utf8(types).unwrap(),
        // ParseComplete, ParameterDescription, NoData; ParseComplete,
        // ParameterDescription, RowDescription; BindComplete, NoData,
        // CommandComplete, ReadyForQuery.
        "1tn1tT2nCZ"
    );
    s.stop().await;
}
