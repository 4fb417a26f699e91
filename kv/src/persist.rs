//! Persistence on RocksDB: the commit log with group commit, checkpoints of
//! the applied state, and recovery. The only module that names RocksDB.
//!
//! One RocksDB instance per node, in the data directory, with three column
//! families:
//!
//! - `log`: [`LogEntry`]s under an 8-byte big-endian sequence number. The
//!   participants append entries (with the keys still locked, so per key the
//!   log is in install order); one *log thread* writes whatever has queued
//!   up as one RocksDB write batch with one `fsync` (group commit), then
//!   tells each shard which of its clock values are durable, which raises
//!   the shard's watermark and releases the commit replies waiting on it.
//! - `data`: the applied state, key `[shard: u32 BE][key]`, value `[epoch]
//!   [vector clock][row]`; deleted keys are absent. A *checkpoint thread*
//!   applies durable log entries to it in batches, and in the same atomic
//!   write records the last applied sequence number and deletes the log
//!   behind it. So memory and disk stay bounded by the data, not by history.
//! - `meta`: the format version, the shard count, the checkpoint position,
//!   each shard's clock and the last transaction id at the checkpoint.
//!
//! Recovery (`open` on an existing directory) loads `data` into fresh
//! shards, replays the log entries after the checkpoint in order, and
//! restores the shard clocks, so the node continues where the last
//! durable commit left it. A directory that is not a Mako data directory,
//! has another format version, was created with another shard count, or
//! holds damaged data is refused with a message saying which: the node
//! never serves partial data.
//!
//! A replica has one log queue and log thread per stream instead: each
//! committing thread (a worker) appends to the queue of its stream, whose
//! log thread hands batches to that stream only (Mako's per-worker
//! streams; see [`Persist::append`]).
//!
//! If a log write fails (a full disk, an I/O error), the log stops: the
//! commits waiting for it, and every later commit with writes, fail with
//! SQLSTATE 53100 or 58030, while reads of durable data go on. Commits that
//! were installed but never made durable are gone after a restart; none of
//! them was acknowledged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::clock::{Epoch, VectorClock};
use crate::error::{Error, ErrorKind, Result};
use crate::log::{CommitLog, LogEntry, Reader, corrupt, decode_vc, encode_vc};
use crate::shard::{Shard, ShardId, Watermarks};

/// The on-disk format this build reads and writes (2: checkpoints store
/// the watermarks; aborted clock values are logged).
pub const FORMAT_VERSION: u32 = 2;

const CF_LOG: &str = "log";
const CF_DATA: &str = "data";
const CF_META: &str = "meta";
/// A replicated node's stream records (acceptor state), opaque here.
const CF_REPL: &str = "repl";
/// Every column family of a data directory.
const ALL_CFS: [&str; 5] = [CF_LOG, CF_DATA, CF_META, CF_REPL, snapshot::CF_STAGING];

const META_FORMAT: &[u8] = b"format";
const META_SHARDS: &[u8] = b"shards";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_LAST_TXN: &[u8] = b"last_txn";
const META_CLOCK: &[u8] = b"clock/";
/// Present (with the replica group's name) in a replicated node's
/// directory.
const META_REPLICA_OF: &[u8] = b"replica_of";
/// A replica's checkpoint position per stream (`u64` each): every slot
/// below it is applied. Stream 0's is also under [`META_CHECKPOINT`]
/// (shifted), as before there were several.
const META_STREAMS: &[u8] = b"streams";
/// Present in a replica's directory once a checkpoint records, per shard,
/// the clock value through which every chosen entry is applied (see
/// [`replay`]); older builds recorded less.
const META_REPLAY: &[u8] = b"replay";

/// When a commit is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Each commit's log entry is written and synced on its own.
    Always,
    /// Commits queued together share one write and one sync (the default):
    /// as durable as `Always`, far cheaper under concurrency.
    Group,
    /// Log entries are written but not synced: a process crash loses
    /// nothing, but an operating-system crash or power loss loses the
    /// commits of the last moments, acknowledged or not.
    Off,
}

impl SyncMode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Group => "group",
            SyncMode::Off => "off",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "group" => Ok(SyncMode::Group),
            "off" => Ok(SyncMode::Off),
            other => Err(format!(
                "unknown sync mode {other:?} (expected always, group or off)"
            )),
        }
    }
}

/// How to open a data directory.
#[derive(Clone, Debug)]
pub struct Options {
    /// When commits are acknowledged.
    pub sync: SyncMode,
    /// The shard count: required to match an existing directory's when
    /// given; `None` takes the directory's (or 1 for a new one).
    pub shards: Option<usize>,
    /// A checkpoint runs once this many log entries wait for one (and at
    /// least once a second, and once 64 MB of rows wait).
    pub checkpoint_entries: usize,
    /// Faults to inject, for tests.
    pub faults: Faults,
    /// The replica group this node belongs to, if it is replicated: its
    /// log is then a replication stream (see [`Persist::start_replication`])
    /// rather than the local log, and a directory of one kind is refused
    /// as the other.
    pub replica_of: Option<String>,
    /// Replicated: how the log's entries are grouped into stream entries.
    pub batching: Batching,
    /// Replicated: the number of streams (replicated logs) the node's
    /// batches are spread over; fixed when the directory is created.
    pub streams: usize,
    /// Replicated: chosen entries are installed on several shards at once
    /// when there is enough to do (off: one shard after another; for
    /// benchmarks).
    pub parallel_replay: bool,
}

/// How a replica groups log entries into stream entries (batches).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// At most this many log entries (commits' writes on one shard) per
    /// batch; more wait for the next.
    pub max_entries: usize,
    /// A batch waits up to this long for more entries (0: it goes as
    /// soon as the log thread may propose it, holding whatever queued
    /// meanwhile).
    pub delay: Duration,
    /// While this many batches of one stream are proposed and not yet
    /// chosen, the next waits for one of them (but only up to
    /// `in_flight_wait` after the last went, so more may be in flight
    /// when a round trip is long), and meanwhile gathers the commits that
    /// arrive: group commit over the network as over the disk. Without
    /// it a busy leader proposes a batch per commit or two, and every
    /// batch costs each replica its share of messages, wake-ups and
    /// bookkeeping.
    pub max_in_flight: usize,
    /// How long after the last batch went the next may be held for
    /// `max_in_flight`: a busy leader proposes at most one batch per this
    /// much time and stream, and a commit waits at most this much longer.
    /// Short, so that a WAN round trip is not added to the commits that
    /// just missed a batch.
    pub in_flight_wait: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_entries: 10_000,
            delay: Duration::ZERO,
            max_in_flight: 1,
            in_flight_wait: Duration::from_millis(1),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Group,
            shards: None,
            replica_of: None,
            batching: Batching::default(),
            streams: 1,
            parallel_replay: true,
            checkpoint_entries: 20_000,
            faults: Faults::from_env(),
        }
    }
}

/// Faults the log can be told to inject, so that tests can reach the
/// windows and failures that are rare in practice.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Wait this long before each log write (`MAKO_FAULT_LOG_DELAY_MS`),
    /// widening the window in which commits are installed but not durable.
    pub write_delay: Duration,
    /// Fail every log write after this many, as a full disk would
    /// (`MAKO_FAULT_LOG_FAIL_AFTER`).
    pub fail_after_writes: Option<u64>,
}

impl Faults {
    /// The faults the environment asks for (none unless set).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Faults {
            write_delay: Duration::from_millis(var("MAKO_FAULT_LOG_DELAY_MS").unwrap_or(0)),
            fail_after_writes: var("MAKO_FAULT_LOG_FAIL_AFTER"),
        }
    }
}

/// What `open` found.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The directory was new (nothing to recover).
    pub created: bool,
    /// The shard count.
    pub shards: usize,
    /// Keys loaded from the checkpointed state.
    pub records: u64,
    /// Bytes of keys and values loaded from the checkpointed state.
    pub bytes: u64,
    /// Log entries replayed after the checkpoint.
    pub log_entries: u64,
    /// Log entries dropped: commits that were not durable on every shard
    /// they wrote (or read from one that was not), never acknowledged.
    pub log_entries_dropped: u64,
    /// The highest transaction id found (0 if none).
    pub last_txn: u64,
    /// How long recovery took.
    pub elapsed: Duration,
    /// Replicated nodes: every slot of stream 0 below this is in the
    /// recovered state; the stream resumes applying there.
    pub applied_slot: u64,
    /// Replicated nodes: the same for every stream.
    pub applied_slots: Vec<u64>,
    /// Replicated nodes: a snapshot received from another replica was
    /// installed, at this slot.
    pub snapshot_installed: Option<u64>,
}

/// An open data directory: the commit log of the node's shards.
pub struct Persist {
    db: Arc<DB>,
    dir: PathBuf,
    shards: Vec<Arc<Shard>>,
    /// The shards' durable watermarks.
    marks: Arc<Watermarks>,
    /// Set by `close`: commits are refused from then on.
    closing: std::sync::atomic::AtomicBool,
    sync: SyncMode,
    /// The log queues: one, or on a replica one per stream.
    queues: Vec<LogQueue>,
    /// The next log sequence number.
    next_seq: AtomicU64,
    /// Log threads still running (the last one to finish closes the
    /// checkpoint thread's channel).
    log_threads: AtomicUsize,
    failure: Mutex<Option<Error>>,
    /// `failure` is set: checked without its lock on every append.
    failed: std::sync::atomic::AtomicBool,
    to_checkpoint: Mutex<Option<Sender<ToCheckpoint>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Entries made durable so far (for statistics).
    durable_entries: AtomicU64,
    /// Log writes (syncs) done so far (for statistics).
    log_writes: AtomicU64,
    /// Injected faults (tests).
    faults: Faults,
    /// Replicated: the stream that takes the log's batches, once started.
    replica_of: Option<String>,
    batching: Batching,
    replicator: std::sync::OnceLock<Arc<dyn crate::log::Replicate>>,
    /// Replicated: per stream, every slot below this is in a (synced)
    /// checkpoint.
    checkpointed: Vec<AtomicU64>,
    /// Replicated: the replay of chosen stream values.
    replay: Mutex<Option<replay::Replay>>,
    /// Replicated: shards are installed in parallel.
    parallel_replay: bool,
    /// Replicated: the last close applied, as `(leader, epoch)`.
    last_close: Mutex<(u64, u64)>,
    /// The highest transaction id applied or recovered.
    last_txn: AtomicU64,
}

/// Log entries with their sequence numbers, in order.
type Sequenced = Vec<(u64, LogEntry)>;

/// From the log thread to the checkpoint thread.
enum ToCheckpoint {
    /// Entries now durable, in log order.
    Durable(Sequenced),
    /// Replicated: entries the replay applied (each key's in clock
    /// order), and the replay's progress once they are applied.
    Replayed(Vec<LogEntry>, Progress),
    /// The log has stopped and a log thread has rolled back what it held:
    /// once every log thread has, roll back the unstable entries held
    /// here.
    Stopped,
}

/// How far a replica's replay has gone: what a checkpoint records.
struct Progress {
    /// Per shard, every chosen entry up to this clock value is applied.
    done: Vec<u64>,
    /// Per stream, every slot below this is applied.
    positions: Vec<u64>,
    /// The highest transaction id delivered.
    last_txn: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The file RocksDB found damaged when an open failed. RocksDB names it
/// only in its info log (`LOG` in the directory), on the warning lines of
/// the failed recovery: the last line that names a file of `dir` beside
/// "Corruption".
fn damaged_file(dir: &Path) -> Option<String> {
    let text = std::fs::read(dir.join("LOG")).ok()?;
    let tail = String::from_utf8_lossy(&text[text.len().saturating_sub(64 << 10)..]);
    let prefix = dir.display().to_string();
    tail.lines()
        .rev()
        .filter(|l| l.contains("Corruption"))
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with(&prefix))
                .map(|w| w.trim_end_matches([':', ';', ',']).to_owned())
        })
}

/// An error reading the directory while opening it: damage (RocksDB's
/// checksums name the file) refuses the start.
fn read_error(what: &str, e: rocksdb::Error) -> Error {
    let mut err = io_error(what, e);
    if err.message.contains("Corruption") {
        err.message
            .push_str(" (refusing to start rather than serve partial data)");
    }
    err
}

/// A RocksDB error as ours: a full disk is `DiskFull` (53100), the rest `Io`
/// (58030).
fn io_error(what: &str, e: rocksdb::Error) -> Error {
    let text = e.into_string();
    let kind = if text.contains("No space left") || text.contains("ENOSPC") {
        ErrorKind::DiskFull
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("{what}: {text}"))
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| corrupt(format!("column family {name} is missing")))
}

fn data_key(shard: ShardId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&(shard as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn data_value(epoch: Epoch, vc: &VectorClock, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + 8 * vc.entries().len() + value.len());
    v.extend_from_slice(&epoch.0.to_le_bytes());
    encode_vc(&mut v, vc);
    v.extend_from_slice(value);
    v
}

fn clock_key(shard: ShardId) -> Vec<u8> {
    let mut k = META_CLOCK.to_vec();
    k.extend_from_slice(&(shard as u32).to_be_bytes());
    k
}

fn read_u64(db: &DB, key: &[u8]) -> Result<Option<u64>> {
    let meta = cf(db, CF_META)?;
    match db
        .get_cf(meta, key)
        .map_err(|e| read_error("cannot read metadata", e))?
    {
        None => Ok(None),
        Some(v) => Ok(Some(u64::from_le_bytes(v.as_slice().try_into().map_err(
            |_| {
                corrupt(format!(
                    "metadata {} is damaged",
                    String::from_utf8_lossy(key)
                ))
            },
        )?))),
    }
}

/// A replica's checkpoint positions per stream, if recorded.
fn read_positions(db: &DB) -> Result<Option<Vec<u64>>> {
    let meta = cf(db, CF_META)?;
    let Some(v) = db
        .get_cf(meta, META_STREAMS)
        .map_err(|e| read_error("cannot read metadata", e))?
    else {
        return Ok(None);
    };
    if v.is_empty() || v.len() % 8 != 0 {
        return Err(corrupt("the stream positions are damaged"));
    }
    Ok(Some(
        v.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    ))
}

/// Opens (creating if new, recovering if not) the data directory `dir`.
/// Returns the log, the recovered shards (logged: their commits wait for
/// the log) and what was recovered.
pub fn open(dir: &Path, opts: Options) -> Result<(Arc<Persist>, Vec<Arc<Shard>>, Recovered)> {
    let started = Instant::now();
    let fresh = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Io,
                format!("cannot read data directory {}: {e}", dir.display()),
            ));
        }
        Ok(mut entries) => entries.next().is_none(),
    };
    if !fresh && !dir.join("CURRENT").exists() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is not empty and is not a Mako data directory (no RocksDB CURRENT file); \
                 refusing to start rather than serve partial data",
                dir.display()
            ),
        ));
    }
    if fresh {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot create data directory {}: {e}", dir.display()),
            )
        })?;
    }
    let mut db_opts = rocksdb::Options::default();
    db_opts.create_if_missing(fresh);
    db_opts.create_missing_column_families(fresh);
    db_opts.set_keep_log_file_num(4);
    db_opts.set_max_total_wal_size(256 << 20);
    // A damaged write-ahead log refuses the start. RocksDB's default
    // (point-in-time recovery) stops replaying at the first bad record and
    // opens without everything after it: acknowledged commits would be
    // gone without a word. Only an incomplete last record, which a crash
    // in the middle of a write leaves (it was never acknowledged), is
    // tolerated. A log cut at a record boundary cannot be told from a
    // crash before that record, so it is not caught here.
    db_opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    db_opts.set_paranoid_checks(true);
    // The sizes of closed (synced) logs are recorded in the MANIFEST, so a
    // closed log that goes missing or shrinks refuses the start too. (The
    // live log's size is not recorded on each sync: RocksDB does not, for
    // cost; a live log cut at a record boundary stays undetected.)
    db_opts.set_track_and_verify_wals_in_manifest(true);
    // Missing column families are created: directories from before
    // replication have no `repl`.
    db_opts.create_missing_column_families(true);
    let cfs = ALL_CFS
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, rocksdb::Options::default()));
    let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(|e| {
        if e.as_ref().contains("LOCK") {
            return Error::new(
                ErrorKind::Io,
                format!(
                    "data directory {} is in use by another process (is another mako running on it?)",
                    dir.display()
                ),
            );
        }
        let damaged = e.as_ref().contains("Corruption");
        let mut err = io_error(&format!("cannot open data directory {}", dir.display()), e);
        if damaged && let Some(file) = damaged_file(dir) {
            err.message.push_str(&format!(" in {file}"));
        }
        err.message
            .push_str(" (refusing to start rather than serve partial data)");
        err
    })?;
    let db = Arc::new(db);

    let shard_count = if fresh {
        let n = opts.shards.unwrap_or(1);
        let meta = cf(&db, CF_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_FORMAT, u64::from(FORMAT_VERSION).to_le_bytes());
        batch.put_cf(meta, META_SHARDS, (n as u64).to_le_bytes());
        if let Some(group) = &opts.replica_of {
            batch.put_cf(meta, META_REPLICA_OF, group.as_bytes());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)
            .map_err(|e| io_error("cannot initialize the data directory", e))?;
        n
    } else {
        match read_u64(&db, META_FORMAT)? {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{} has data format version {v}; this build reads version {FORMAT_VERSION}",
                        dir.display()
                    ),
                ));
            }
            None => {
                return Err(corrupt(format!(
                    "{} has no format version: not a Mako data directory, or damaged",
                    dir.display()
                )));
            }
        }
        let stored = read_u64(&db, META_SHARDS)?
            .ok_or_else(|| corrupt("the shard count is missing"))? as usize;
        if let Some(n) = opts.shards
            && n != stored
        {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "{} was created with {stored} shards; start it with --shards {stored} \
                     (changing the shard count of existing data is not supported)",
                    dir.display()
                ),
            ));
        }
        let replica_of = db
            .get_cf(cf(&db, CF_META)?, META_REPLICA_OF)
            .map_err(|e| read_error("cannot read the data directory", e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        if replica_of != opts.replica_of {
            let what = |g: &Option<String>| match g {
                Some(g) => format!("a replica of group {g}"),
                None => "a single node's (not replicated)".to_string(),
            };
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "{} holds {} data; it cannot be started as {}",
                    dir.display(),
                    what(&replica_of),
                    what(&opts.replica_of)
                ),
            ));
        }
        stored
    };
    let mut recovered = Recovered {
        created: fresh,
        shards: shard_count,
        ..Recovered::default()
    };
    if shard_count == 0 {
        return Err(corrupt("the shard count is 0"));
    }
    if opts.replica_of.is_some()
        && let Some(slot) = snapshot::install_staged(&db)?
    {
        tracing::info!(
            slot,
            "installed a snapshot received from another replica; the stream resumes there"
        );
        recovered.snapshot_installed = Some(slot);
    }
    let marks = Arc::new(Watermarks::new(shard_count));
    let shards: Vec<Arc<Shard>> = (0..shard_count)
        .map(|i| Arc::new(Shard::logged(i, marks.clone())))
        .collect();
    // The watermarks at the last checkpoint: every clock value up to them
    // is applied to `data` or still in the log.
    let mut bound = vec![0u64; shard_count];
    for (s, c) in bound.iter_mut().enumerate() {
        *c = read_u64(&db, &clock_key(s))?.unwrap_or(0);
    }
    recovered.last_txn = read_u64(&db, META_LAST_TXN)?.unwrap_or(0);

    // The log tail, in order.
    let checkpoint = read_u64(&db, META_CHECKPOINT)?.unwrap_or(0);
    let log = cf(&db, CF_LOG)?;
    let mut last_seq = checkpoint;
    let mut tail: Sequenced = Vec::new();
    let from = (checkpoint + 1).to_be_bytes();
    for item in db.iterator_cf(log, IteratorMode::From(&from, Direction::Forward)) {
        let (k, v) = item.map_err(|e| read_error("cannot read the commit log", e))?;
        let seq = u64::from_be_bytes(
            k.as_ref()
                .try_into()
                .map_err(|_| corrupt("a log key that is not a sequence number"))?,
        );
        if seq != last_seq + 1 {
            return Err(corrupt(format!(
                "the commit log jumps from entry {last_seq} to {seq}"
            )));
        }
        last_seq = seq;
        let entry =
            LogEntry::decode(&v).map_err(|e| corrupt(format!("log entry {seq}: {}", e.message)))?;
        if entry.shard >= shard_count || entry.vc.entries().len() != shard_count {
            return Err(corrupt(format!(
                "log entry {seq} names shard {} of {} in a {shard_count}-shard directory",
                entry.shard,
                entry.vc.entries().len()
            )));
        }
        tail.push((seq, entry));
    }

    // The durable watermark of each shard: the checkpoint's, raised over
    // every clock value the log accounts for without a gap. A value in a
    // gap was handed out to a commit whose entry never became durable.
    let mut logged: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); shard_count];
    for (_, e) in &tail {
        logged[e.shard].insert(e.clock());
    }
    for (w, clocks) in bound.iter_mut().zip(&logged) {
        for &c in clocks.range(*w + 1..) {
            if c != *w + 1 {
                break;
            }
            *w = c;
        }
    }
    for (shard, &w) in shards.iter().zip(&bound) {
        shard.advance_clock(w);
    }

    // The checkpointed state.
    let data = cf(&db, CF_DATA)?;
    for item in db.iterator_cf(data, IteratorMode::Start) {
        let (k, v) = item.map_err(|e| read_error("cannot read the checkpointed data", e))?;
        if k.len() < 4 {
            return Err(corrupt("a data key without its shard"));
        }
        let s = u32::from_be_bytes(k[..4].try_into().expect("4 bytes")) as usize;
        if s >= shard_count {
            return Err(corrupt(format!(
                "data of shard {s} in a {shard_count}-shard directory"
            )));
        }
        let mut r = Reader(&v);
        let epoch = Epoch(r.u64()?);
        let vc = decode_vc(&mut r)?;
        let value: Arc<[u8]> = Arc::from(r.rest());
        recovered.records += 1;
        recovered.bytes += (k.len() + v.len()) as u64;
        restore(&shards[s], &k[4..], Some(value), vc, epoch);
    }

    // Replay the stable part of the tail: the transactions whose vector
    // clock the watermarks cover, i.e. durable on every shard they wrote,
    // as was everything they read. The rest (a commit durable on one shard
    // but not on another, and whatever read from it) was never
    // acknowledged and is dropped.
    let mut kept: Sequenced = Vec::with_capacity(tail.len());
    for (seq, entry) in tail {
        // Transaction ids are never reused, dropped or not.
        recovered.last_txn = recovered.last_txn.max(entry.txn);
        if !entry.vc.le(&bound) {
            recovered.log_entries_dropped += 1;
            continue;
        }
        recovered.log_entries += 1;
        for (key, value) in &entry.writes {
            restore(
                &shards[entry.shard],
                key,
                value.clone(),
                entry.vc.clone(),
                entry.epoch,
            );
        }
        kept.push((seq, entry));
    }
    // Checkpoint what was replayed and empty the log, synced, before
    // anything new is logged: dropped entries must not be found again once
    // new commits reuse their clock values.
    if last_seq > checkpoint {
        let entries = kept.iter().map(|(_, e)| e);
        let mut wb =
            checkpoint::checkpoint_batch(&db, entries, &bound, recovered.last_txn, last_seq)?;
        wb.delete_range_cf(log, 0u64.to_be_bytes(), (last_seq + 1).to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)
            .map_err(|e| io_error("cannot checkpoint the recovered log", e))?;
    }
    recovered.elapsed = started.elapsed();
    let positions = if opts.replica_of.is_some() {
        let at = read_u64(&db, META_CHECKPOINT)?;
        if at.is_some() && read_u64(&db, META_REPLAY)?.is_none() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} holds a replica's data checkpointed by an older Mako, which this build \
                     cannot resume exactly; move it aside and start the node on an empty \
                     directory: it catches up from the other replicas",
                    dir.display()
                ),
            ));
        }
        let streams = opts.streams.max(1);
        match read_positions(&db)? {
            Some(p) if p.len() != streams => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!(
                        "{} holds a replica of {} streams; the cluster config says {streams} \
                         (changing the stream count of existing data is not supported)",
                        dir.display(),
                        p.len()
                    ),
                ));
            }
            Some(p) => p,
            None if at.is_some() && streams != 1 => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!(
                        "{} holds a replica of 1 stream; the cluster config says {streams} \
                         (changing the stream count of existing data is not supported)",
                        dir.display()
                    ),
                ));
            }
            None => {
                let mut p = vec![1; streams];
                p[0] = (at.unwrap_or(0) >> SLOT_SHIFT).max(1);
                p
            }
        }
    } else {
        Vec::new()
    };
    recovered.applied_slot = positions.first().copied().unwrap_or(0);
    recovered.applied_slots = positions.clone();
    let replay = opts
        .replica_of
        .as_ref()
        .map(|_| replay::Replay::new(&bound, &positions));

    // A replica: one log queue and thread per stream.
    let log_queues = if opts.replica_of.is_some() {
        positions.len().max(1)
    } else {
        1
    };
    let persist = Arc::new(Persist {
        db,
        dir: dir.to_path_buf(),
        shards: shards.clone(),
        marks,
        closing: std::sync::atomic::AtomicBool::new(false),
        sync: opts.sync,
        queues: (0..log_queues)
            .map(|_| LogQueue {
                queue: Mutex::new(Queue {
                    pending: Vec::new(),
                    closing: false,
                    in_flight: 0,
                }),
                wake: Condvar::new(),
            })
            .collect(),
        next_seq: AtomicU64::new(last_seq + 1),
        log_threads: AtomicUsize::new(log_queues),
        failure: Mutex::new(None),
        failed: std::sync::atomic::AtomicBool::new(false),
        to_checkpoint: Mutex::new(None),
        threads: Mutex::new(Vec::new()),
        durable_entries: AtomicU64::new(0),
        log_writes: AtomicU64::new(0),
        faults: opts.faults.clone(),
        replica_of: opts.replica_of.clone(),
        batching: Batching {
            // Checkpoint labels give an entry's index in its batch 24 bits.
            max_entries: opts.batching.max_entries.clamp(1, (1 << SLOT_SHIFT) - 1),
            delay: opts.batching.delay,
            max_in_flight: opts.batching.max_in_flight.max(1),
            in_flight_wait: opts.batching.in_flight_wait,
        },
        replicator: std::sync::OnceLock::new(),
        checkpointed: positions.iter().map(|&p| AtomicU64::new(p)).collect(),
        replay: Mutex::new(replay),
        parallel_replay: opts.parallel_replay,
        last_close: Mutex::new((0, 0)),
        last_txn: AtomicU64::new(recovered.last_txn),
    });
    let (tx, rx) = channel();
    *lock(&persist.to_checkpoint) = Some(tx);
    let mut log_threads = Vec::with_capacity(log_queues);
    for k in 0..log_queues {
        let p = persist.clone();
        let thread = std::thread::Builder::new()
            .name("mako-log".into())
            .spawn(move || {
                // A panic here is a bug; turn it into a stopped log rather
                // than commits that wait for good.
                let run = std::panic::AssertUnwindSafe(|| p.log_loop(k));
                if std::panic::catch_unwind(run).is_err() {
                    p.fail(Error::internal("a log thread panicked (a bug in Mako)"));
                    p.freeze();
                    p.notify_checkpoint(ToCheckpoint::Stopped);
                    p.log_thread_done();
                }
            });
        match thread {
            Ok(t) => log_threads.push(t),
            Err(e) => {
                persist.stop_log_threads(log_threads);
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("cannot start a log thread: {e}"),
                ));
            }
        }
    }
    let checkpoint_thread = {
        let p = persist.clone();
        let every = opts.checkpoint_entries.max(1);
        let thread = std::thread::Builder::new()
            .name("mako-checkpoint".into())
            .spawn(move || p.checkpoint_loop(rx, every));
        match thread {
            Ok(t) => t,
            Err(e) => {
                persist.stop_log_threads(log_threads);
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("cannot start the checkpoint thread: {e}"),
                ));
            }
        }
    };
    lock(&persist.threads).extend(log_threads.into_iter().chain([checkpoint_thread]));
    Ok((persist, shards, recovered))
}

/// Installs a recovered version of `key` on `shard`.
fn restore(shard: &Shard, key: &[u8], value: Option<Arc<[u8]>>, vc: VectorClock, epoch: Epoch) {
    // Recovery runs alone, so the record is never locked by anyone else.
    if shard.try_lock(key).is_some() {
        shard.install(key, value, vc, epoch);
    }
}

impl CommitLog for Persist {
    /// Queues `entry` for the log. On a replica with several streams,
    /// each committing thread (a worker) always appends to the same
    /// stream's queue (threads are dealt to the streams in turn as they
    /// first commit), so a worker's entries go out in its order on its
    /// stream, and streams share nothing up to the replay that merges
    /// them.
    fn append(&self, entry: LogEntry) -> Result<()> {
        let k = WORKER.with(|w| *w) % self.queues.len();
        let lq = &self.queues[k];
        let mut q = lock(&lq.queue);
        // Checked under the queue lock: once the log has stopped, nothing
        // joins the queue that its rollback would miss.
        if let Some(e) = self.stop_error() {
            return Err(e);
        }
        if q.closing {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the server is shutting down; the commit was not logged",
            ));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        q.pending.push((seq, entry));
        // The log thread waits for a first entry, for a full batch (while
        // it delays one), or for a batch in flight to be chosen (told by
        // `proposal_done`): only the first two are this entry's to signal.
        let wake = q.pending.len() == 1 || q.pending.len() == self.batching.max_entries;
        drop(q);
        if wake {
            lq.wake.notify_one();
        }
        Ok(())
    }

    fn failure(&self) -> Option<Error> {
        if let Err(e) = self.serving() {
            return Some(e);
        }
        let failed = self.stop_error();
        if failed.is_none() && self.closing.load(Ordering::Acquire) {
            return Some(Error::new(
                ErrorKind::Unavailable,
                "the server is shutting down; the commit was not logged",
            ));
        }
        failed
    }

    fn serving(&self) -> Result<()> {
        if self.replica_of.is_none() {
            return Ok(());
        }
        match self.replicator.get() {
            Some(r) => r.serving(),
            None => Err(Error::new(
                ErrorKind::NotServing,
                "this replica is starting: replication is not running yet",
            )),
        }
    }

    fn status(&self) -> Option<String> {
        self.replica_of.as_ref()?;
        Some(match self.replicator.get() {
            Some(r) => r.status(),
            None => "starting".into(),
        })
    }

    fn durability(&self) -> String {
        if let Some(r) = self.replicator.get() {
            return r.durability();
        }
        let what = match self.sync {
            SyncMode::Always => "each commit synced to disk before it is acknowledged",
            SyncMode::Group => "commits synced to disk in groups before they are acknowledged",
            SyncMode::Off => "commits written but not synced: a machine crash loses the last ones",
        };
        format!("sync={} ({what})", self.sync.name())
    }
}

impl Persist {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sync mode.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// (log entries made durable, log writes) since the directory was
    /// opened: their ratio is the group-commit batch size.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.durable_entries.load(Ordering::Relaxed),
            self.log_writes.load(Ordering::Relaxed),
        )
    }

    /// Makes everything queued durable, writes a final checkpoint and stops
    /// the threads. Later commits fail; call it once the server has stopped
    /// taking them.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.close_queues();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        // A commit that slipped in after all would wait for good.
        self.freeze();
        self.flush_to_tables();
    }

    /// Moves everything written into table files, which are checksummed
    /// and listed in the MANIFEST: after a clean stop nothing depends on
    /// the write-ahead log, so a damaged or cut log loses nothing (a log
    /// cut exactly at a record boundary cannot be told from a crash's).
    fn flush_to_tables(&self) {
        for name in ALL_CFS {
            let flushed = cf(&self.db, name).and_then(|cf| {
                self.db
                    .flush_cf(cf)
                    .map_err(|e| io_error("cannot flush to table files", e))
            });
            if let Err(e) = flushed {
                tracing::warn!(
                    column_family = name,
                    error = %e.message,
                    "not flushed at close: the next start replays the write-ahead log"
                );
            }
        }
    }
}

mod checkpoint;
mod log_thread;
mod replay;
mod replicated;
mod snapshot;
use log_thread::{LogQueue, Queue, WORKER};
pub use replicated::SLOT_SHIFT;
pub use snapshot::SnapshotReader;

#[cfg(test)]
mod tests;
