//! A damaged write-ahead log is refused, never served in part: the real
//! binary commits rows one by one, stops (SIGKILL, or SIGTERM), and a copy
//! of its data directory with one byte of the newest RocksDB log flipped
//! must not start, at several offsets; the undamaged directory must start
//! and hold every acknowledged row.

use std::path::{Path, PathBuf};

use tokio_postgres::NoTls;

mod common;

use common::{Mako, temp_data_dir};

const ROWS: i64 = 2_000;

/// Commits `ROWS` rows, one transaction each.
fn fill(mako: &Mako) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&mako.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        c.batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .await
            .unwrap();
        let insert = c.prepare("INSERT INTO t VALUES ($1, $2)").await.unwrap();
        for i in 0..ROWS {
            c.execute(&insert, &[&i, &format!("row {i}")])
                .await
                .unwrap();
        }
    });
}

fn count(port: u16) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("host=127.0.0.1 port={port} user=mako dbname=mako");
        let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0)
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The newest RocksDB write-ahead log (`NNNNNN.log`) of a data directory.
fn newest_wal(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("a write-ahead log")
}

fn flip(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_damaged_wal_is_refused_and_an_intact_one_recovers_everything() {
    for crash in [true, false] {
        let mut mako = Mako::start(1);
        fill(&mako);
        if crash {
            mako.kill();
        } else {
            assert!(mako.terminate().success());
        }
        let wal = newest_wal(mako.data_dir());
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!(len > 16 << 10, "the commits are in {wal:?} ({len} bytes)");
        for tenth in [2, 5, 8] {
            let copy = temp_data_dir("damaged-wal");
            copy_dir(mako.data_dir(), &copy);
            let offset = len * tenth / 10;
            flip(&copy.join(wal.file_name().unwrap()), offset);
            match mako.start_on(&copy) {
                Ok((mut child, port, _)) => {
                    let served = count(port);
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "started on a WAL damaged at {offset} of {len} (crash: {crash}) and served {served} of {ROWS} rows"
                    );
                }
                Err(printed) => {
                    let name = wal.file_name().unwrap().to_string_lossy().into_owned();
                    assert!(
                        printed.contains("refusing to start")
                            && printed.contains("orruption")
                            && printed.contains(&name),
                        "damage at {offset} of {len} (crash: {crash}) should be refused naming {name}: {printed}"
                    );
                }
            }
            let _ = std::fs::remove_dir_all(&copy);
        }
        // The directory itself is intact and holds every row.
        mako.restart();
        assert_eq!(count(mako.port), ROWS, "crash: {crash}");
    }
}
