//! Checkpoints: the checkpoint thread applies durable (a single node's)
//! or replayed (a replica's) entries to the `data` column family in
//! batches, and in the same atomic write records how far it got, so the
//! log behind it (or the stream slots behind it) can go.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::{
    CF_DATA, CF_LOG, CF_META, META_CHECKPOINT, META_LAST_TXN, META_REPLAY, META_STREAMS, Persist,
    Progress, SLOT_SHIFT, Sequenced, SyncMode, ToCheckpoint, cf, clock_key, data_key, data_value,
    io_error, read_u64,
};
use crate::error::Result;
use crate::log::LogEntry;

/// A checkpoint runs at least this often under load (and after this long
/// without new entries)...
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// ...and whenever this many bytes of after-images are waiting for one.
const CHECKPOINT_BYTES: usize = 64 << 20;

impl Persist {
    /// The checkpoint thread: applies stable entries to `data` and drops
    /// the log behind them. Once the log has stopped, it rolls back the
    /// entries it holds that will never be stable.
    pub(super) fn checkpoint_loop(&self, rx: Receiver<ToCheckpoint>, every: usize) {
        let mut pending: Sequenced = Vec::new();
        // A replica's applied entries, and how far its replay had gone.
        let mut replayed: (Vec<LogEntry>, Option<Progress>) = (Vec::new(), None);
        // Bytes of after-images pending, and when the last checkpoint ran:
        // big rows or a steady load must not let the log grow unchecked.
        let mut bytes = 0usize;
        let mut last = Instant::now();
        // Log threads that have stopped and rolled back their queues.
        let mut stops = 0;
        let due = |n: usize, bytes: usize, last: Instant| {
            n >= every || bytes >= CHECKPOINT_BYTES || last.elapsed() >= CHECKPOINT_INTERVAL
        };
        loop {
            let (closed, stopped) = match rx.recv_timeout(CHECKPOINT_INTERVAL) {
                Ok(ToCheckpoint::Durable(batch)) => {
                    bytes += batch.iter().map(|(_, e)| e.size()).sum::<usize>();
                    pending.extend(batch);
                    if !due(pending.len(), bytes, last) {
                        continue;
                    }
                    (false, false)
                }
                Ok(ToCheckpoint::Replayed(entries, progress)) => {
                    bytes += entries.iter().map(LogEntry::size).sum::<usize>();
                    replayed.0.extend(entries);
                    replayed.1 = Some(progress);
                    if !due(replayed.0.len(), bytes, last) {
                        continue;
                    }
                    (false, false)
                }
                Ok(ToCheckpoint::Stopped) => {
                    stops += 1;
                    (false, stops >= self.queues.len())
                }
                Err(RecvTimeoutError::Timeout) => (false, false),
                Err(RecvTimeoutError::Disconnected) => (true, false),
            };
            if self.stop_error().is_some() {
                if stopped || closed {
                    self.roll_back(&pending);
                    return;
                }
                continue; // until the log threads have rolled back their parts
            }
            last = Instant::now();
            let done = match replayed.1.take() {
                Some(progress) => {
                    let entries = std::mem::take(&mut replayed.0);
                    self.checkpoint_replayed(&entries, &progress)
                }
                None => self.checkpoint(&mut pending),
            };
            if let Err(e) = done {
                self.fail(e);
                continue;
            }
            bytes = pending.iter().map(|(_, e)| e.size()).sum();
            if closed {
                return;
            }
        }
    }

    /// Applies the longest stable prefix of `pending` (in log order, so
    /// that per key the last write wins) and removes it.
    fn checkpoint(&self, pending: &mut Sequenced) -> Result<()> {
        let bound = self.marks.snapshot();
        let n = pending.iter().take_while(|(_, e)| e.vc.le(&bound)).count();
        if n == 0 {
            return Ok(());
        }
        let mut last_txn = read_u64(&self.db, META_LAST_TXN)?.unwrap_or(0);
        for (_, e) in &pending[..n] {
            last_txn = last_txn.max(e.txn);
        }
        let through = pending[n - 1].0;
        let entries = pending[..n].iter().map(|(_, e)| e);
        let mut wb = checkpoint_batch(&self.db, entries, &bound, last_txn, through)?;
        wb.delete_range_cf(
            cf(&self.db, CF_LOG)?,
            0u64.to_be_bytes(),
            (through + 1).to_be_bytes(),
        );
        // Not synced: if this is lost, so is the log deletion, and
        // recovery replays the entries instead.
        self.db
            .write(wb)
            .map_err(|e| io_error("cannot write a checkpoint", e))?;
        pending.drain(..n);
        Ok(())
    }

    /// A replica's checkpoint: applies what the replay applied, records
    /// its progress, synced (the others may forget the slots it covers).
    fn checkpoint_replayed(&self, entries: &[LogEntry], progress: &Progress) -> Result<()> {
        let position = progress.positions.first().copied().unwrap_or(1);
        let mut wb = checkpoint_batch(
            &self.db,
            entries.iter(),
            &progress.done,
            progress.last_txn,
            position << SLOT_SHIFT,
        )?;
        let meta = cf(&self.db, CF_META)?;
        wb.put_cf(meta, META_REPLAY, 1u64.to_le_bytes());
        let streams: Vec<u8> = progress
            .positions
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        wb.put_cf(meta, META_STREAMS, streams);
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync != SyncMode::Off);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| io_error("cannot write a checkpoint", e))?;
        for (c, &p) in self.checkpointed.iter().zip(&progress.positions) {
            c.fetch_max(p, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// One atomic write that applies `entries` (stable, each key's in order)
/// to `data`, records the watermarks `bound` (every clock value up to
/// them is now in `data`, or still in the log or the streams), the last
/// transaction id and the checkpoint position `through`.
pub(super) fn checkpoint_batch<'a>(
    db: &DB,
    entries: impl Iterator<Item = &'a LogEntry>,
    bound: &[u64],
    last_txn: u64,
    through: u64,
) -> Result<WriteBatch> {
    let (data, meta) = (cf(db, CF_DATA)?, cf(db, CF_META)?);
    let mut wb = WriteBatch::default();
    for e in entries {
        for (key, value) in &e.writes {
            let k = data_key(e.shard, key);
            match value {
                Some(v) => wb.put_cf(data, k, data_value(e.epoch, &e.vc, v)),
                None => wb.delete_cf(data, k),
            }
        }
    }
    for (s, c) in bound.iter().enumerate() {
        wb.put_cf(meta, clock_key(s), c.to_le_bytes());
    }
    wb.put_cf(meta, META_LAST_TXN, last_txn.to_le_bytes());
    wb.put_cf(meta, META_CHECKPOINT, through.to_le_bytes());
    Ok(wb)
}
