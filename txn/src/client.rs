//! `ShardClient`: the participant side of Mako's certification (Mako §4.2).
//!
//! A coordinator (a session's transaction) talks to each shard it touches
//! only through this trait. In one process the implementation is a direct
//! call ([`crate::local::LocalShard`]); across nodes it will be an RPC to the
//! shard leader. The contract below is what either must honour.
//!
//! - A `ShardClient` is stateless between calls: the coordinator passes
//!   back what it locked. Across nodes, [`crate::participant`] keeps the
//!   state per transaction on top of it (and releases by transaction id).
//! - Calls may block the calling thread (an RPC implementation waits for the
//!   reply); the in-process one never waits on another transaction.
//! - `lock` is no-wait: if any key is locked by someone else it releases the
//!   locks it took in this call and fails with a serialization failure.
//! - `validate` fails with a serialization failure when any read is stale; it
//!   never changes state.
//! - `install` cannot fail for a transaction that holds its locks: after a
//!   successful Validate on every participant the transaction is committed.
//! - Every error other than a serialization failure means the participant
//!   could not be reached or is broken; the coordinator releases what it can
//!   and reports the error.

use std::ops::Bound;
use std::sync::Arc;

use kv::{Epoch, ReadResult, Result, ShardId, VectorClock};
use serde::{Deserialize, Serialize};

/// A transaction id, unique within a node's lifetime.
pub type TxnId = u64;

/// A key range. Bounds are owned so ranges can be kept in read sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The lower bound.
    pub start: Bound<Vec<u8>>,
    /// The upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// `[start, end)`.
    pub fn new(start: Vec<u8>, end: Option<Vec<u8>>) -> Self {
        KeyRange {
            start: Bound::Included(start),
            end: end.map_or(Bound::Unbounded, Bound::Excluded),
        }
    }

    /// Borrowed bounds, as the store takes them.
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_ref(&self.start), as_ref(&self.end))
    }

    /// True when no key can lie inside the range (start after end).
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        }
    }

    /// True when `key` lies inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// What a scan saw on one shard.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScanResult {
    /// Every record in the covered range, present or not, with what was read.
    /// Absent ones matter for validation (a key that later appears is a
    /// phantom only if it is present).
    pub records: Vec<(Vec<u8>, ReadResult)>,
    /// The range actually covered: the requested one, or up to and including
    /// the last returned key when the row limit stopped the scan early (for
    /// a reverse scan: from that key to the end).
    pub covered: Option<KeyRange>,
}

/// How a read is identified for validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Seen {
    /// A partitioned key: its version number on its one shard.
    Version(u64),
    /// A replicated key: the VC of the version read (`None`: never written).
    /// Every copy of a replicated key is installed by the same transaction
    /// with the same VC, so any copy can validate a read made on another.
    Vc(Option<VectorClock>),
    /// A key read only to learn that it exists (a foreign key's referenced
    /// row): the read holds while the key has a value, whatever version;
    /// another transaction's update of the row does not invalidate it, its
    /// deletion does.
    Present,
}

impl Seen {
    /// The identity of a read result under the given rule.
    pub fn of(read: &ReadResult, replicated: bool) -> Seen {
        if replicated {
            Seen::Vc(read.vc.clone())
        } else {
            Seen::Version(read.version)
        }
    }
}

/// A point read to validate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointCheck {
    /// The key read.
    pub key: Vec<u8>,
    /// What was seen.
    pub seen: Seen,
}

/// A range read to validate: no record in `range` may have changed, and no
/// new present record may have appeared (phantoms).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanCheck {
    /// The covered range.
    pub range: KeyRange,
    /// Every record seen in the range, in key order.
    pub seen: Vec<(Vec<u8>, Seen)>,
}

/// One buffered write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Write {
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    pub value: Option<Arc<[u8]>>,
}

/// Everything one participant must validate.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Validation {
    /// Point reads.
    pub points: Vec<PointCheck>,
    /// Range reads.
    pub scans: Vec<ScanCheck>,
}

impl Validation {
    /// True when there is nothing to validate.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.scans.is_empty()
    }
}

/// The single-shard short path: Lock, GetClock, Validate and Install in one
/// call, with the same semantics as the four rounds.
#[derive(Debug)]
pub struct LocalCommit<'a> {
    /// The transaction.
    pub txn: TxnId,
    /// Writes, sorted by key.
    pub writes: &'a [Write],
    /// Reads to validate.
    pub validation: &'a Validation,
    /// The max of the VCs the transaction read.
    pub read_vc: &'a VectorClock,
    /// The epoch to tag new versions with.
    pub epoch: Epoch,
}

/// The participant RPCs of one shard (see the module docs for the contract).
pub trait ShardClient: Send + Sync {
    /// The shard this client reaches.
    fn shard_id(&self) -> ShardId;

    /// Reads the newest version of `key`.
    fn read(&self, key: &[u8]) -> Result<ReadResult>;

    /// Reads the newest version of each of `keys` (in order): one round
    /// trip for a shard across the network.
    fn read_many(&self, keys: &[Vec<u8>]) -> Result<Vec<ReadResult>> {
        keys.iter().map(|k| self.read(k)).collect()
    }

    /// Scans `range` in key order (descending when `reverse`), stopping
    /// after `limit` present rows.
    fn scan(&self, range: &KeyRange, limit: Option<usize>, reverse: bool) -> Result<ScanResult>;

    /// Lock round: locks every key (sorted) without waiting. Returns nothing
    /// on success; on conflict nothing stays locked.
    fn lock(&self, txn: TxnId, keys: &[Write]) -> Result<()>;

    /// GetClock round: advances the shard clock and returns its new value.
    fn get_clock(&self, txn: TxnId) -> Result<u64>;

    /// Validate round. `held` are the keys this transaction has locked on this
    /// shard (sorted); their lock does not fail validation.
    fn validate(&self, txn: TxnId, validation: &Validation, held: &[Write]) -> Result<()>;

    /// Install round: installs every write tagged with `vc` and `epoch` and
    /// releases its lock.
    fn install(&self, txn: TxnId, writes: &[Write], vc: &VectorClock, epoch: Epoch) -> Result<()>;

    /// Abort: releases locks taken by `lock`.
    fn release(&self, txn: TxnId, writes: &[Write]) -> Result<()>;

    /// Why the shard's commit log stopped, if it did (its installs are
    /// then not durable and were not applied).
    fn log_failure(&self) -> Option<kv::Error> {
        None
    }

    /// Two-phase commit over Paxos (the baseline Mako is measured
    /// against, not its protocol): logs a record that `txn` prepared here
    /// and returns once that record is durable (replicated, on a
    /// replicated node). Without a log there is nothing to wait for.
    fn log_prepared(&self, _txn: TxnId, _epoch: Epoch) -> Result<()> {
        Ok(())
    }

    /// Returns once the log entry of the commit installed here with clock
    /// value `clock` is durable itself (for the same baseline, whose
    /// participants answer Install only then).
    fn wait_installed_durable(&self, _clock: u64) -> Result<()> {
        Ok(())
    }

    /// The single-shard short path. Returns the transaction's VC.
    fn commit_local(&self, commit: LocalCommit<'_>) -> Result<VectorClock>;
}
