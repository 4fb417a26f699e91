//! The log threads: each takes what its queue holds and writes it as one
//! synced RocksDB write (group commit), or on a replica hands it to its
//! stream as one batch (held while enough are in flight); and, once the
//! log has stopped (a failed write, a refused proposal), freezes the
//! watermarks and rolls back what will never be durable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions};

use super::{CF_LOG, Persist, Sequenced, SyncMode, ToCheckpoint, cf, io_error, lock};
use crate::error::{Error, ErrorKind};
use crate::log::{LogEntry, corrupt};

/// A log queue and its thread's wake-up.
pub(super) struct LogQueue {
    pub(super) queue: Mutex<Queue>,
    pub(super) wake: Condvar,
}

/// What waits for a log thread.
pub(super) struct Queue {
    pub(super) pending: Sequenced,
    /// Set by `close`: the thread writes what is queued and ends.
    pub(super) closing: bool,
    /// Replicated: batches of this queue proposed and not yet chosen (or
    /// lost); see [`Batching::max_in_flight`].
    pub(super) in_flight: usize,
}

/// Numbers the threads that commit (workers), for [`Persist::append`].
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    pub(super) static WORKER: usize = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
}

impl LogQueue {
    /// Waits for a wake-up (or `timeout`) with the queue's lock released.
    fn wait<'a>(
        &self,
        q: MutexGuard<'a, Queue>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Queue> {
        match timeout {
            Some(t) => {
                self.wake
                    .wait_timeout(q, t)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

impl Persist {
    /// Stops the log: no commit with writes is taken any more. The log
    /// threads then freeze the watermarks (on a single node its one log
    /// thread is the only one that raises them, so a batch it has made
    /// durable is settled first: a commit is never reported failed and
    /// then found durable), fail the commits waiting for them, and the
    /// threads roll back what they hold.
    pub(super) fn fail(&self, error: Error) {
        {
            // Every queue locked (in order): no append is between its
            // check and its push.
            let _queues: Vec<_> = self.queues.iter().map(|lq| lock(&lq.queue)).collect();
            let mut f = lock(&self.failure);
            if f.is_some() {
                return;
            }
            // Set under every queue lock: an append holding its queue's
            // sees both or neither.
            self.failed.store(true, Ordering::Release);
            tracing::error!(error = %error.message, "the commit log has stopped: writes are refused until a restart; reads go on");
            *f = Some(error);
        }
        for lq in &self.queues {
            lq.wake.notify_all();
        }
    }

    /// Refuses further appends and wakes the log threads, which finish
    /// what has queued and stop.
    pub(super) fn close_queues(&self) {
        for lq in &self.queues {
            lock(&lq.queue).closing = true;
            lq.wake.notify_all();
        }
    }

    /// Closes the queues and waits for `threads` (log threads started by
    /// an `open` that then failed): the directory is free again.
    pub(super) fn stop_log_threads(&self, threads: Vec<JoinHandle<()>>) {
        self.close_queues();
        for t in threads {
            let _ = t.join();
        }
    }

    /// A log thread has finished: the last one closes the checkpoint
    /// thread's channel, which then finishes.
    pub(super) fn log_thread_done(&self) {
        if self.log_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
            lock(&self.to_checkpoint).take();
        }
    }

    /// The error that stopped the log, if one did.
    pub(super) fn stop_error(&self) -> Option<Error> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.failure).clone()
    }

    /// On the log thread, once the log has stopped: the watermarks never
    /// move again, and whoever waits for them fails.
    pub(super) fn freeze(&self) {
        for s in &self.shards {
            s.freeze_durability();
        }
        self.fail_waiters();
    }

    /// Whoever waits for the (frozen) watermarks fails with the error that
    /// stopped the log.
    pub(super) fn fail_waiters(&self) {
        let error = self.stop_error().unwrap_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "the server is shutting down; the commit was not logged",
            )
        });
        for s in &self.shards {
            s.fail_waiters(error.clone());
        }
    }

    /// The log has stopped and `batch` will never be durable: the
    /// watermarks stop, its writes are undone, and only then are its
    /// committers (and every other waiter) told, so that none of them
    /// finds its failed writes still visible. (A batch another log
    /// thread still holds is rolled back by that thread, possibly after
    /// its committers heard of the failure from here.)
    fn stop_and_roll_back(&self, batch: &[(u64, LogEntry)]) {
        for s in &self.shards {
            s.freeze_durability();
        }
        self.roll_back(batch);
        self.fail_waiters();
    }

    /// Undoes in memory the writes of `entries` that will never be stable
    /// (the log has stopped and the watermarks do not cover them), so that
    /// reads go on seeing only durable data.
    pub(super) fn roll_back(&self, entries: &[(u64, LogEntry)]) {
        for (_, e) in entries.iter().rev() {
            if self.marks.covers(&e.vc) {
                continue;
            }
            for (key, _) in &e.writes {
                self.shards[e.shard].rollback(key, &e.vc);
            }
        }
    }

    /// Log thread `k` (of queue `k`): writes what has queued, syncs,
    /// reports durability; on a replica, hands it to stream `k`. Once the
    /// log has stopped, it rolls back what it still holds.
    pub(super) fn log_loop(&self, k: usize) {
        let Ok(log) = cf(&self.db, CF_LOG) else {
            self.fail(corrupt("the log column family is missing"));
            self.notify_checkpoint(ToCheckpoint::Stopped);
            self.log_thread_done();
            return;
        };
        let lq = &self.queues[k];
        let mut stopped = false;
        let mut last_proposal = Instant::now();
        loop {
            let (batch, failed) = {
                let mut q = lock(&lq.queue);
                let replica = self.replica_of.is_some();
                loop {
                    let failed = self.stop_error().is_some();
                    if q.closing || (failed && !stopped) {
                        break;
                    }
                    if q.pending.is_empty() {
                        q = lq.wait(q, None);
                        continue;
                    }
                    // Held while enough batches are in flight, but not for
                    // long: over a WAN a round trip would otherwise be
                    // added to the commits that just missed a batch. Not
                    // a full batch (it gains nothing by waiting), nor one
                    // entry at a time (`--sync always`: waiting gathers
                    // nothing).
                    let held = if replica
                        && self.sync != SyncMode::Always
                        && q.in_flight >= self.batching.max_in_flight
                        && q.pending.len() < self.batching.max_entries
                    {
                        self.batching
                            .in_flight_wait
                            .saturating_sub(last_proposal.elapsed())
                    } else {
                        Duration::ZERO
                    };
                    if held.is_zero() {
                        break;
                    }
                    q = lq.wait(q, Some(held));
                }
                let failed = self.stop_error().is_some();
                if q.pending.is_empty() && (stopped || !failed) {
                    break; // closing, and everything is written
                }
                // A replica's batch is one stream entry: it may wait a
                // little for more commits, and holds at most so many.
                let replicated = self.replica_of.is_some() && !failed;
                if replicated && !self.batching.delay.is_zero() {
                    let until = Instant::now() + self.batching.delay;
                    while q.pending.len() < self.batching.max_entries && !q.closing {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() || self.stop_error().is_some() {
                            break;
                        }
                        q = lq.wait(q, Some(left));
                    }
                }
                // Another stream may have stopped the log meanwhile: then
                // this batch is rolled back, not proposed.
                let failed = failed || self.stop_error().is_some();
                let replicated = replicated && !failed;
                let batch = if self.sync == SyncMode::Always && !failed {
                    let rest = q.pending.split_off(1);
                    std::mem::replace(&mut q.pending, rest)
                } else if replicated && q.pending.len() > self.batching.max_entries {
                    let rest = q.pending.split_off(self.batching.max_entries);
                    std::mem::replace(&mut q.pending, rest)
                } else {
                    std::mem::take(&mut q.pending)
                };
                if replicated && !batch.is_empty() {
                    q.in_flight += 1;
                    last_proposal = Instant::now();
                }
                (batch, failed)
            };
            if failed {
                // Nothing can become durable any more.
                self.stop_and_roll_back(&batch);
                if !stopped {
                    stopped = true;
                    self.notify_checkpoint(ToCheckpoint::Stopped);
                }
                continue;
            }
            if self.replica_of.is_some() {
                // The stream persists and replicates; `chosen` settles.
                let (seqs, entries): (Vec<u64>, Vec<LogEntry>) = batch.into_iter().unzip();
                let proposed = match self.replicator.get() {
                    Some(r) => r.propose(k, entries),
                    None => Err((
                        Error::new(ErrorKind::NotServing, "replication is not running"),
                        entries,
                    )),
                };
                if let Err((e, entries)) = proposed {
                    self.fail(e);
                    let batch: Sequenced = seqs.into_iter().zip(entries).collect();
                    self.stop_and_roll_back(&batch);
                }
                continue;
            }
            if !self.faults.write_delay.is_zero() {
                std::thread::sleep(self.faults.write_delay);
            }
            let injected = self
                .faults
                .fail_after_writes
                .is_some_and(|n| self.log_writes.load(Ordering::Relaxed) >= n);
            let mut wb = WriteBatch::default();
            for (seq, entry) in &batch {
                wb.put_cf(log, seq.to_be_bytes(), entry.encode());
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(self.sync != SyncMode::Off);
            let written = if injected {
                Err(Error::new(
                    ErrorKind::DiskFull,
                    "cannot write the commit log: No space left on device (injected fault)",
                ))
            } else {
                self.db
                    .write_opt(wb, &wo)
                    .map_err(|e| io_error("cannot write the commit log", e))
            };
            if let Err(e) = written {
                self.fail(e);
                self.stop_and_roll_back(&batch); // the next round rolls back the queue
                continue;
            }
            self.log_writes.fetch_add(1, Ordering::Relaxed);
            self.durable_entries
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let mut touched = vec![false; self.shards.len()];
            for (_, entry) in &batch {
                self.shards[entry.shard].clock_durable(entry.clock());
                touched[entry.shard] = true;
            }
            for (shard, _) in self.shards.iter().zip(&touched).filter(|(_, t)| **t) {
                shard.wake_waiters();
            }
            self.notify_checkpoint(ToCheckpoint::Durable(batch));
        }
        // Closing: the checkpoint thread finishes once its channel closes.
        self.log_thread_done();
    }

    pub(super) fn notify_checkpoint(&self, message: ToCheckpoint) {
        if let Some(tx) = lock(&self.to_checkpoint).as_ref() {
            let _ = tx.send(message);
        }
    }
}
