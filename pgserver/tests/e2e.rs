//! End-to-end: the real `mako` binary, driven by `psql` (the real client)
//! and tokio-postgres, then stopped with SIGTERM.
//!
//! `psql` must be installed (`.ci/run` installs it); set `MAKO_SKIP_PSQL=1`
//! to run the rest without it.

use std::process::Command;

mod common;

use common::{Mako, spawn, temp_data_dir};

fn psql_available() -> bool {
    if std::env::var_os("MAKO_SKIP_PSQL").is_some() {
        return false;
    }
    Command::new("psql").arg("--version").output().is_ok()
        || panic!("psql is not installed: run .ci/run (which installs it) or set MAKO_SKIP_PSQL=1")
}

#[test]
fn psql_session_against_the_real_binary() {
    if !psql_available() {
        eprintln!("skipping the psql part (MAKO_SKIP_PSQL is set)");
        return;
    }
    let mut mako = Mako::start(4);
    // psql runs each -c string as one simple-protocol query.
    let out = mako.psql(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, balance NUMERIC(12,2));
         INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 50), (3, 'cy', 0);",
    );
    assert_eq!(out.trim(), "CREATE TABLE\nINSERT 0 3",);
    let plan = mako.psql("EXPLAIN SELECT owner FROM accounts WHERE id = 2");
    assert!(
        plan.contains("Point Get on accounts (1 shard): id = 2"),
        "{plan}"
    );
    assert_eq!(
        mako.psql("SELECT owner FROM accounts WHERE id = 2").trim(),
        "bob"
    );
    assert_eq!(
        mako.psql("UPDATE accounts SET balance = balance + 1 WHERE id >= 2")
            .trim(),
        "UPDATE 2"
    );
    assert_eq!(
        mako.psql("DELETE FROM accounts WHERE id = 3").trim(),
        "DELETE 1"
    );
    let out = mako.psql("BEGIN; UPDATE accounts SET balance = 0 WHERE id = 1; ROLLBACK; SELECT balance FROM accounts WHERE id = 1");
    assert!(out.contains("100.00"), "{out}");
    let out = mako.psql("SELECT 1/0");
    assert!(out.contains("ERROR:  division by zero"), "{out}");
    let out = mako.psql("SELECT id, balance FROM accounts ORDER BY id");
    assert_eq!(out.trim(), "1|100.00\n2|51.00");
    let status = mako.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// psql's Ctrl-C (SIGINT while a statement runs) sends a CancelRequest
/// with the session's key: the statement ends within a second with
/// "canceling statement due to user request", as on PostgreSQL.
#[test]
fn psql_ctrl_c_cancels_the_running_statement() {
    if !psql_available() {
        eprintln!("skipping (MAKO_SKIP_PSQL is set)");
        return;
    }
    let mut mako = Mako::start(1);
    let values: Vec<String> = (0..1_000).map(|i| format!("({i}, {i})")).collect();
    let out = mako.psql(&format!(
        "CREATE TABLE slow (id INT PRIMARY KEY, v INT); INSERT INTO slow VALUES {}",
        values.join(",")
    ));
    assert!(out.contains("INSERT 0 1000"), "{out}");
    // Every triple of rows: far longer than the test waits.
    let long = "SELECT count(*) FROM slow a, slow b, slow c WHERE a.v + b.v + c.v < 0";
    let mut psql = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &mako.port.to_string()])
        .args(["-U", "mako", "-d", "mako", "-c", long])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        psql.try_wait().unwrap().is_none(),
        "the statement ended early"
    );
    let sent = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &psql.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = psql.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(10),
            "psql still waits after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let took = sent.elapsed();
    let out = psql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR:  canceling statement due to user request"),
        "{stderr}"
    );
    assert!(!status.success());
    assert!(
        took < std::time::Duration::from_secs(1),
        "cancel took {took:?}"
    );
    assert_eq!(mako.psql("SELECT 1").trim(), "1");
    assert!(mako.terminate().success());
}

#[test]
fn conflicting_commit_reports_40001_on_the_real_binary() {
    let mut mako = Mako::start(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("host=127.0.0.1 port={} user=mako", mako.port);
        let (a, ca) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let (b, cb) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(ca);
        tokio::spawn(cb);
        a.batch_execute("CREATE TABLE c (id INT PRIMARY KEY, n INT); INSERT INTO c VALUES (1, 0)")
            .await
            .unwrap();
        a.batch_execute("BEGIN; UPDATE c SET n = n + 1 WHERE id = 1")
            .await
            .unwrap();
        b.batch_execute("BEGIN; UPDATE c SET n = n + 1 WHERE id = 1")
            .await
            .unwrap();
        a.batch_execute("COMMIT").await.unwrap();
        let err = b.batch_execute("COMMIT").await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("40001"), "{err:?}");
    });
    assert!(mako.terminate().success());
}

/// A statement's commit is acknowledged only once durable; the server
/// waits for that without blocking its thread, and a commit that can never
/// become durable (its log write failed) is reported as such, in the
/// simple and in the extended protocol, leaving the session usable and
/// idle (a session left in a failed transaction would refuse the SELECT).
#[test]
fn a_commit_whose_log_write_fails_is_an_error_in_both_protocols() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for extended in [false, true] {
        // The first log write (CREATE TABLE) succeeds, the next fails.
        let mut mako = Mako::start_with_env(1, &[("MAKO_FAULT_LOG_FAIL_AFTER", "1")]);
        rt.block_on(async {
            let url = format!("host=127.0.0.1 port={} user=mako", mako.port);
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .simple_query("CREATE TABLE f (id BIGINT PRIMARY KEY)")
                .await
                .expect("the first log write succeeds");
            let err = if extended {
                client
                    .execute("INSERT INTO f VALUES ($1)", &[&1i64])
                    .await
                    .unwrap_err()
            } else {
                client
                    .simple_query("INSERT INTO f VALUES (1)")
                    .await
                    .unwrap_err()
            };
            assert_eq!(err.code().map(|c| c.code()), Some("53100"), "{err:?}");
            let rows = client.query("SELECT count(*) FROM f", &[]).await.unwrap();
            assert_eq!(
                rows[0].get::<_, i64>(0),
                0,
                "the failed commit is not visible"
            );
        });
        mako.terminate();
    }
}

#[test]
fn help_explains_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_mako"))
        .args(["start", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--data-dir", "--shards", "127.0.0.1:5433"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mako"))
        .args(["start", "--shards", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "zero shards is refused");
}

#[test]
fn slt_command_counts_passes_and_failures() {
    let mut mako = Mako::start(1);
    let url = format!("postgres://mako@127.0.0.1:{}/mako", mako.port);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wrong.test");
    let out = Command::new(env!("CARGO_BIN_EXE_mako"))
        .args(["slt", "--url", &url, fixture])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "failures make the command fail:\n{text}"
    );
    assert!(text.contains("5 passed, 3 failed"), "{text}");
    assert!(
        text.contains("SELECT count(*) FROM t"),
        "the failing SQL is shown:\n{text}"
    );
    assert!(text.contains("values hashing to"), "{text}");
    assert!(
        text.contains("total: 1 files (1 with failures), 5 records passed, 3 failed"),
        "{text}"
    );
    // A file that passes, in the other format.
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/slt/setops.slt");
    let out = Command::new(env!("CARGO_BIN_EXE_mako"))
        .args(["slt", "--url", &url, "--label", "mako", good])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    assert!(mako.terminate().success());
}

#[test]
fn data_survives_a_restart_and_a_foreign_directory_is_refused() {
    if !psql_available() {
        eprintln!("skipping (MAKO_SKIP_PSQL is set)");
        return;
    }
    let mut mako = Mako::start(2);
    let out = mako.psql(
        "CREATE TABLE kept (id INT PRIMARY KEY, note TEXT);
         INSERT INTO kept VALUES (1, 'one'), (2, 'two');
         DELETE FROM kept WHERE id = 2;",
    );
    assert!(!out.contains("ERROR"), "{out}");
    assert!(mako.terminate().success());
    mako.restart();
    assert_eq!(mako.psql("SELECT id, note FROM kept").trim(), "1|one");
    let recovered = mako.log().join("\n");
    assert!(recovered.contains("recovered"), "{recovered}");
    assert!(recovered.contains("tables=1"), "{recovered}");
    // The server says what an acknowledgement promises, and it is fixed.
    assert!(
        mako.psql("SHOW mako.durability").starts_with("sync=group"),
        "durability setting: {}",
        mako.psql("SHOW mako.durability")
    );
    let out = mako.psql("SET mako.durability = 'off'");
    assert!(out.contains("cannot be changed"), "{out}");

    // A second server on the same directory is refused while the first
    // runs; another shard count is refused at any time.
    let err = spawn(mako.data_dir(), 2, &[]).expect_err("refused");
    assert!(err.contains("in use by another process"), "{err}");
    assert!(mako.terminate().success());
    let err = spawn(mako.data_dir(), 3, &[]).expect_err("refused");
    assert!(err.contains("--shards 2"), "{err}");

    // So is a directory that holds something else.
    let foreign = temp_data_dir("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "precious").unwrap();
    let err = spawn(&foreign, 1, &[]).expect_err("refused");
    assert!(err.contains("not a Mako data directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.join("thesis.tex")).unwrap(),
        "precious"
    );
    let _ = std::fs::remove_dir_all(&foreign);
}
