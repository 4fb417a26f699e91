//! A replicated node's side of persistence.
//!
//! On a replica, the log threads (one per stream) do not write the local
//! log: each hands its batches to its stream ([`Replicate::propose`]), which
//! persists it as acceptor state (in the `repl` column family, through
//! [`Persist::repl_write`]) and replicates it. When a slot is chosen the
//! stream calls [`Persist::deliver`], in slot order: the leader's own
//! batches are settled (their clock values count toward the watermark, so
//! their commits are acknowledged), and the replay ([`super::replay`])
//! applies what becomes stable, each shard in clock order. The applied
//! entries go to the checkpoint thread with the replay's progress, so a
//! checkpoint records, per shard, the clock value through which entries
//! are applied and, per stream, the slot below which every slot is; a
//! restart resumes there. The checkpoint position is stored as
//! `slot << SLOT_SHIFT`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{CF_REPL, Persist, Progress, SyncMode, ToCheckpoint, cf, io_error, lock, restore};
use crate::error::{Error, ErrorKind, Result};
use crate::log::{Close, LogEntry, Replicate, StreamValue};

/// Chosen entries are installed on several shards in parallel once a
/// delivery makes at least this many writes ready (below it, starting
/// threads costs more than it saves).
const PARALLEL_WRITES: usize = 256;

/// Checkpoint labels of replicated entries: `slot << SLOT_SHIFT | index`
/// (a batch holds fewer than 2^24 entries).
pub const SLOT_SHIFT: u32 = 24;

impl Persist {
    /// Connects the replication streams: from now on the log threads hand
    /// them every batch. Once only.
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

    /// The stream chose `slot` holding `entries`; see [`Persist::deliver`].
    pub fn chosen(&self, slot: u64, entries: Vec<LogEntry>, own: bool) -> Result<()> {
        self.deliver(0, slot, Some(StreamValue::Batch(entries)), own)
    }

    /// Stream `stream` chose `value` for `slot` (`None`: a no-op); `own`:
    /// this node proposed it. Called in slot order per stream, by one
    /// thread. The leader's own batches are settled at once (their clock
    /// values count toward the watermark, so their commits are
    /// acknowledged); entries are applied as the replay makes them ready
    /// (the replay: each shard in clock order, stable ones
    /// only, shards in parallel) and then go to the checkpoint. A value
    /// naming a shard this node does not have is refused whole (nothing
    /// of it is applied): the replicas disagree, and applying the rest
    /// would diverge.
    pub fn deliver(
        &self,
        stream: usize,
        slot: u64,
        value: Option<StreamValue>,
        own: bool,
    ) -> Result<()> {
        let mut guard = lock(&self.replay);
        let Some(replay) = guard.as_mut() else {
            return Err(Error::internal(
                "a stream value delivered to a directory that is not a replica's",
            ));
        };
        let (mut settled, mut last_txn) = (Vec::new(), 0);
        if let Some(StreamValue::Batch(entries)) = &value {
            for e in entries {
                last_txn = last_txn.max(e.txn);
                if own {
                    settled.push((e.shard, e.clock()));
                }
            }
        }
        let ready = replay.deliver(stream, slot, value, own)?;
        self.last_txn.fetch_max(last_txn, Ordering::AcqRel);
        self.carry_out(replay, ready, settled);
        Ok(())
    }

    /// Chosen entries the replay holds back (see `Replay::waiting`): a
    /// new leader serves only once there are none, so that it never
    /// serves without an acknowledged transaction that waited for
    /// another group's watermark.
    pub fn replay_waiting(&self) -> usize {
        lock(&self.replay).as_ref().map_or(0, |r| r.waiting())
    }

    /// Marks the shards another replica group holds: their watermarks
    /// come from that group ([`Persist::remote_watermark`]), and this
    /// group's closes leave them alone.
    pub fn set_remote_shards(&self, remote: &[bool]) -> Result<()> {
        match lock(&self.replay).as_mut() {
            Some(replay) => {
                replay.set_remote(remote);
                Ok(())
            }
            None => Err(Error::internal(
                "remote shards on a directory that is not a replica's",
            )),
        }
    }

    /// The group holding shard `shard` (another group's) reports its
    /// durable watermark `w`: this node's copy of that shard's watermark
    /// follows (commit replies waiting for it go out), and chosen
    /// entries that depended on it are applied.
    pub fn remote_watermark(&self, shard: usize, w: u64) -> Result<()> {
        let Some(s) = self.shards.get(shard) else {
            return Err(Error::internal(format!(
                "a watermark for unknown shard {shard}"
            )));
        };
        if w <= s.watermark() {
            return Ok(());
        }
        let mut guard = lock(&self.replay);
        let Some(replay) = guard.as_mut() else {
            s.advance_clock(w);
            s.wake_waiters();
            return Ok(());
        };
        let mut ready = replay.raise(shard, w);
        ready.jumps[shard] = ready.jumps[shard].max(w);
        self.carry_out(replay, ready, Vec::new());
        Ok(())
    }

    /// Carries out what the replay made ready: settles the clock values
    /// of this node's own entries, moves watermarks, installs the entries
    /// others proposed, and hands the applied ones to the checkpoint.
    fn carry_out(
        &self,
        replay: &mut super::replay::Replay,
        ready: super::replay::Ready,
        settled: Vec<(usize, u64)>,
    ) {
        let mut touched = vec![false; self.shards.len()];
        for (s, c) in settled {
            self.shards[s].clock_durable(c);
            touched[s] = true;
        }
        for (s, &to) in ready.jumps.iter().enumerate() {
            if to > 0 {
                self.shards[s].advance_clock(to);
                touched[s] = true;
            }
        }
        self.install_ready(&ready.apply);
        let mut applied = Vec::new();
        for (s, entries) in ready.apply.into_iter().enumerate() {
            for (e, own) in entries {
                if !own {
                    self.shards[s].advance_clock(e.clock());
                    touched[s] = true;
                }
                applied.push(e);
            }
        }
        for (shard, _) in self.shards.iter().zip(&touched).filter(|(_, t)| **t) {
            shard.wake_waiters();
        }
        if ready.dropped > 0 {
            tracing::warn!(
                dropped = ready.dropped,
                "a new leader closed its predecessors' entries: dropped those that depend on \
                 commits never chosen (none of them was acknowledged)"
            );
        }
        if let Some(&last) = ready.closed.last() {
            *lock(&self.last_close) = last;
        }
        self.durable_entries
            .fetch_add(applied.len() as u64, Ordering::Relaxed);
        let progress = Progress {
            done: replay.done(),
            positions: replay.positions(),
            last_txn: self.last_txn.load(Ordering::Acquire),
        };
        self.notify_checkpoint(ToCheckpoint::Replayed(applied, progress));
    }

    /// A batch that stream `stream`'s log thread proposed was chosen, or
    /// will never be (its proposal was lost): the log thread may propose
    /// another (see [`super::Batching::max_in_flight`]). The replication
    /// layer calls it once per batch, as soon as it knows.
    pub fn proposal_done(&self, stream: usize) {
        if let Some(lq) = self.queues.get(stream) {
            let mut q = lock(&lq.queue);
            debug_assert!(q.in_flight > 0, "a batch reported done twice");
            q.in_flight = q.in_flight.saturating_sub(1);
            drop(q);
            lq.wake.notify_one();
        }
    }

    /// Installs the entries others proposed, each shard's in order, the
    /// shards in parallel when there is enough to do.
    fn install_ready(&self, apply: &[Vec<(LogEntry, bool)>]) {
        let work: Vec<(usize, &[(LogEntry, bool)])> = apply
            .iter()
            .enumerate()
            .filter(|(_, es)| es.iter().any(|(_, own)| !own))
            .map(|(s, es)| (s, es.as_slice()))
            .collect();
        let writes: usize = work
            .iter()
            .flat_map(|(_, es)| es.iter())
            .map(|(e, _)| e.writes.len())
            .sum();
        let install = |s: usize, entries: &[(LogEntry, bool)]| {
            for (e, _) in entries.iter().filter(|(_, own)| !own) {
                for (key, value) in &e.writes {
                    restore(&self.shards[s], key, value.clone(), e.vc.clone(), e.epoch);
                }
            }
        };
        match work.split_first() {
            Some((&(s, first), rest))
                if !rest.is_empty() && writes >= PARALLEL_WRITES && self.parallel_replay =>
            {
                std::thread::scope(|scope| {
                    for &(s, es) in rest {
                        scope.spawn(move || install(s, es));
                    }
                    install(s, first);
                });
            }
            _ => {
                for (s, es) in work {
                    install(s, es);
                }
            }
        }
    }

    /// A new leader's close of its predecessors' entries (see
    /// [`Close`]): every slot below `through` must have been delivered.
    pub fn close_for(&self, leader: u64, ballot: u64, through: Vec<u64>) -> Result<Close> {
        let guard = lock(&self.replay);
        let Some(replay) = guard.as_ref() else {
            return Err(Error::internal(
                "a close on a directory that is not a replica's",
            ));
        };
        let clocks: Vec<u64> = self.shards.iter().map(|s| s.clock()).collect();
        Ok(replay.close(leader, ballot, through, &clocks))
    }

    /// The last close applied, as `(leader, epoch)`.
    pub fn last_close(&self) -> (u64, u64) {
        *lock(&self.last_close)
    }

    /// Every slot of stream 0 below this is applied and in a synced
    /// checkpoint.
    pub fn checkpointed_slot(&self) -> u64 {
        self.checkpointed_slot_of(0)
    }

    /// Every slot of stream `stream` below this is applied and in a
    /// synced checkpoint.
    pub fn checkpointed_slot_of(&self, stream: usize) -> u64 {
        self.checkpointed
            .get(stream)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// The number of streams (1 on a node that is not replicated).
    pub fn streams(&self) -> usize {
        self.checkpointed.len().max(1)
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
