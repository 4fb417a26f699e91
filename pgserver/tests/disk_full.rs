//! A full disk under a real `mako` process: the data directory sits on a
//! small tmpfs, and a client inserts large rows until the disk is full.
//! Then:
//!
//! - the failing commit gets SQLSTATE 53100 (disk full) and the server
//!   stays up; later writes fail the same way, on any connection;
//! - reads go on and see exactly the acknowledged rows (the failed commit
//!   was rolled back in memory);
//! - after the disk is enlarged and the server restarted, every
//!   acknowledged row is there, and writes work again.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN); without it the test
//! says so and checks nothing. CI runs as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

mod common;

use common::{Mako, connect, temp_data_dir};

/// A tmpfs mounted on a fresh directory; unmounted and removed on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = temp_data_dir("tmpfs");
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "cannot resize the tmpfs");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

async fn stored_ids(c: &Client) -> Vec<i32> {
    c.query("SELECT id FROM blobs ORDER BY id", &[])
        .await
        .expect("reads go on")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_full_disk_fails_commits_with_53100_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount("48m") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut mako = Mako::start_in(disk.path().join("data"), 2, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = rt.block_on(async {
        let c = connect(mako.port).await;
        c.batch_execute("CREATE TABLE blobs (id INT PRIMARY KEY, body TEXT)")
            .await
            .unwrap();
        let body = "x".repeat(512 * 1024);
        let mut acked = Vec::new();
        let mut failure = None;
        for id in 0..1_000i32 {
            match c
                .execute("INSERT INTO blobs VALUES ($1, $2)", &[&id, &body])
                .await
            {
                Ok(_) => acked.push(id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let e = failure.expect("a 48 MB disk fills up before 500 MB are written");
        assert_eq!(e.code(), Some(&SqlState::DISK_FULL), "{e:?}");
        assert!(acked.len() > 10, "only {} rows fit", acked.len());

        // The server is up; reads see exactly what was acknowledged.
        assert_eq!(stored_ids(&c).await, acked);
        let other = connect(mako.port).await;
        assert_eq!(stored_ids(&other).await, acked);
        // Reads of one row (one shard, the single-shard commit path) too.
        let last = *acked.last().unwrap();
        let row = other
            .query_one("SELECT id, length(body) FROM blobs WHERE id = $1", &[&last])
            .await
            .expect("a point read goes on");
        assert_eq!(row.get::<_, i32>(1), 512 * 1024);
        let e = other
            .execute("UPDATE blobs SET body = 'small' WHERE id = 0", &[])
            .await
            .expect_err("writes are refused");
        assert_eq!(e.code(), Some(&SqlState::DISK_FULL), "{e:?}");
        acked
    });
    let log = mako.log().join("\n");
    assert!(log.contains("commit log has stopped"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    eprintln!(
        "{} rows acknowledged before the disk filled up",
        acked.len()
    );

    // More room, a restart (a crash: SIGKILL), and everything is there.
    disk.resize("512m");
    mako.restart();
    rt.block_on(async {
        let c = connect(mako.port).await;
        assert_eq!(stored_ids(&c).await, acked);
        c.execute("UPDATE blobs SET body = 'small' WHERE id = 0", &[])
            .await
            .expect("writes work again");
    });
    drop(mako);
}
