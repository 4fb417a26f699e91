//! Vector clocks (Mako §4): one 64-bit shard clock per shard.
//!
//! Every installed version is tagged with the vector clock (VC) of the
//! transaction that wrote it. A transaction's VC is the element-wise maximum
//! of the clock values its participants handed out at GetClock and of the VCs
//! of every version it read, so anything it depends on has a VC that is ≤ its
//! own. Replication will gate a commit reply on `VC ≤ vector watermark`.
//!
//! A `VectorClock` is immutable and cheap to clone (shared), because every
//! version a transaction installs carries the same one.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A Mako epoch (Mako §5): the cluster-wide number that changes when a
/// replica group fails over (the configuration manager will advance it);
/// every version is tagged with the epoch its transaction committed in,
/// and versions of a failed epoch beyond the finalized watermark are
/// rolled back. Not a Paxos ballot's number (`repl::paxos::Ballot`),
/// which counts one group's leaderships.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An immutable vector clock with one entry per shard.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock(Arc<[u64]>);

impl VectorClock {
    /// The all-zero clock for `shards` shards: what a key that was never
    /// written depends on.
    pub fn zero(shards: usize) -> Self {
        VectorClock(vec![0; shards].into())
    }

    /// Wraps explicit entries.
    pub fn from_vec(entries: Vec<u64>) -> Self {
        VectorClock(entries.into())
    }

    /// The entries, one per shard.
    pub fn entries(&self) -> &[u64] {
        &self.0
    }

    /// The entry of `shard`.
    pub fn get(&self, shard: usize) -> u64 {
        self.0[shard]
    }

    /// True when every entry of `self` is ≤ the matching entry of `other`.
    pub fn le(&self, other: &[u64]) -> bool {
        self.0.iter().zip(other).all(|(a, b)| a <= b)
    }
}

impl fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VC{:?}", &self.0[..])
    }
}

/// A mutable vector clock being assembled by a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockBuilder(Vec<u64>);

impl ClockBuilder {
    /// Starts from all zeros.
    pub fn new(shards: usize) -> Self {
        ClockBuilder(vec![0; shards])
    }

    /// Raises every entry to at least the matching entry of `vc`.
    pub fn merge(&mut self, vc: &VectorClock) {
        for (mine, theirs) in self.0.iter_mut().zip(vc.entries()) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// Raises the entry of `shard` to at least `value`.
    pub fn observe(&mut self, shard: usize, value: u64) {
        self.0[shard] = self.0[shard].max(value);
    }

    /// Freezes the clock.
    pub fn build(&self) -> VectorClock {
        VectorClock::from_vec(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_elementwise_max() {
        let mut b = ClockBuilder::new(3);
        b.merge(&VectorClock::from_vec(vec![5, 0, 2]));
        b.merge(&VectorClock::from_vec(vec![1, 7, 2]));
        b.observe(2, 9);
        assert_eq!(b.build().entries(), &[5, 7, 9]);
        assert!(VectorClock::from_vec(vec![1, 7, 2]).le(&[5, 7, 9]));
        assert!(!VectorClock::from_vec(vec![6, 0, 0]).le(&[5, 7, 9]));
    }
}
