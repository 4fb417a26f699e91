//! The durability gate: where a commit reply waits until it is safe to send.
//!
//! Mako §4.3: a transaction is speculatively committed once installed (later
//! transactions may read it), but the client hears COMMIT only when its
//! vector clock is covered by the vector watermark (VC ≤ VW): the transaction
//! and everything it read from are durable and replicated on every shard
//! involved. Replication and persistence plug in here by implementing
//! [`CommitGate`]; every commit, single-shard or not, read-only or not,
//! passes through [`CommitGate::wait_durable`] before it is acknowledged.

use kv::{Result, VectorClock};

/// Decides when a committed transaction may be acknowledged.
pub trait CommitGate: Send + Sync {
    /// Blocks until every entry of `vc` is covered by the watermark, or fails
    /// when that can no longer happen (the transaction's fate is then unknown
    /// to the client, and the error says so). The transaction is already
    /// installed when this is called, so an error here must never be a
    /// serialization failure: a client would retry, applying it twice. The
    /// coordinator turns any such error into `Unavailable`.
    fn wait_durable(&self, vc: &VectorClock) -> Result<()>;
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
}
