//! Crash recovery of the real binary: clients run small transactions
//! (bank transfers, each also inserting an event row with a unique id)
//! against a 4-shard `mako` process, which is killed with SIGKILL at a
//! random moment and restarted on the same data directory, several times.
//! After each restart:
//!
//! - every transaction whose COMMIT was acknowledged is there (its event
//!   row exists);
//! - no transaction is there in part: replaying the event rows on the
//!   initial balances gives exactly the balances stored, so each durable
//!   transfer has both its updates and its event, and nothing else moved
//!   money;
//! - the bank total holds.
//!
//! The server delays its log writes (a fault-injection setting) so that
//! many commits are always installed but not yet durable when it dies.
//!
//! CRASH_SEED fixes the random kill moments (the seed is printed); CRASH_ROUNDS
//! (default 5) sets the number of crashes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{Mako, Rng, connect, transfer};

const ACCOUNTS: i64 = 50;
const INITIAL: i64 = 1_000;
const CLIENTS: i64 = 6;

/// Runs transfers from several connections until `stop`; returns the ids
/// of the acknowledged ones.
async fn load(port: u16, round: i64, stop: Arc<AtomicBool>) -> HashSet<i64> {
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (stop, acked) = (stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let c = connect(port).await;
            let mut rng = Rng(0x9E37_79B9 + (round * 100 + client) as u64);
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (round * 1_000 + client) * 1_000_000 + n;
                let from = rng.below(ACCOUNTS as usize) as i64 + 1;
                let to = rng.below(ACCOUNTS as usize) as i64 + 1;
                let amount = rng.below(20) as i64 + 1;
                match transfer(&c, id, from, to, amount).await {
                    Ok(()) => {
                        acked.lock().unwrap().insert(id);
                    }
                    Err(e) if c.is_closed() || e.contains("closed") => break,
                    Err(_) => {} // a conflict: try another
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Checks the database against everything acknowledged so far.
async fn verify(port: u16, acked: &HashSet<i64>) {
    let c = connect(port).await;
    let events = c
        .query("SELECT id, src, dst, amount FROM events", &[])
        .await
        .expect("read events");
    let mut expected: HashMap<i64, i64> = (1..=ACCOUNTS).map(|a| (a, INITIAL)).collect();
    let mut present = HashSet::new();
    for row in &events {
        let (id, from, to, amount): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        present.insert(id);
        *expected.get_mut(&from).unwrap() -= amount;
        *expected.get_mut(&to).unwrap() += amount;
    }
    let missing: Vec<&i64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged transactions lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let balances = c
        .query("SELECT id, balance FROM accounts", &[])
        .await
        .expect("read accounts");
    assert_eq!(balances.len() as i64, ACCOUNTS);
    let mut total = 0;
    for row in &balances {
        let (id, balance): (i64, i64) = (row.get(0), row.get(1));
        total += balance;
        assert_eq!(
            balance, expected[&id],
            "account {id}: its balance does not match the durable transfers"
        );
    }
    assert_eq!(total, ACCOUNTS * INITIAL, "the bank total changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let rounds: i64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    eprintln!("crash test: CRASH_SEED={seed} CRASH_ROUNDS={rounds}");
    let mut rng = Rng(seed | 1);

    // Log writes are delayed by 20 ms, so that at any moment many commits
    // are installed (visible) but not yet durable: a server that
    // acknowledged them early would lose some at the kill.
    let mut mako = Mako::start_with_env(4, &[("MAKO_FAULT_LOG_DELAY_MS", "20")]);
    {
        let c = connect(mako.port).await;
        c.batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
             CREATE TABLE events (id BIGINT PRIMARY KEY, src BIGINT, dst BIGINT, amount BIGINT);",
        )
        .await
        .unwrap();
        for a in 1..=ACCOUNTS {
            c.execute("INSERT INTO accounts VALUES ($1, $2)", &[&a, &INITIAL])
                .await
                .unwrap();
        }
    }
    let mut acked = HashSet::new();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let port = mako.port;
        let running = tokio::spawn(load(port, round, stop.clone()));
        let wait = 300 + rng.below(1_500) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // The crash: no warning, no shutdown.
        let dir = mako.data_dir().to_path_buf();
        tokio::task::block_in_place(|| mako.restart());
        stop.store(true, Ordering::Relaxed);
        let done = running.await.expect("load task");
        eprintln!(
            "round {round}: killed after {wait} ms, {} commits acknowledged; recovered {}",
            done.len(),
            dir.display()
        );
        acked.extend(done);
        verify(mako.port, &acked).await;
    }
    assert!(
        !acked.is_empty(),
        "no transaction was acknowledged: the test did not test anything"
    );
}
