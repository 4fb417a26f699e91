//! The durability gate: where a commit reply waits until it is safe to send.
//!
//! Mako §4.3: a transaction is speculatively committed once installed (later
//! transactions may read it), but the client hears COMMIT only when its
//! vector clock is covered by the vector watermark (VC ≤ VW): the transaction
//! and everything it read from are durable and replicated on every shard
//! involved. Replication and persistence plug in here by implementing
//! [`CommitGate`]; every commit, single-shard or not, read-only or not,
//! passes through [`CommitGate::wait_durable`] before it is acknowledged.

use std::sync::Arc;
use std::task::{Context, Poll};

use kv::{Result, Shard, VectorClock};

/// Decides when a committed transaction may be acknowledged.
pub trait CommitGate: Send + Sync {
    /// Blocks until every entry of `vc` is covered by the watermark, or fails
    /// when that can no longer happen (the transaction's fate is then unknown
    /// to the client, and the error says so). The transaction is already
    /// installed when this is called, so an error here must never be a
    /// serialization failure: a client would retry, applying it twice. The
    /// coordinator turns any such error into `Unavailable`.
    fn wait_durable(&self, vc: &VectorClock) -> Result<()>;

    /// [`CommitGate::wait_durable`] for a task that must not block its
    /// thread: ready with the same outcome, or pending with the task to be
    /// woken when it may be ready (poll again then; wake-ups may be
    /// spurious).
    fn poll_durable(&self, vc: &VectorClock, cx: &mut Context<'_>) -> Poll<Result<()>>;
}

/// The gate for a single node without persistence or replication: a
/// transaction is as durable as it will ever be once installed, so the
/// watermark is always the current shard clocks and nobody waits.
#[derive(Debug, Default)]
pub struct InstalledIsDurable;

impl CommitGate for InstalledIsDurable {
    fn wait_durable(&self, _vc: &VectorClock) -> Result<()> {
        Ok(())
    }

    fn poll_durable(&self, _vc: &VectorClock, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The gate of a node whose shards log their commits: a commit is
/// acknowledged once, on every shard, its clock entry is at or below the
/// shard's durable watermark ([`Shard::watermark`]). That covers the
/// transaction's own writes and every version it read, since its vector
/// clock is at least theirs.
pub struct WatermarkGate {
    shards: Vec<Arc<Shard>>,
}

impl WatermarkGate {
    /// The gate over `shards` (logged shards, indexed by shard id).
    pub fn new(shards: Vec<Arc<Shard>>) -> Self {
        WatermarkGate { shards }
    }
}

impl CommitGate for WatermarkGate {
    fn wait_durable(&self, vc: &VectorClock) -> Result<()> {
        for (shard, &c) in self.shards.iter().zip(vc.entries()) {
            if c > 0 {
                shard.wait_watermark(c)?;
            }
        }
        Ok(())
    }

    fn poll_durable(&self, vc: &VectorClock, cx: &mut Context<'_>) -> Poll<Result<()>> {
        for (shard, &c) in self.shards.iter().zip(vc.entries()) {
            if c > 0 && shard.poll_watermark(c, cx)?.is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}
