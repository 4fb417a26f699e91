//! The in-process participant: `ShardClient` as a direct call on a
//! [`kv::Shard`].
//!
//! With a commit log, the participant appends each transaction's writes to
//! it before installing them (the keys are still locked, so per key the
//! log is in install order), and logs a marker for each clock value it
//! handed out to a transaction that then aborted: the shard's durable
//! watermark passes a clock value only once its entry or marker is
//! durable, so recovery finds every value below the watermark accounted
//! for.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use kv::log::{CommitLog, LogEntry};
use kv::{ClockBuilder, Epoch, Error, ReadResult, Result, Shard, ShardId, VectorClock};

use crate::client::{
    KeyRange, LocalCommit, PointCheck, ScanCheck, ScanResult, Seen, ShardClient, TxnId, Validation,
    Write,
};

/// A shard in this process.
pub struct LocalShard {
    /// The store.
    shard: Arc<Shard>,
    /// The number of shards in the cluster (the length of vector clocks).
    shards: usize,
    /// Where installed transactions are logged, if anywhere.
    log: Option<Arc<dyn CommitLog>>,
    /// Clock values handed out at GetClock to transactions that have not
    /// installed or released yet (only tracked with a log).
    clocks: Mutex<HashMap<TxnId, u64>>,
}

impl LocalShard {
    /// Wraps `shard`, one of `shards`.
    pub fn new(shard: Arc<Shard>, shards: usize) -> Self {
        LocalShard {
            shard,
            shards,
            log: None,
            clocks: Mutex::new(HashMap::new()),
        }
    }

    /// Wraps a logged `shard` (see [`Shard::logged`]), one of `shards`,
    /// whose installs are appended to `log`.
    pub fn logged(shard: Arc<Shard>, shards: usize, log: Arc<dyn CommitLog>) -> Self {
        LocalShard {
            log: Some(log),
            ..Self::new(shard, shards)
        }
    }

    fn clocks(&self) -> std::sync::MutexGuard<'_, HashMap<TxnId, u64>> {
        self.clocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the writes to the log (if any): before installing, with the
    /// keys locked. False when the log has stopped: the commit point has
    /// passed, but the writes can never become durable, so they are not
    /// installed, and the durability gate fails the commit reply (the log
    /// rolls back whatever the transaction installed on other shards).
    fn log_writes(&self, txn: TxnId, writes: &[Write], vc: &VectorClock, epoch: Epoch) -> bool {
        let Some(log) = &self.log else {
            return true;
        };
        // A commit that only validated here took no clock value here:
        // there is nothing to log, and an entry would carry the clock
        // value of a version it read, settling that writer's value before
        // the writer's own entry is durable.
        if writes.is_empty() {
            return true;
        }
        log.append(LogEntry {
            txn,
            shard: self.shard.id(),
            vc: vc.clone(),
            epoch,
            writes: writes
                .iter()
                .map(|w| (w.key.clone(), w.value.clone()))
                .collect(),
        })
        .is_ok()
    }

    /// The transaction that took clock value `clock` here aborted. With a
    /// log, a marker (an entry without writes) settles the value once it is
    /// durable; without one, nothing waits for it.
    fn abandon(&self, txn: TxnId, clock: u64) {
        match &self.log {
            None => self.shard.abandon_clock(clock),
            Some(log) => {
                // If the log has stopped, the watermark never passes this
                // value again anyway.
                let _ = self.append_marker(log, txn, clock, Epoch(0));
            }
        }
    }

    /// Appends a marker (an entry without writes) for clock value `clock`:
    /// once durable, it settles the value.
    fn append_marker(
        &self,
        log: &Arc<dyn CommitLog>,
        txn: TxnId,
        clock: u64,
        epoch: Epoch,
    ) -> Result<()> {
        let mut vc = ClockBuilder::new(self.shards);
        vc.observe(self.shard.id(), clock);
        log.append(LogEntry {
            txn,
            shard: self.shard.id(),
            vc: vc.build(),
            epoch,
            writes: Vec::new(),
        })
    }

    /// The store behind this client.
    pub fn store(&self) -> &Arc<Shard> {
        &self.shard
    }

    /// A replica that is not its group's serving leader refuses reads
    /// too: what it has may be stale.
    fn serving(&self) -> Result<()> {
        match &self.log {
            Some(log) => log.serving(),
            None => Ok(()),
        }
    }

    fn holds(held: &[Write], key: &[u8]) -> bool {
        held.binary_search_by(|w| w.key.as_slice().cmp(key)).is_ok()
    }

    fn stale(what: &str) -> Error {
        Error::conflict(format!(
            "could not serialize access due to concurrent update ({what})"
        ))
    }

    /// True when a read identified by `seen` still holds for `current`.
    fn matches(seen: &Seen, current: &ReadResult, held: bool) -> bool {
        if current.locked && !held {
            return false;
        }
        match seen {
            Seen::Version(v) => current.version == *v,
            Seen::Vc(vc) => current.vc == *vc,
            Seen::Present => current.value.is_some(),
        }
    }

    fn check_point(&self, p: &PointCheck, held: &[Write]) -> bool {
        let is_held = Self::holds(held, &p.key);
        match &p.seen {
            // Fast path: compare the lock/version word only.
            Seen::Version(v) => self.shard.check(&p.key, *v, is_held),
            seen => Self::matches(seen, &self.shard.read(&p.key), is_held),
        }
    }

    /// Re-scans the covered range: every record seen must be unchanged, and a
    /// record not seen before must not be present now (a phantom) nor be in
    /// the middle of someone else's commit.
    fn check_scan(&self, s: &ScanCheck, held: &[Write]) -> bool {
        let mut seen = s.seen.iter().peekable();
        let mut ok = true;
        let (start, end) = s.range.bounds();
        self.shard.scan(start, end, |key, current| {
            // Seen keys that the re-scan skipped were read as missing on
            // another copy (replicated) or never existed: they must still be
            // missing, which they are since they are not here.
            while let Some((k, id)) = seen.peek() {
                if k.as_slice() >= key {
                    break;
                }
                if !Self::never_written(id) {
                    ok = false;
                    return ControlFlow::Break(());
                }
                seen.next();
            }
            let is_held = Self::holds(held, key);
            let unchanged = match seen.peek() {
                Some((k, id)) if k.as_slice() == key => {
                    let r = Self::matches(id, &current, is_held);
                    seen.next();
                    r
                }
                _ => current.value.is_none() && (!current.locked || is_held),
            };
            if unchanged {
                ControlFlow::Continue(())
            } else {
                ok = false;
                ControlFlow::Break(())
            }
        });
        ok && seen.all(|(_, id)| Self::never_written(id))
    }

    fn never_written(seen: &Seen) -> bool {
        matches!(seen, Seen::Version(0) | Seen::Vc(None))
    }

    fn unlock_all(&self, writes: &[Write]) {
        for w in writes {
            self.shard.unlock(&w.key);
        }
    }
}

impl ShardClient for LocalShard {
    fn shard_id(&self) -> ShardId {
        self.shard.id()
    }

    fn read(&self, key: &[u8]) -> Result<ReadResult> {
        self.serving()?;
        Ok(self.shard.read(key))
    }

    fn scan(&self, range: &KeyRange, limit: Option<usize>, reverse: bool) -> Result<ScanResult> {
        self.serving()?;
        let mut out = ScanResult {
            records: Vec::new(),
            covered: Some(range.clone()),
        };
        let mut present = 0usize;
        let (start, end) = range.bounds();
        let visit = |key: &[u8], read: ReadResult| {
            let is_present = read.value.is_some();
            out.records.push((key.to_vec(), read));
            if is_present {
                present += 1;
                if limit.is_some_and(|l| present >= l) {
                    // Only the part up to this key was read.
                    out.covered = Some(if reverse {
                        KeyRange {
                            start: std::ops::Bound::Included(key.to_vec()),
                            end: range.end.clone(),
                        }
                    } else {
                        KeyRange {
                            start: range.start.clone(),
                            end: std::ops::Bound::Included(key.to_vec()),
                        }
                    });
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        };
        if reverse {
            self.shard.scan_rev(start, end, visit);
        } else {
            self.shard.scan(start, end, visit);
        }
        if reverse {
            // Validation re-scans forward; keep the seen records in key order.
            out.records.reverse();
        }
        Ok(out)
    }

    fn lock(&self, _txn: TxnId, writes: &[Write]) -> Result<()> {
        // A stopped log refuses writes before anything is locked (reads
        // go on).
        if !writes.is_empty()
            && let Some(e) = self.log.as_ref().and_then(|l| l.failure())
        {
            return Err(e);
        }
        for (i, w) in writes.iter().enumerate() {
            if self.shard.try_lock(&w.key).is_none() {
                self.unlock_all(&writes[..i]);
                return Err(Self::stale("row is locked by a committing transaction"));
            }
        }
        Ok(())
    }

    fn get_clock(&self, txn: TxnId) -> Result<u64> {
        let c = self.shard.next_clock();
        if self.log.is_some() {
            self.clocks().insert(txn, c);
        }
        Ok(c)
    }

    fn validate(&self, _txn: TxnId, v: &Validation, held: &[Write]) -> Result<()> {
        if !v.points.iter().all(|p| self.check_point(p, held)) {
            return Err(Self::stale("a row read has changed"));
        }
        if !v.scans.iter().all(|s| self.check_scan(s, held)) {
            return Err(Self::stale("a range read has changed"));
        }
        Ok(())
    }

    fn install(&self, txn: TxnId, writes: &[Write], vc: &VectorClock, epoch: Epoch) -> Result<()> {
        let taken = match &self.log {
            Some(_) => self.clocks().remove(&txn),
            None => None,
        };
        if writes.is_empty() {
            // A shard that took a clock value without writing (a
            // coordinator's own): a marker settles the value, as the
            // commit's entry would have.
            if let (Some(log), Some(c)) = (&self.log, taken) {
                self.append_marker(log, txn, c, epoch)?;
            }
            return Ok(());
        }
        if !self.log_writes(txn, writes, vc, epoch) {
            self.unlock_all(writes);
            return Ok(());
        }
        for w in writes {
            self.shard
                .install(&w.key, w.value.clone(), vc.clone(), epoch);
        }
        Ok(())
    }

    fn release(&self, txn: TxnId, writes: &[Write]) -> Result<()> {
        self.unlock_all(writes);
        let abandoned = self.clocks().remove(&txn);
        if let Some(c) = abandoned {
            self.abandon(txn, c);
        }
        Ok(())
    }

    fn log_failure(&self) -> Option<Error> {
        self.log.as_ref().and_then(|l| l.failure())
    }

    fn log_prepared(&self, txn: TxnId, epoch: Epoch) -> Result<()> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        // The record is a marker with a clock value of its own: durable,
        // it settles that value like an abandoned commit's.
        let clock = self.shard.next_clock();
        // If the log has stopped, the value stays in flight: the watermark
        // never moves again anyway.
        self.append_marker(log, txn, clock, epoch)?;
        self.shard.wait_settled(clock)
    }

    fn wait_installed_durable(&self, clock: u64) -> Result<()> {
        self.shard.wait_settled(clock)
    }

    fn commit_local(&self, c: LocalCommit<'_>) -> Result<VectorClock> {
        self.lock(c.txn, c.writes)?;
        // Until the install, a failure or a panic (a bug) must release the
        // locks and the clock value: a value left in flight would hold the
        // shard's watermark, and every later commit, for good.
        let mut pending = Pending {
            shard: self,
            txn: c.txn,
            writes: c.writes,
            clock: None,
        };
        let vc = if c.writes.is_empty() {
            c.read_vc.clone()
        } else {
            let clock = self.shard.next_clock();
            pending.clock = Some(clock);
            let mut b = ClockBuilder::new(self.shards);
            b.merge(c.read_vc);
            b.observe(self.shard.id(), clock);
            b.build()
        };
        if let Err(e) = self.validate(c.txn, c.validation, c.writes) {
            drop(pending);
            return Err(e);
        }
        pending.clock = None;
        pending.writes = &[];
        self.install(c.txn, c.writes, &vc, c.epoch)?;
        Ok(vc)
    }
}

/// A single-shard commit between Lock and Install: dropped before the
/// install, it unlocks the writes and abandons the clock value.
struct Pending<'a> {
    shard: &'a LocalShard,
    txn: TxnId,
    writes: &'a [Write],
    clock: Option<u64>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.shard.unlock_all(self.writes);
        if let Some(clock) = self.clock {
            self.shard.abandon(self.txn, clock);
        }
    }
}
