//! A replicated node's side of persistence.
//!
//! On a replica, the log thread does not write the local log: it hands
//! each batch to the replication stream ([`Replicate::propose`]), which
//! persists it as acceptor state (in the `repl` column family, through
//! [`Persist::repl_write`]) and replicates it. When a slot is chosen the
//! stream calls [`Persist::chosen`], in slot order: the leader's own
//! batches are settled (their clock values count toward the watermark, so
//! their commits are acknowledged), and a follower installs the batches it
//! receives. Either way the entries go to the checkpoint thread labelled
//! with their slot (`slot << SLOT_SHIFT | index`), so a checkpoint records
//! how far the stream has been applied, and a restart resumes there.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{CF_REPL, Persist, SyncMode, ToCheckpoint, cf, io_error, restore};
use crate::error::{Error, ErrorKind, Result};
use crate::log::{LogEntry, Replicate};

/// Checkpoint labels of replicated entries: `slot << SLOT_SHIFT | index`
/// (a batch holds fewer than 2^24 entries).
pub const SLOT_SHIFT: u32 = 24;

impl Persist {
    /// Connects the replication stream: from now on the log thread hands
    /// it every batch. Once only.
    pub fn start_replication(&self, r: Arc<dyn Replicate>) -> Result<()> {
        if self.replica_of.is_none() {
            return Err(Error::internal(
                "replication started on a directory that is not a replica's",
            ));
        }
        self.replicator
            .set(r)
            .map_err(|_| Error::internal("replication started twice"))
    }

    /// The stream chose `slot` holding `entries`. `own`: this node
    /// proposed them and has them installed already (they are settled);
    /// otherwise they are installed now. Called in slot order, by one
    /// thread. A batch naming a shard this node does not have is refused
    /// whole (nothing of it is applied): the replicas disagree on their
    /// shard count, and applying the rest would diverge.
    pub fn chosen(&self, slot: u64, entries: Vec<LogEntry>, own: bool) -> Result<()> {
        if let Some(e) = entries.iter().find(|e| e.shard >= self.shards.len()) {
            return Err(crate::log::corrupt(format!(
                "the batch chosen for slot {slot} names shard {} of a node with {} shards",
                e.shard,
                self.shards.len()
            )));
        }
        let mut touched = vec![false; self.shards.len()];
        let mut last_txn = 0;
        for e in &entries {
            let shard = &self.shards[e.shard];
            if !own {
                for (key, value) in &e.writes {
                    restore(shard, key, value.clone(), e.vc.clone(), e.epoch);
                }
                shard.advance_clock(e.clock());
            }
            shard.clock_durable(e.clock());
            touched[e.shard] = true;
            last_txn = last_txn.max(e.txn);
        }
        self.last_txn.fetch_max(last_txn, Ordering::AcqRel);
        for (shard, _) in self.shards.iter().zip(&touched).filter(|(_, t)| **t) {
            shard.wake_waiters();
        }
        self.durable_entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let labelled = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| ((slot << SLOT_SHIFT) | i as u64, e))
            .collect();
        self.notify_checkpoint(ToCheckpoint::Durable(labelled));
        Ok(())
    }

    /// Every stream slot below this is applied and in a synced checkpoint.
    pub fn checkpointed_slot(&self) -> u64 {
        self.checkpointed_slot.load(Ordering::Acquire)
    }

    /// The highest transaction id recovered or applied: a new leader's
    /// transaction ids continue after it.
    pub fn last_txn(&self) -> u64 {
        self.last_txn.load(Ordering::Acquire)
    }

    /// Writes stream records (opaque keys and values), synced when
    /// `sync` and the node syncs at all.
    pub fn repl_write(&self, puts: &[(Vec<u8>, Vec<u8>)], sync: bool) -> Result<()> {
        let cf = cf(&self.db, CF_REPL)?;
        let mut wb = WriteBatch::default();
        for (k, v) in puts {
            wb.put_cf(cf, k, v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync && self.sync != SyncMode::Off);
        self.log_writes.fetch_add(1, Ordering::Relaxed);
        self.db.write_opt(wb, &wo).map_err(|e| {
            let mut err = io_error("cannot write replication state", e);
            if err.message.contains("No space") {
                err.kind = ErrorKind::DiskFull;
            }
            err
        })
    }

    /// Deletes the stream records with keys in `[from, to)`.
    pub fn repl_delete_range(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let cf = cf(&self.db, CF_REPL)?;
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(cf, from, to);
        self.db
            .write(wb)
            .map_err(|e| io_error("cannot drop replication state", e))
    }

    /// Every stream record, in key order.
    pub fn repl_records(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let cf = cf(&self.db, CF_REPL)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&[], Direction::Forward))
        {
            let (k, v) = item.map_err(|e| io_error("cannot read replication state", e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
