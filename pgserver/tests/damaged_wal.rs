//! A damaged write-ahead log is refused, never served in part: the real
//! binary commits rows one by one and is killed (SIGKILL), and a copy of
//! its data directory with one byte of the newest RocksDB log flipped
//! must not start, at several offsets; the undamaged directory must start
//! and hold every acknowledged row. After a clean stop (SIGTERM) the data
//! is in table files and the log holds nothing it needs: a log cut to
//! nothing loses no row, and a damaged table file is refused.

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
    files(dir, "log")
        .into_iter()
        .max()
        .expect("a write-ahead log")
}

/// The files of `dir` whose extension is `ext`.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

/// Starts a server on a copy of `mako`'s directory changed by `damage`:
/// `Ok(rows served)` or `Err(what it printed)` when it refused.
fn start_damaged(mako: &Mako, damage: impl FnOnce(&Path)) -> Result<i64, String> {
    let copy = temp_data_dir("damaged-wal");
    copy_dir(mako.data_dir(), &copy);
    damage(&copy);
    let outcome = mako.start_on(&copy).map(|(mut child, port, _)| {
        let served = count(port);
        let _ = child.kill();
        let _ = child.wait();
        served
    });
    let _ = std::fs::remove_dir_all(&copy);
    outcome
}

fn flip(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_damaged_wal_is_refused_and_an_intact_one_recovers_everything() {
    let mut mako = Mako::start(1);
    fill(&mako);
    mako.kill();
    let wal = newest_wal(mako.data_dir());
    let name = wal.file_name().unwrap().to_string_lossy().into_owned();
    let len = std::fs::metadata(&wal).unwrap().len();
    assert!(len > 16 << 10, "the commits are in {wal:?} ({len} bytes)");
    for tenth in [2, 5, 8] {
        let offset = len * tenth / 10;
        match start_damaged(&mako, |copy| flip(&copy.join(&name), offset)) {
            Ok(served) => panic!(
                "started on a WAL damaged at {offset} of {len} and served {served} of {ROWS} rows"
            ),
            Err(printed) => assert!(
                printed.contains("refusing to start")
                    && printed.contains("orruption")
                    && printed.contains(&name),
                "damage at {offset} of {len} should be refused naming {name}: {printed}"
            ),
        }
    }
    // The directory itself is intact and holds every row.
    mako.restart();
    assert_eq!(count(mako.port), ROWS);
}

#[test]
fn after_a_clean_stop_nothing_depends_on_the_wal() {
    let mut mako = Mako::start(1);
    fill(&mako);
    assert!(mako.terminate().success());
    let wal = newest_wal(mako.data_dir());
    let len = std::fs::metadata(&wal).unwrap().len();
    assert!(len < 4 << 10, "{wal:?} still holds {len} bytes");
    // Every log cut to nothing: every row is still there.
    let cut = start_damaged(&mako, |copy| {
        for log in files(copy, "log") {
            std::fs::OpenOptions::new()
                .write(true)
                .open(log)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    });
    assert_eq!(cut, Ok(ROWS));
    // Damaged table files are refused. (Each is read whole at the start:
    // the rows, the log's remains, the metadata. RocksDB names the file it
    // blames: a table file, or the MANIFEST when a table's properties do
    // not parse.)
    let tables = files(mako.data_dir(), "sst");
    assert!(!tables.is_empty(), "no table files");
    for tenth in [2, 5] {
        let damage = |copy: &Path| {
            for t in &tables {
                let len = std::fs::metadata(t).unwrap().len();
                flip(&copy.join(t.file_name().unwrap()), len * tenth / 10);
            }
        };
        match start_damaged(&mako, damage) {
            Ok(served) => panic!(
                "started on table files damaged at {tenth}/10 and served {served} of {ROWS} rows"
            ),
            Err(printed) => assert!(
                printed.contains("refusing to start")
                    && printed.contains("orruption")
                    && (printed.contains(".sst") || printed.contains("MANIFEST")),
                "damage at {tenth}/10 should be refused naming a file: {printed}"
            ),
        }
    }
    mako.restart();
    assert_eq!(count(mako.port), ROWS);
}
