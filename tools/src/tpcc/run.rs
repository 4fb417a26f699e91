//! `mako tpcc run`: terminals running the standard mix against their home
//! warehouses, retrying serialization failures, and a report of tpmC,
//! throughput, latencies and abort rates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::literal;
use super::random::Random;
use super::txns::{self, Ending, Profiles, Terminal};
use super::{connect, describe, is_mako};

/// The five transaction types, in report order.
pub const KINDS: [&str; 5] = [
    "new_order",
    "payment",
    "order_status",
    "delivery",
    "stock_level",
];

/// Percentages of each transaction type.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Mix(pub [u32; 5]);

impl Default for Mix {
    /// The minimum mix of clause 5.2.3: 45/43/4/4/4.
    fn default() -> Self {
        Mix([45, 43, 4, 4, 4])
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `45,43,4,4,4` (New-Order, Payment, Order-Status, Delivery,
    /// Stock-Level), summing to 100.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<u32> = s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("bad mix {s:?}"))
            })
            .collect::<Result<_, _>>()?;
        let arr: [u32; 5] = parts
            .try_into()
            .map_err(|_| "the mix has five percentages".to_string())?;
        if arr.iter().sum::<u32>() != 100 {
            return Err("the mix must add up to 100".into());
        }
        Ok(Mix(arr))
    }
}

/// What `run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Server URLs (one is enough; with several, say the leaders of a
    /// Mako cluster's replica groups, each terminal connects to one whose
    /// node holds its home warehouse: see [`home_urls`]).
    pub urls: Vec<String>,
    /// Warehouses loaded.
    pub warehouses: i32,
    /// Terminals (connections).
    pub connections: usize,
    /// Measurement time.
    pub duration: Duration,
    /// Transaction mix.
    pub mix: Mix,
    /// Keying and think times of clause 5.2.5.
    pub think_time: bool,
    /// Where to write the report as JSON.
    pub json: Option<PathBuf>,
    /// How the transactions' SQL is sent.
    pub style: Style,
}

/// How the driver sends the transactions' SQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Style {
    /// `testdata/tpcc/`'s statements, prepared once per connection and
    /// executed with parameters (the extended protocol).
    #[default]
    Prepared,
    /// SQL text with the values written in, sent with the simple query
    /// protocol, `FOR UPDATE` locks and `now()`, as many TPC-C
    /// implementations do ([`super::literal`]).
    Literal,
}

impl std::str::FromStr for Style {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prepared" => Ok(Style::Prepared),
            "literal" => Ok(Style::Literal),
            _ => Err(format!("unknown style {s:?} (prepared or literal)")),
        }
    }
}

/// Per-type results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindReport {
    /// Transactions completed (committed, or New-Order rolled back by design).
    pub completed: u64,
    /// New-Orders rolled back by design (1%).
    pub rolled_back: u64,
    /// Attempts that failed with a serialization failure and were retried.
    pub retries: u64,
    /// Median latency in milliseconds (including retries).
    pub p50_ms: f64,
    /// 95th percentile latency in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
}

/// The whole run's results.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The server's version string.
    pub server: String,
    /// Durability settings of the server, as reported by it.
    pub durability: String,
    /// Warehouses.
    pub warehouses: i32,
    /// Terminals.
    pub connections: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// New-Order transactions completed per minute.
    pub tpmc: f64,
    /// All transactions completed per second.
    pub tps: f64,
    /// Retries over attempts, all types.
    pub retry_rate: f64,
    /// Transactions that failed with another error.
    pub errors: u64,
    /// Per type, in the order of `KINDS`.
    pub kinds: Vec<(String, KindReport)>,
    /// Mako only: the commits of the nodes of `--url` during the run (added
    /// up), by how far they reached (`SHOW mako.commits`: single_shard,
    /// cross_shard, cross_group, aborts), counted by the servers.
    pub server_commits: Vec<(String, u64)>,
}

/// `SHOW mako.commits` of the server behind `url` as (name, count)
/// pairs; nothing when it is not Mako (or too old to say).
async fn server_commits(url: &str) -> Vec<(String, u64)> {
    let Ok(c) = connect(url).await else {
        return Vec::new();
    };
    if !is_mako(&c).await.unwrap_or(false) {
        return Vec::new();
    }
    commit_counts(&c).await
}

async fn commit_counts(c: &Client) -> Vec<(String, u64)> {
    let Ok(row) = c.query_one("SHOW mako.commits", &[]).await else {
        return Vec::new();
    };
    let text: String = row.get(0);
    text.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The commit counts of every server of `urls`, added up by name.
async fn all_commits(urls: &[String]) -> Vec<(String, u64)> {
    let mut sum: Vec<(String, u64)> = Vec::new();
    for url in urls {
        for (k, v) in server_commits(url).await {
            match sum.iter_mut().find(|(name, _)| *name == k) {
                Some((_, total)) => *total += v,
                None => sum.push((k, v)),
            }
        }
    }
    sum
}

/// Which of `urls` each warehouse's terminals connect to (index by
/// warehouse - 1). With one URL, that one. With several, a warehouse goes
/// to the first Mako server among them that reads its `warehouse` row
/// without leaving its replica group (a read that leaves it counts as a
/// cross_group commit in `SHOW mako.commits`, asked before and after, so
/// nothing else may be running); a warehouse no server holds (or servers
/// that are not Mako) go to the URLs in turn.
pub async fn home_urls(urls: &[String], warehouses: i32) -> Result<Vec<usize>, String> {
    let n = warehouses.max(0) as usize;
    let mut home: Vec<Option<usize>> = vec![None; n];
    if urls.len() > 1 {
        for (u, url) in urls.iter().enumerate() {
            let c = connect(url)
                .await
                .map_err(|e| format!("cannot connect to {url}: {}", describe(&e)))?;
            if !is_mako(&c).await.unwrap_or(false) {
                continue;
            }
            let probe = c
                .prepare("SELECT w_tax FROM warehouse WHERE w_id = $1")
                .await
                .map_err(|e| format!("{url}: {}", describe(&e)))?;
            for (w, slot) in home.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                let cross = |counts: Vec<(String, u64)>| {
                    counts
                        .into_iter()
                        .find(|(k, _)| k == "cross_group")
                        .map(|(_, v)| v)
                };
                let before = cross(commit_counts(&c).await);
                c.query(&probe, &[&(w as i32 + 1)])
                    .await
                    .map_err(|e| format!("{url}: {}", describe(&e)))?;
                let after = cross(commit_counts(&c).await);
                if before.is_some() && before == after {
                    *slot = Some(u);
                }
            }
        }
    }
    Ok(home
        .iter()
        .enumerate()
        .map(|(w, h)| h.unwrap_or(w % urls.len()))
        .collect())
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Vec<u32>>,
    retries: [u64; 5],
    rolled_back: [u64; 5],
    errors: u64,
    first_error: Option<String>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Keying time plus a negative-exponential think time (clause 5.2.5).
fn pause(kind: usize, rng: &mut Random) -> Duration {
    let (keying, think_mean) = [
        (18.0, 12.0),
        (3.0, 12.0),
        (2.0, 10.0),
        (2.0, 5.0),
        (2.0, 5.0),
    ][kind];
    let u = (rng.int(1, 1_000_000) as f64) / 1_000_000.0;
    Duration::from_secs_f64(keying + (-u.ln() * think_mean).min(think_mean * 10.0))
}

async fn server_description(url: &str) -> (String, String) {
    let Ok(c) = connect(url).await else {
        return ("unknown".into(), "unknown".into());
    };
    let version: String = c
        .query_one("SELECT version()", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    let durability = if is_mako(&c).await.unwrap_or(false) {
        match c.query_one("SHOW mako.durability", &[]).await {
            Ok(r) => r.get(0),
            Err(_) => "unknown".to_string(),
        }
    } else {
        let mut parts = Vec::new();
        for s in [
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "max_pred_locks_per_transaction",
        ] {
            if let Ok(r) = c.query_one(&format!("SHOW {s}"), &[]).await {
                let v: String = r.get(0);
                parts.push(format!("{s}={v}"));
            }
        }
        parts.join(", ")
    };
    (version, durability)
}

/// Runs the mix and prints the report.
pub async fn run(opts: RunOptions) -> Result<Report, String> {
    if opts.warehouses < 1 || opts.connections < 1 {
        return Err("--warehouses and --connections must be at least 1".into());
    }
    if opts.urls.is_empty() {
        return Err("no --url given".into());
    }
    let (server, durability) = server_description(&opts.urls[0]).await;
    let homes = Arc::new(home_urls(&opts.urls, opts.warehouses).await?);
    if opts.urls.len() > 1 {
        for (u, url) in opts.urls.iter().enumerate() {
            let ws: Vec<String> = (0..homes.len())
                .filter(|&w| homes[w] == u)
                .map(|w| (w + 1).to_string())
                .collect();
            println!(
                "warehouses at {url}: {}",
                if ws.is_empty() {
                    "none".into()
                } else {
                    ws.join(" ")
                }
            );
        }
    }
    let commits_before = all_commits(&opts.urls).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let new_orders = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut tasks = Vec::new();
    for n in 0..opts.connections {
        let opts = opts.clone();
        let (stop, done, new_orders) = (stop.clone(), done.clone(), new_orders.clone());
        let homes = homes.clone();
        tasks.push(tokio::spawn(async move {
            let w = (n as i32 % opts.warehouses) + 1;
            let url = &opts.urls[homes[w as usize - 1]];
            let mut client = connect(url).await.map_err(|e| describe(&e))?;
            let profiles = match opts.style {
                Style::Prepared => Some(Profiles::prepare(&client).await.map_err(|e| describe(&e))?),
                Style::Literal => None,
            };
            let mut term = Terminal {
                w_id: w,
                d_id: ((n as i32 / opts.warehouses) % 10) + 1,
                warehouses: opts.warehouses,
                rng: Random::new(0xC0FFEE + n as u64 * 7919),
            };
            let mut tally = Tally { latencies: vec![Vec::new(); 5], ..Tally::default() };
            // History ids: the run's start second, the terminal, a sequence
            // (load ids stay below 2^34).
            let run_nonce = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs() as i64)
                % (1 << 28))
                .max(1);
            let mut h_seq = 0i64;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let roll = term.rng.int(1, 100) as u32;
                let mut acc = 0;
                let kind = (0..5).find(|&k| {
                    acc += opts.mix.0[k];
                    roll <= acc
                });
                let kind = kind.unwrap_or(0);
                if opts.think_time {
                    tokio::time::sleep(pause(kind, &mut term.rng).min(deadline.saturating_duration_since(Instant::now()))).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let began = Instant::now();
                loop {
                    h_seq += 1;
                    let h_id = (run_nonce << 34) | ((n as i64 % 1024) << 24) | (h_seq % (1 << 24));
                    let result = match (&profiles, kind) {
                        (Some(p), 0) => txns::new_order(&mut client, p, &mut term).await,
                        (Some(p), 1) => txns::payment(&mut client, p, &mut term, h_id).await,
                        (Some(p), 2) => txns::order_status(&mut client, p, &mut term).await,
                        (Some(p), 3) => txns::delivery(&mut client, p, &mut term).await,
                        (Some(p), _) => txns::stock_level(&mut client, p, &mut term).await,
                        (None, 0) => literal::new_order(&mut client, &mut term).await,
                        (None, 1) => literal::payment(&mut client, &mut term, h_id).await,
                        (None, 2) => literal::order_status(&mut client, &mut term).await,
                        (None, 3) => literal::delivery(&mut client, &mut term).await,
                        (None, _) => literal::stock_level(&mut client, &mut term).await,
                    };
                    match result {
                        Ok(ending) => {
                            if Instant::now() <= deadline {
                                tally.latencies[kind].push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
                                if ending == Ending::RolledBack {
                                    tally.rolled_back[kind] += 1;
                                }
                                done.fetch_add(1, Ordering::Relaxed);
                                if kind == 0 {
                                    new_orders.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            break;
                        }
                        Err(e) if matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED) => {
                            tally.retries[kind] += 1;
                            if Instant::now() >= deadline {
                                break;
                            }
                        }
                        Err(e) => {
                            tally.errors += 1;
                            if tally.first_error.is_none() {
                                tally.first_error = Some(format!("{}: {}", KINDS[kind], describe(&e)));
                            }
                            if e.is_closed() {
                                return Err(format!("connection lost: {}", describe(&e)));
                            }
                            break;
                        }
                    }
                }
            }
            Ok::<Tally, String>(tally)
        }));
    }
    // A progress line every second.
    let progress = {
        let (stop, done, new_orders) = (stop.clone(), done.clone(), new_orders.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut ticks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ticks += 1;
                let now = done.load(Ordering::Relaxed);
                let no = new_orders.load(Ordering::Relaxed);
                eprintln!(
                    "[{ticks:>4}s] {:>7} txn/s, tpmC so far {:>9.0}",
                    now - last,
                    no as f64 * 60.0 / start.elapsed().as_secs_f64()
                );
                last = now;
            }
        })
    };
    let mut all = Tally {
        latencies: vec![Vec::new(); 5],
        ..Tally::default()
    };
    let mut failure = None;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(tally) => {
                for k in 0..5 {
                    all.latencies[k].extend(&tally.latencies[k]);
                    all.retries[k] += tally.retries[k];
                    all.rolled_back[k] += tally.rolled_back[k];
                }
                all.errors += tally.errors;
                if all.first_error.is_none() {
                    all.first_error = tally.first_error;
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    if let Some(e) = failure {
        return Err(e);
    }
    let seconds = opts.duration.as_secs_f64();
    let mut kinds = Vec::new();
    let (mut completed, mut retries) = (0u64, 0u64);
    for (k, name) in KINDS.iter().enumerate() {
        let mut l = std::mem::take(&mut all.latencies[k]);
        l.sort_unstable();
        completed += l.len() as u64;
        retries += all.retries[k];
        kinds.push((
            name.to_string(),
            KindReport {
                completed: l.len() as u64,
                rolled_back: all.rolled_back[k],
                retries: all.retries[k],
                p50_ms: percentile(&l, 0.50),
                p95_ms: percentile(&l, 0.95),
                p99_ms: percentile(&l, 0.99),
            },
        ));
    }
    let commits_after = all_commits(&opts.urls).await;
    let server_commits = commits_after
        .iter()
        .map(|(k, after)| {
            let before = commits_before
                .iter()
                .find(|(b, _)| b == k)
                .map_or(0, |(_, v)| *v);
            (k.clone(), after.saturating_sub(before))
        })
        .collect();
    let report = Report {
        server_commits,
        server,
        durability,
        warehouses: opts.warehouses,
        connections: opts.connections,
        seconds,
        tpmc: kinds[0].1.completed as f64 * 60.0 / seconds,
        tps: completed as f64 / seconds,
        retry_rate: if completed + retries == 0 {
            0.0
        } else {
            retries as f64 / (completed + retries) as f64
        },
        errors: all.errors,
        kinds,
    };
    print_report(&report);
    if let Some(e) = &all.first_error {
        println!("first error: {e}");
    }
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

/// Prints a report as a table.
pub fn print_report(r: &Report) {
    println!("server:      {}", r.server);
    println!("durability:  {}", r.durability);
    println!(
        "warehouses:  {}, connections: {}, {:.0} s",
        r.warehouses, r.connections, r.seconds
    );
    println!("tpmC:        {:.0}", r.tpmc);
    println!("throughput:  {:.1} txn/s (all types)", r.tps);
    println!(
        "retries:     {:.2}% of attempts (serialization failures, retried)",
        r.retry_rate * 100.0
    );
    println!("errors:      {}", r.errors);
    if !r.server_commits.is_empty() {
        let parts: Vec<String> = r
            .server_commits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "commits:     {} (at the nodes of --url during the run; cross_group: touched another replica group)",
            parts.join(" ")
        );
    }
    println!(
        "{:<13} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "transaction", "completed", "rollbacks", "retries", "p50 ms", "p95 ms", "p99 ms"
    );
    for (name, k) in &r.kinds {
        println!(
            "{name:<13} {:>9} {:>9} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            k.completed, k.rolled_back, k.retries, k.p50_ms, k.p95_ms, k.p99_ms
        );
    }
}
