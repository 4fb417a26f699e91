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
//! If a log write fails (a full disk, an I/O error), the log stops: the
//! commits waiting for it, and every later commit with writes, fail with
//! SQLSTATE 53100 or 58030, while reads of durable data go on. Commits that
//! were installed but never made durable are gone after a restart; none of
//! them was acknowledged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::clock::VectorClock;
use crate::error::{Error, ErrorKind, Result};
use crate::log::{CommitLog, LogEntry, Reader, corrupt, decode_vc, encode_vc};
use crate::shard::{Shard, ShardId};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const CF_LOG: &str = "log";
const CF_DATA: &str = "data";
const CF_META: &str = "meta";

const META_FORMAT: &[u8] = b"format";
const META_SHARDS: &[u8] = b"shards";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_LAST_TXN: &[u8] = b"last_txn";
const META_CLOCK: &[u8] = b"clock/";

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
    /// Log entries applied per checkpoint batch (at most; a checkpoint also
    /// runs after a second without one).
    pub checkpoint_entries: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Group,
            shards: None,
            checkpoint_entries: 20_000,
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
    /// The highest transaction id found (0 if none).
    pub last_txn: u64,
    /// How long recovery took.
    pub elapsed: Duration,
}

/// An open data directory: the commit log of the node's shards.
pub struct Persist {
    db: Arc<DB>,
    dir: PathBuf,
    shards: Vec<Arc<Shard>>,
    sync: SyncMode,
    queue: Mutex<Queue>,
    wake: Condvar,
    failure: Mutex<Option<Error>>,
    to_checkpoint: Mutex<Option<Sender<Sequenced>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Entries made durable so far (for statistics).
    durable_entries: AtomicU64,
    /// Log writes (syncs) done so far (for statistics).
    log_writes: AtomicU64,
    /// Fault injection for tests: how long the log thread waits before each
    /// write (`MAKO_FAULT_LOG_DELAY_MS`), widening the window in which
    /// commits are installed but not yet durable.
    write_delay: Duration,
}

/// Log entries with their sequence numbers, in order.
type Sequenced = Vec<(u64, LogEntry)>;

struct Queue {
    next_seq: u64,
    pending: Sequenced,
    closing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

fn data_value(epoch: u64, vc: &VectorClock, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + 8 * vc.entries().len() + value.len());
    v.extend_from_slice(&epoch.to_le_bytes());
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
        .map_err(|e| io_error("cannot read metadata", e))?
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
    let cfs = [CF_LOG, CF_DATA, CF_META]
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
        let mut err = io_error(&format!("cannot open data directory {}", dir.display()), e);
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
        stored
    };
    if shard_count == 0 {
        return Err(corrupt("the shard count is 0"));
    }
    let shards: Vec<Arc<Shard>> = (0..shard_count)
        .map(|i| Arc::new(Shard::logged(i)))
        .collect();
    let mut recovered = Recovered {
        created: fresh,
        shards: shard_count,
        ..Recovered::default()
    };
    let mut clocks = vec![0u64; shard_count];
    for (s, c) in clocks.iter_mut().enumerate() {
        *c = read_u64(&db, &clock_key(s))?.unwrap_or(0);
    }
    recovered.last_txn = read_u64(&db, META_LAST_TXN)?.unwrap_or(0);

    // The checkpointed state.
    let data = cf(&db, CF_DATA)?;
    for item in db.iterator_cf(data, IteratorMode::Start) {
        let (k, v) = item.map_err(|e| io_error("cannot read the checkpointed data", e))?;
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
        let epoch = r.u64()?;
        let vc = decode_vc(&mut r)?;
        let value: Arc<[u8]> = Arc::from(r.rest());
        clocks[s] = clocks[s].max(vc.entries().get(s).copied().unwrap_or(0));
        recovered.records += 1;
        recovered.bytes += (k.len() + v.len()) as u64;
        restore(&shards[s], &k[4..], Some(value), vc, epoch);
    }

    // The log tail, in order.
    let checkpoint = read_u64(&db, META_CHECKPOINT)?.unwrap_or(0);
    let log = cf(&db, CF_LOG)?;
    let mut last_seq = checkpoint;
    let from = (checkpoint + 1).to_be_bytes();
    for item in db.iterator_cf(log, IteratorMode::From(&from, Direction::Forward)) {
        let (k, v) = item.map_err(|e| io_error("cannot read the commit log", e))?;
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
        if entry.shard >= shard_count {
            return Err(corrupt(format!(
                "log entry {seq} names shard {}",
                entry.shard
            )));
        }
        let s = entry.shard;
        clocks[s] = clocks[s].max(entry.clock());
        recovered.last_txn = recovered.last_txn.max(entry.txn);
        recovered.log_entries += 1;
        for (key, value) in entry.writes {
            restore(&shards[s], &key, value, entry.vc.clone(), entry.epoch);
        }
    }
    for (shard, c) in shards.iter().zip(&clocks) {
        shard.advance_clock(*c);
    }
    recovered.elapsed = started.elapsed();

    let persist = Arc::new(Persist {
        db,
        dir: dir.to_path_buf(),
        shards: shards.clone(),
        sync: opts.sync,
        queue: Mutex::new(Queue {
            next_seq: last_seq + 1,
            pending: Vec::new(),
            closing: false,
        }),
        wake: Condvar::new(),
        failure: Mutex::new(None),
        to_checkpoint: Mutex::new(None),
        threads: Mutex::new(Vec::new()),
        durable_entries: AtomicU64::new(0),
        log_writes: AtomicU64::new(0),
        write_delay: Duration::from_millis(
            std::env::var("MAKO_FAULT_LOG_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
    });
    let (tx, rx) = channel();
    *lock(&persist.to_checkpoint) = Some(tx);
    let log_thread = {
        let p = persist.clone();
        std::thread::Builder::new()
            .name("mako-log".into())
            .spawn(move || p.log_loop())
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the log thread: {e}")))?
    };
    let checkpoint_thread = {
        let p = persist.clone();
        let every = opts.checkpoint_entries.max(1);
        std::thread::Builder::new()
            .name("mako-checkpoint".into())
            .spawn(move || p.checkpoint_loop(rx, every))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start the checkpoint thread: {e}"),
                )
            })?
    };
    lock(&persist.threads).extend([log_thread, checkpoint_thread]);
    Ok((persist, shards, recovered))
}

/// Installs a recovered version of `key` on `shard`.
fn restore(shard: &Shard, key: &[u8], value: Option<Arc<[u8]>>, vc: VectorClock, epoch: u64) {
    // Recovery runs alone, so the record is never locked by anyone else.
    if shard.try_lock(key).is_some() {
        shard.install(key, value, vc, epoch);
    }
}

impl CommitLog for Persist {
    fn append(&self, entry: LogEntry) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let mut q = lock(&self.queue);
        if q.closing {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the server is shutting down; the commit was not logged",
            ));
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.pending.push((seq, entry));
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    fn failure(&self) -> Option<Error> {
        lock(&self.failure).clone()
    }

    fn durability(&self) -> String {
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
        lock(&self.queue).closing = true;
        self.wake.notify_all();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn fail(&self, error: Error) {
        let mut f = lock(&self.failure);
        if f.is_none() {
            *f = Some(error.clone());
        }
        drop(f);
        for s in &self.shards {
            s.fail_durability(error.clone());
        }
    }

    /// The log thread: writes what has queued, syncs, reports durability.
    fn log_loop(&self) {
        let Ok(log) = cf(&self.db, CF_LOG) else {
            self.fail(corrupt("the log column family is missing"));
            return;
        };
        loop {
            let batch = {
                let mut q = lock(&self.queue);
                while q.pending.is_empty() && !q.closing {
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.pending.is_empty() {
                    break; // closing, and everything is written
                }
                if self.sync == SyncMode::Always {
                    let rest = q.pending.split_off(1);
                    std::mem::replace(&mut q.pending, rest)
                } else {
                    std::mem::take(&mut q.pending)
                }
            };
            if self.failure().is_some() {
                continue; // nothing can become durable any more
            }
            if !self.write_delay.is_zero() {
                std::thread::sleep(self.write_delay);
            }
            let mut wb = WriteBatch::default();
            for (seq, entry) in &batch {
                wb.put_cf(log, seq.to_be_bytes(), entry.encode());
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(self.sync != SyncMode::Off);
            if let Err(e) = self.db.write_opt(wb, &wo) {
                self.fail(io_error("cannot write the commit log", e));
                continue;
            }
            self.log_writes.fetch_add(1, Ordering::Relaxed);
            self.durable_entries
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (_, entry) in &batch {
                self.shards[entry.shard].clock_durable(entry.clock());
            }
            if let Some(tx) = lock(&self.to_checkpoint).as_ref() {
                let _ = tx.send(batch);
            }
        }
        // Closing: the checkpoint thread finishes once its channel closes.
        lock(&self.to_checkpoint).take();
    }

    /// The checkpoint thread: applies durable entries to `data` and drops
    /// the log behind them.
    fn checkpoint_loop(&self, rx: Receiver<Sequenced>, every: usize) {
        let mut pending: Sequenced = Vec::new();
        loop {
            let closed = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(batch) => {
                    pending.extend(batch);
                    if pending.len() < every {
                        continue;
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if !pending.is_empty()
                && let Err(e) = self.checkpoint(&pending)
            {
                self.fail(e);
                return;
            }
            pending.clear();
            if closed {
                return;
            }
        }
    }

    fn checkpoint(&self, entries: &[(u64, LogEntry)]) -> Result<()> {
        let (data, meta, log) = (
            cf(&self.db, CF_DATA)?,
            cf(&self.db, CF_META)?,
            cf(&self.db, CF_LOG)?,
        );
        let mut wb = WriteBatch::default();
        let mut clocks: Vec<Option<u64>> = vec![None; self.shards.len()];
        let mut last_txn = read_u64(&self.db, META_LAST_TXN)?.unwrap_or(0);
        for (_, e) in entries {
            for (key, value) in &e.writes {
                let k = data_key(e.shard, key);
                match value {
                    Some(v) => wb.put_cf(data, k, data_value(e.epoch, &e.vc, v)),
                    None => wb.delete_cf(data, k),
                }
            }
            let c = &mut clocks[e.shard];
            *c = Some(c.unwrap_or(0).max(e.clock()));
            last_txn = last_txn.max(e.txn);
        }
        for (s, c) in clocks.iter().enumerate() {
            if let Some(c) = c {
                wb.put_cf(meta, clock_key(s), c.to_le_bytes());
            }
        }
        let last_seq = entries.last().map_or(0, |(seq, _)| *seq);
        wb.put_cf(meta, META_LAST_TXN, last_txn.to_le_bytes());
        wb.put_cf(meta, META_CHECKPOINT, last_seq.to_le_bytes());
        wb.delete_range_cf(log, 0u64.to_be_bytes(), (last_seq + 1).to_be_bytes());
        // Not synced: if this is lost, so is the log deletion, and recovery
        // replays the entries instead.
        self.db
            .write(wb)
            .map_err(|e| io_error("cannot write a checkpoint", e))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mako-persist-{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(shards: usize, checkpoint_entries: usize) -> Options {
        Options {
            sync: SyncMode::Group,
            shards: Some(shards),
            checkpoint_entries,
        }
    }

    /// Commits `writes` on `shard` the way a participant does: lock, take a
    /// clock, append, install; then waits until durable.
    fn commit(p: &Persist, shard: &Shard, txn: u64, writes: &[(&str, Option<&str>)]) {
        for (k, _) in writes {
            shard.try_lock(k.as_bytes()).expect("unlocked");
        }
        let c = shard.next_clock();
        let mut entries = vec![0; p.shards.len()];
        entries[shard.id()] = c;
        let vc = VectorClock::from_vec(entries);
        let writes: Vec<crate::log::AfterImage> = writes
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| Arc::from(v.as_bytes()))))
            .collect();
        p.append(LogEntry {
            txn,
            shard: shard.id(),
            vc: vc.clone(),
            epoch: 1,
            writes: writes.clone(),
        })
        .unwrap();
        for (k, v) in writes {
            shard.install(&k, v, vc.clone(), 1);
        }
        shard.wait_watermark(c).unwrap();
    }

    fn contents(shard: &Shard) -> Vec<(String, String)> {
        let mut out = Vec::new();
        shard.scan(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            |k, r| {
                if let Some(v) = r.value {
                    out.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    ));
                }
                ControlFlow::Continue(())
            },
        );
        out
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn commits_survive_a_restart_from_the_log_and_from_checkpoints() {
        for checkpoint_entries in [1, 1_000_000] {
            let dir = TempDir::new("restart");
            {
                let (p, shards, rec) = open(&dir.0, opts(2, checkpoint_entries)).unwrap();
                assert!(rec.created);
                commit(&p, &shards[0], 1, &[("a", Some("1")), ("b", Some("2"))]);
                commit(&p, &shards[1], 2, &[("x", Some("9"))]);
                commit(&p, &shards[0], 3, &[("a", Some("3")), ("b", None)]);
                assert_eq!(shards[0].watermark(), 2);
                p.close();
            }
            let (p, shards, rec) = open(&dir.0, opts(2, checkpoint_entries)).unwrap();
            assert!(!rec.created);
            assert_eq!(rec.last_txn, 3);
            assert_eq!(contents(&shards[0]), pairs(&[("a", "3")]));
            assert_eq!(contents(&shards[1]), pairs(&[("x", "9")]));
            // Clocks continue after the recovered ones.
            assert_eq!(shards[0].clock(), 2);
            assert_eq!(shards[0].watermark(), 2);
            commit(&p, &shards[0], 4, &[("c", Some("4"))]);
            p.close();
        }
    }

    #[test]
    fn refuses_a_foreign_directory_or_another_shard_count() {
        let dir = TempDir::new("refuse");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("notes.txt"), "hello").unwrap();
        let err = open(&dir.0, opts(1, 10)).err().expect("refused");
        assert!(err.message.contains("not a Mako data directory"), "{err:?}");

        let dir = TempDir::new("shards");
        let (p, _, _) = open(&dir.0, opts(2, 10)).unwrap();
        p.close();
        drop(p);
        let err = open(&dir.0, opts(3, 10)).err().expect("refused");
        assert!(err.message.contains("--shards 2"), "{err:?}");
        let (p, shards, _) = open(
            &dir.0,
            Options {
                shards: None,
                ..opts(0, 10)
            },
        )
        .unwrap();
        assert_eq!(shards.len(), 2);
        p.close();
    }

    #[test]
    fn a_damaged_log_entry_refuses_recovery() {
        let dir = TempDir::new("damaged");
        {
            let (p, shards, _) = open(&dir.0, opts(1, 1_000_000)).unwrap();
            commit(&p, &shards[0], 1, &[("a", Some("1"))]);
            p.close();
            // The final checkpoint covered entry 1; damage the next one.
            let log = cf(&p.db, CF_LOG).unwrap();
            p.db.put_cf(log, 2u64.to_be_bytes(), b"garbage").unwrap();
        }
        let err = open(&dir.0, opts(1, 10)).err().expect("refused");
        assert!(err.message.contains("corrupt data: log entry 2"), "{err:?}");
    }

    #[test]
    fn group_commit_shares_syncs() {
        let dir = TempDir::new("group");
        let (p, shards, _) = open(&dir.0, opts(1, 1_000_000)).unwrap();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (p, shard) = (&p, &shards[0]);
                s.spawn(move || {
                    for i in 0..50u64 {
                        let key = format!("k{t}-{i}");
                        commit(p, shard, t * 1000 + i, &[(&key, Some("v"))]);
                    }
                });
            }
        });
        let (entries, writes) = p.stats();
        assert_eq!(entries, 400);
        assert!(writes < entries, "{writes} syncs for {entries} entries");
        p.close();
    }
}
