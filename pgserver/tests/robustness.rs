//! Robustness against what clients send, on the real `mako` binary: deep
//! and long statements are errors (54001) and not crashes, a long
//! statement holds up no one else, statements can be cancelled (cancel
//! request, `statement_timeout`, SIGTERM), and the server's limits
//! (connections, statement memory) hold.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

mod common;

use common::{Mako, peak_rss_kib};

async fn connect(mako: &Mako) -> Client {
    common::connect(mako.port).await
}

/// A long statement's shape: what it is, its head, the separator and
/// the i-th term.
type Shape<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(usize) -> String);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The SQLSTATE of a failed statement (panics on success or on a broken
/// connection: the server must answer).
fn code(r: Result<impl std::fmt::Debug, tokio_postgres::Error>) -> SqlState {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => match e.code() {
            Some(c) => c.clone(),
            None => panic!("no SQLSTATE (connection lost?): {e}"),
        },
    }
}

/// Runs `sql` and accepts a result or 54001: what PostgreSQL does with
/// such statements (runs most, refuses the deepest).
async fn statement_memory(c: &Client) -> String {
    c.query_one("SHOW mako.statement_memory", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
}

async fn runs_or_too_deep(c: &Client, what: &str, sql: &str) {
    match c.simple_query(sql).await {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.code(),
            Some(&SqlState::STATEMENT_TOO_COMPLEX),
            "{what}: {e}"
        ),
    }
}

/// The server answers quickly on a fresh connection.
async fn still_serving(mako: &Mako) {
    let c = connect(mako).await;
    let row = c.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}

#[test]
fn deep_and_long_statements_are_errors_not_crashes() {
    let mut mako = Mako::start(1);
    let rt = runtime();
    rt.block_on(async {
        let c = connect(&mako).await;
        let list = |n: usize, sep: &str, item: &dyn Fn(usize) -> String| {
            (0..n).map(item).collect::<Vec<_>>().join(sep)
        };
        // (what, statement head, separator, one term); the statement is
        // the head followed by n terms.
        let shapes: [Shape<'_>; 6] = [
            ("IN list", "SELECT 1 WHERE 5 IN (", ", ", &|i| i.to_string()),
            ("1+1+…", "SELECT ", " + ", &|_| "1".into()),
            ("a || a || …", "SELECT ", " || ", &|_| "'a'".into()),
            ("AND chain", "SELECT 1 WHERE ", " AND ", &|_| "true".into()),
            ("OR chain", "SELECT 1 WHERE ", " OR ", &|_| "false".into()),
            ("UNION chain", "", " UNION ", &|i| format!("SELECT {i}")),
        ];
        for n in [1_000, 3_000, 20_000] {
            for (what, head, sep, item) in &shapes {
                let n = if *what == "UNION chain" {
                    n.min(5_000)
                } else {
                    n
                };
                let close = if *what == "IN list" { ")" } else { "" };
                let sql = format!("{head}{}{close}", list(n, sep, *item));
                runs_or_too_deep(&c, what, &sql).await;
            }
        }
        // ORMs send thousands of parameters.
        for n in [3_000, 6_000] {
            let sql = format!(
                "SELECT count(*) FROM (VALUES (1)) v(x) WHERE x IN ({})",
                list(n, ", ", &|i| format!("${}", i + 1))
            );
            let values: Vec<i32> = (0..n as i32).collect();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            match c.query(&sql, &params).await {
                Ok(rows) => assert_eq!(rows[0].get::<_, i64>(0), 1),
                Err(e) => assert_eq!(e.code(), Some(&SqlState::STATEMENT_TOO_COMPLEX), "{e}"),
            }
        }
        // Views of views of views.
        c.batch_execute("CREATE VIEW v0 AS SELECT 1 AS x")
            .await
            .unwrap();
        for i in 1..=200 {
            c.batch_execute(&format!("CREATE VIEW v{i} AS SELECT x FROM v{}", i - 1))
                .await
                .unwrap_or_else(|e| panic!("view {i}: {e}"));
        }
        runs_or_too_deep(&c, "200 nested views", "SELECT * FROM v200").await;
        // A view may not come to refer to itself.
        c.batch_execute("CREATE VIEW a AS SELECT 1 AS x; CREATE VIEW b AS SELECT x FROM a")
            .await
            .unwrap();
        let e = code(
            c.batch_execute("CREATE OR REPLACE VIEW a AS SELECT x FROM b")
                .await,
        );
        assert_eq!(e, SqlState::INVALID_OBJECT_DEFINITION);
        assert_eq!(
            code(
                c.batch_execute("CREATE OR REPLACE VIEW a AS SELECT x FROM a")
                    .await
            ),
            SqlState::INVALID_OBJECT_DEFINITION
        );
        let row = c.query_one("SELECT x FROM b", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        still_serving(&mako).await;
    });
    assert!(mako.is_running(), "the server survived: {:?}", mako.log());
    // And it starts again on the catalog it has.
    mako.restart();
    rt.block_on(still_serving(&mako));
}

/// A table of `n` rows for statements that take a while: a self-join of it
/// with a filter nothing passes is CPU work that holds little memory.
async fn slow_table(c: &Client, n: usize) {
    c.batch_execute("CREATE TABLE slow (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let values: Vec<String> = (0..n).map(|i| format!("({i}, {i})")).collect();
    c.batch_execute(&format!("INSERT INTO slow VALUES {}", values.join(",")))
        .await
        .unwrap();
}

/// Runs for many seconds: every pair of three copies of `slow`.
const LONG: &str = "SELECT count(*) FROM slow a, slow b, slow c WHERE a.v + b.v + c.v < 0";

#[test]
fn a_long_statement_holds_up_no_one_and_can_be_cancelled() {
    let mako = Mako::start(1);
    let rt = runtime();
    rt.block_on(async {
        let a = connect(&mako).await;
        slow_table(&a, 1_000).await;
        let cancel = a.cancel_token();
        let long = tokio::spawn(async move {
            let r = a.simple_query(LONG).await;
            (r.map(|_| ()), a)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!long.is_finished(), "the statement should still run");
        // Other sessions, new and old, are served meanwhile.
        let b = connect(&mako).await;
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            b.simple_query("SELECT 1").await.unwrap();
            best = best.min(t.elapsed());
        }
        assert!(best < Duration::from_millis(100), "SELECT 1 took {best:?}");
        let t = Instant::now();
        still_serving(&mako).await;
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a new connection waited"
        );
        // A cancel request ends it, with 57014, and the session goes on.
        let t = Instant::now();
        cancel.cancel_query(NoTls).await.unwrap();
        let (r, a) = long.await.unwrap();
        assert_eq!(code(r), SqlState::QUERY_CANCELED);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "cancel took {:?}",
            t.elapsed()
        );
        a.simple_query("SELECT 1").await.unwrap();
        // A cancel request with a wrong key is ignored.
        let a_cancel = a.cancel_token();
        let long = tokio::spawn(async move {
            let r = a.simple_query(LONG).await;
            (r.map(|_| ()), a)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wrong = b.cancel_token(); // b's key, not a's
        wrong.cancel_query(NoTls).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!long.is_finished(), "another session's key cancelled it");
        a_cancel.cancel_query(NoTls).await.unwrap();
        let (r, a) = long.await.unwrap();
        assert_eq!(code(r), SqlState::QUERY_CANCELED);

        // statement_timeout, in the simple and the extended protocol, in
        // and out of a transaction block.
        a.batch_execute("SET statement_timeout = '500ms'")
            .await
            .unwrap();
        let t = Instant::now();
        assert_eq!(code(a.simple_query(LONG).await), SqlState::QUERY_CANCELED);
        assert!(
            t.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(code(a.query(LONG, &[]).await), SqlState::QUERY_CANCELED);
        a.batch_execute("BEGIN").await.unwrap();
        assert_eq!(code(a.query(LONG, &[]).await), SqlState::QUERY_CANCELED);
        assert_eq!(
            code(a.simple_query("SELECT 1").await),
            SqlState::IN_FAILED_SQL_TRANSACTION
        );
        a.batch_execute("ROLLBACK").await.unwrap();
        a.batch_execute("SET statement_timeout = 0").await.unwrap();
        let row = a.query_one("SELECT count(*) FROM slow", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1_000);
        assert_eq!(
            code(a.batch_execute("SET statement_timeout = 'soon'").await),
            SqlState::INVALID_PARAMETER_VALUE
        );
    });
}

#[test]
fn sigterm_stops_running_statements_and_keeps_the_data() {
    let mut mako = Mako::start(1);
    let rt = runtime();
    let a = rt.block_on(async {
        let a = connect(&mako).await;
        slow_table(&a, 1_000).await;
        a
    });
    let long = rt.spawn(async move { a.simple_query(LONG).await.map(|_| ()) });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let status = mako.terminate();
    assert!(status.success(), "{status:?}: {:?}", mako.log());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let r = rt.block_on(long).unwrap();
    if let Err(e) = &r {
        // The client hears why, unless the socket closed first.
        if let Some(c) = e.code() {
            assert_eq!(c, &SqlState::ADMIN_SHUTDOWN, "{e}");
        }
    } else {
        panic!("the statement ran to the end");
    }
    mako.restart();
    rt.block_on(async {
        let c = connect(&mako).await;
        let row = c.query_one("SELECT count(*) FROM slow", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1_000);
    });
}

#[test]
fn connection_and_memory_limits_hold() {
    let mut mako = Mako::start_with_args(
        1,
        &[
            "--max-connections",
            "3",
            "--statement-memory",
            "64MB",
            "--max-write-set",
            "1MB",
        ],
    );
    let rt = runtime();
    rt.block_on(async {
        let a = connect(&mako).await;
        let _b = connect(&mako).await;
        let c = connect(&mako).await;
        let e = tokio_postgres::connect(&mako.url(), NoTls)
            .await
            .err()
            .expect("a 4th connection");
        assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
        drop(c);
        // The slot frees once the server sees the connection end.
        let mut again = None;
        for _ in 0..50 {
            if let Ok((client, conn)) = tokio_postgres::connect(&mako.url(), NoTls).await {
                tokio::spawn(conn);
                again = Some(client);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = again.expect("a connection after one closed");
        drop(c);

        // A session may lower its memory limit, never raise it; the
        // server's ceiling is what SHOW and RESET give.
        assert_eq!(statement_memory(&a).await, "64MB");
        assert_eq!(
            code(
                a.batch_execute("SET mako.statement_memory = '1000000GB'")
                    .await
            ),
            SqlState::INVALID_PARAMETER_VALUE
        );
        a.batch_execute("SET mako.statement_memory = '32MB'")
            .await
            .unwrap();
        assert_eq!(statement_memory(&a).await, "32MB");
        a.batch_execute("RESET mako.statement_memory")
            .await
            .unwrap();
        assert_eq!(statement_memory(&a).await, "64MB");
        // No single value may outgrow the budget: 2 x 40 MB of text.
        let big = "x".repeat(40 << 20);
        assert_eq!(
            code(a.query("SELECT length($1 || $1)", &[&big]).await),
            SqlState::OUT_OF_MEMORY
        );
        assert_eq!(
            code(a.query("SELECT length(concat($1, $1))", &[&big]).await),
            SqlState::OUT_OF_MEMORY
        );
        let row = a.query_one("SELECT length($1)", &[&big]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 40 << 20);
        // A cross join far beyond the budget fails early, without taking
        // the memory first.
        a.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, pad TEXT)")
            .await
            .unwrap();
        let values: Vec<String> = (0..3_000).map(|i| format!("({i}, 'row {i}')")).collect();
        a.batch_execute(&format!("INSERT INTO big VALUES {}", values.join(",")))
            .await
            .unwrap();
        let t = Instant::now();
        assert_eq!(
            code(
                a.simple_query("SELECT count(*) FROM big x, big y, big z")
                    .await
            ),
            SqlState::OUT_OF_MEMORY
        );
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        a.simple_query("SELECT 1").await.unwrap();

        // A transaction's writes are bounded: 3,000 rows a statement fit,
        // a few statements more do not, and nothing of it commits.
        a.batch_execute("CREATE TABLE w (id INT PRIMARY KEY, pad TEXT); BEGIN")
            .await
            .unwrap();
        let mut failed = None;
        for k in 0..10 {
            let r = a
                .batch_execute(&format!(
                    "INSERT INTO w SELECT id + {}, pad FROM big",
                    k * 3_000
                ))
                .await;
            if let Err(e) = r {
                failed = Some((k, e));
                break;
            }
        }
        let (k, e) = failed.expect("the write set outgrew 1MB");
        assert!(k >= 1, "the first 3,000 rows fit");
        assert_eq!(e.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e}");
        a.batch_execute("ROLLBACK").await.unwrap();
        let row = a.query_one("SELECT count(*) FROM w", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 0);
    });
    let peak = peak_rss_kib(mako.pid());
    assert!(
        peak < 1024 * 1024,
        "peak RSS {peak} KiB with a 64MB statement budget"
    );
    assert!(mako.is_running());
}

#[test]
fn a_session_idle_in_a_transaction_too_long_is_ended() {
    let mako = Mako::start(1);
    let rt = runtime();
    rt.block_on(async {
        let a = connect(&mako).await;
        a.batch_execute("CREATE TABLE kept (id INT PRIMARY KEY)")
            .await
            .unwrap();
        a.batch_execute("SET idle_in_transaction_session_timeout = '300ms'")
            .await
            .unwrap();
        // Idle outside a transaction: nothing happens.
        tokio::time::sleep(Duration::from_millis(700)).await;
        a.simple_query("SELECT 1").await.unwrap();
        // Idle inside one for longer than the timeout: the server ends
        // the session.
        a.batch_execute("BEGIN; INSERT INTO kept VALUES (1)")
            .await
            .unwrap();
        a.simple_query("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let r = a.simple_query("SELECT 1").await;
        assert!(
            r.as_ref().is_err_and(|e| e.is_closed()
                || e.code().is_none()
                || e.code() == Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT)),
            "the idle session should have been ended: {r:?}"
        );
        // Its transaction did not commit.
        let b = connect(&mako).await;
        let row = b.query_one("SELECT count(*) FROM kept", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 0);
    });
}

/// A connection speaking the protocol by hand, to send what drivers never
/// do.
struct Raw(std::net::TcpStream);

impl Raw {
    /// Connects and starts up (protocol 3.0, user mako).
    fn connect(port: u16) -> Raw {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Raw(s);
        let body = b"\x00\x03\x00\x00user\x00mako\x00\x00";
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(body);
        raw.bytes(&startup);
        let msgs = raw.until_ready();
        assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "{msgs:?}");
        raw
    }

    fn bytes(&mut self, b: &[u8]) {
        use std::io::Write;
        self.0.write_all(b).unwrap();
    }

    fn send(&mut self, ty: u8, body: &[u8]) {
        let mut m = vec![ty];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        self.bytes(&m);
    }

    /// Backend messages up to ReadyForQuery, or until the server closes
    /// the connection (then the last is `(0, [])`).
    fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        use std::io::Read;
        let mut out = Vec::new();
        loop {
            let mut head = [0u8; 5];
            if self.0.read_exact(&mut head).is_err() {
                out.push((0, Vec::new()));
                return out;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            self.0.read_exact(&mut body).unwrap();
            let ty = head[0];
            out.push((ty, body));
            if ty == b'Z' {
                return out;
            }
        }
    }
}

/// The severity and SQLSTATE of the first ErrorResponse among `msgs`.
fn error_of(msgs: &[(u8, Vec<u8>)]) -> Option<(String, String)> {
    let (_, body) = msgs.iter().find(|m| m.0 == b'E')?;
    let (mut severity, mut code) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        match field.first() {
            Some(b'S') => severity = String::from_utf8_lossy(&field[1..]).into(),
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into(),
            _ => {}
        }
    }
    Some((severity, code))
}

/// Malformed protocol messages end their connection with PostgreSQL's
/// FATAL 08P01 (not a panic in a decoder), text that is not UTF-8 is an
/// ERROR 22021 after which the session goes on, a huge declared length is
/// refused before its bytes arrive, and other sessions see nothing of it.
#[test]
fn malformed_messages_are_protocol_errors_and_others_go_on() {
    let mako = Mako::start(1);
    let rt = runtime();
    let other = rt.block_on(connect(&mako));

    // Not UTF-8: an ERROR, as in PostgreSQL; the session goes on.
    let mut a = Raw::connect(mako.port);
    a.send(b'Q', b"SELECT '\xff'\0");
    let msgs = a.until_ready();
    assert_eq!(
        error_of(&msgs),
        Some(("ERROR".into(), "22021".into())),
        "{msgs:?}"
    );
    a.send(b'P', b"s1\0SELECT '\xc3('\0\0\0");
    a.send(b'S', b"");
    let msgs = a.until_ready();
    assert_eq!(
        error_of(&msgs),
        Some(("ERROR".into(), "22021".into())),
        "{msgs:?}"
    );
    a.send(b'Q', b"SELECT 41 + 1\0");
    let msgs = a.until_ready();
    assert!(
        msgs.iter().any(|m| m.0 == b'D' && m.1.ends_with(b"42")),
        "{msgs:?}"
    );

    // Malformed messages: FATAL 08P01, then the server closes.
    let bind_past_its_end = b"\0\0\x00\x00\x00\x01\x00\x00\x00\x09ab\x00\x00".to_vec();
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (b'B', bind_past_its_end),
        (b'P', b"s\0SELECT 1\0\x7f\xff".to_vec()),
        (b'D', b"X\0".to_vec()),
        (b'Q', b"SELECT 1".to_vec()),
        (b'W', b"".to_vec()),
    ];
    for (ty, body) in cases {
        let mut c = Raw::connect(mako.port);
        c.send(ty, &body);
        let msgs = c.until_ready();
        assert_eq!(
            error_of(&msgs),
            Some(("FATAL".into(), "08P01".into())),
            "{}: {msgs:?}",
            char::from(ty)
        );
        assert_eq!(
            msgs.last(),
            Some(&(0, Vec::new())),
            "the connection was closed"
        );
    }

    // Declared lengths of a gigabyte, before and after startup: refused at
    // once, nothing buffered.
    let rss_before = peak_rss_kib(mako.pid());
    for _ in 0..4 {
        let mut c = Raw(std::net::TcpStream::connect(("127.0.0.1", mako.port)).unwrap());
        c.0.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut startup = (1u32 << 30).to_be_bytes().to_vec();
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(&[b'x'; 4096]);
        c.bytes(&startup);
        let msgs = c.until_ready();
        assert_eq!(
            error_of(&msgs),
            Some(("FATAL".into(), "08P01".into())),
            "{msgs:?}"
        );
        let mut d = Raw::connect(mako.port);
        d.bytes(&[b'S', 0x7f, 0xff, 0xff, 0xff]);
        let msgs = d.until_ready();
        assert_eq!(
            error_of(&msgs),
            Some(("FATAL".into(), "08P01".into())),
            "{msgs:?}"
        );
    }
    assert!(peak_rss_kib(mako.pid()) < rss_before + 64 * 1024);

    // The other session saw nothing of it; no panic anywhere.
    rt.block_on(async {
        other.simple_query("SELECT 1").await.unwrap();
    });
    let panics: Vec<String> = mako
        .log()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
}
