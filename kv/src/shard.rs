//! One shard's store: an ordered concurrent index of records plus the shard
//! clock.
//!
//! The index plays the role Masstree plays in Mako: point get, insert and
//! range scan in key order from many threads without a global lock. It is a
//! lock-free skip list (`crossbeam-skiplist`) whose nodes are reclaimed with
//! crossbeam-epoch; records themselves are versioned as described in
//! [`crate::record`].
//!
//! The methods here are the OCC primitives the transaction layer composes
//! into Mako's certification rounds (Lock, GetClock, Validate, Install). They
//! do not know about transactions: which locks a transaction holds is the
//! caller's business.
//!
//! Records are created on first lock (an insert) and never removed from the
//! index yet: a delete installs a tombstone. Removing tombstones below the
//! watermark is future version-GC work.

use std::ops::{Bound, ControlFlow};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_skiplist::SkipMap;

use crate::clock::VectorClock;
use crate::record::{ReadResult, Record, VersionInfo};

/// Identifies a shard.
pub type ShardId = usize;

/// Decides whether a version's VC is covered by the shard's watermark, so
/// that older versions below it can be freed. See [`crate::record`].
pub type StableFn = dyn Fn(&VectorClock) -> bool + Send + Sync;

/// One shard's in-memory store.
pub struct Shard {
    /// This shard's position in vector clocks.
    id: ShardId,
    /// Records by key, in key order.
    index: SkipMap<Box<[u8]>, Record>,
    /// The shard clock handed out by GetClock (Mako §4.2).
    clock: AtomicU64,
    /// The watermark test used to prune version chains.
    stable: Box<StableFn>,
}

impl Shard {
    /// An empty shard whose versions are pruned as soon as they are replaced
    /// (every installed version is stable: the single-node default, where a
    /// commit is durable once installed).
    pub fn new(id: ShardId) -> Self {
        Self::with_stability(id, Box::new(|_| true))
    }

    /// An empty shard with an explicit watermark test.
    pub fn with_stability(id: ShardId, stable: Box<StableFn>) -> Self {
        Shard {
            id,
            index: SkipMap::new(),
            clock: AtomicU64::new(0),
            stable,
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Reads the newest version of `key`.
    pub fn read(&self, key: &[u8]) -> ReadResult {
        match self.index.get(key) {
            Some(entry) => entry.value().read(),
            None => ReadResult::missing(),
        }
    }

    /// Visits every record in `[start, end)`-style bounds in key order,
    /// including absent and deleted ones (their `value` is `None`), until `f`
    /// breaks.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], ReadResult) -> ControlFlow<()>,
    ) {
        for entry in self.index.range::<[u8], _>((start, end)) {
            if f(entry.key(), entry.value().read()).is_break() {
                break;
            }
        }
    }

    /// Like [`Shard::scan`], in descending key order.
    pub fn scan_rev(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], ReadResult) -> ControlFlow<()>,
    ) {
        for entry in self.index.range::<[u8], _>((start, end)).rev() {
            if f(entry.key(), entry.value().read()).is_break() {
                break;
            }
        }
    }

    /// Tries to lock `key`, creating its record if missing. Returns the
    /// locked version, or `None` when someone else holds the lock.
    pub fn try_lock(&self, key: &[u8]) -> Option<u64> {
        let entry = match self.index.get(key) {
            Some(e) => e,
            None => self.index.get_or_insert_with(key.into(), Record::new),
        };
        entry.value().try_lock()
    }

    /// Releases a lock taken with [`Shard::try_lock`] without installing.
    pub fn unlock(&self, key: &[u8]) {
        if let Some(entry) = self.index.get(key) {
            entry.value().unlock();
        }
    }

    /// OCC validation of one read: `key` still has version `expected` and is
    /// unlocked, or locked by the validating transaction itself (`held`).
    pub fn check(&self, key: &[u8], expected: u64, held: bool) -> bool {
        match self.index.get(key) {
            Some(entry) => entry.value().check(expected, held),
            None => expected == 0,
        }
    }

    /// True when `key` is currently locked.
    pub fn is_locked(&self, key: &[u8]) -> bool {
        self.index.get(key).is_some_and(|e| e.value().is_locked())
    }

    /// Installs a version of a key this caller has locked, and unlocks it.
    pub fn install(&self, key: &[u8], value: Option<Arc<[u8]>>, vc: VectorClock, epoch: u64) {
        let entry = self
            .index
            .get(key)
            .expect("install of a key that was never locked");
        entry.value().install(value, vc, epoch, &*self.stable);
    }

    /// GetClock: advances the shard clock and returns the new value.
    pub fn next_clock(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current shard clock.
    pub fn clock(&self) -> u64 {
        self.clock.load(Ordering::Acquire)
    }

    /// Raises the shard clock to at least `value` (used by recovery).
    pub fn advance_clock(&self, value: u64) {
        self.clock.fetch_max(value, Ordering::AcqRel);
    }

    /// The number of records (including absent and deleted ones).
    pub fn record_count(&self) -> usize {
        self.index.len()
    }

    /// The version chain of `key`, newest first (for tests and tools).
    pub fn chain(&self, key: &[u8]) -> Vec<VersionInfo> {
        self.index
            .get(key)
            .map(|e| e.value().chain())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(shard: &Shard, key: &[u8], value: &str, clock: u64) {
        shard.try_lock(key).expect("lock");
        shard.install(
            key,
            Some(Arc::from(value.as_bytes())),
            VectorClock::from_vec(vec![clock]),
            1,
        );
    }

    fn keys_in(shard: &Shard, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        shard.scan(start, end, |k, r| {
            if r.value.is_some() {
                out.push(k.to_vec());
            }
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn point_and_range() {
        let s = Shard::new(0);
        for k in [b"b", b"a", b"d", b"c"] {
            put(&s, k, "v", 1);
        }
        assert_eq!(s.read(b"a").value.as_deref(), Some(&b"v"[..]));
        assert_eq!(s.read(b"zz"), ReadResult::missing());
        assert_eq!(
            keys_in(&s, Bound::Included(b"b"), Bound::Excluded(b"d")),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(keys_in(&s, Bound::Unbounded, Bound::Unbounded).len(), 4);
    }

    #[test]
    fn locked_missing_key_validates_as_missing_until_installed() {
        let s = Shard::new(0);
        assert!(s.check(b"k", 0, false));
        assert_eq!(s.try_lock(b"k"), Some(0));
        assert!(!s.check(b"k", 0, false), "a concurrent insert in progress");
        s.unlock(b"k");
        assert!(s.check(b"k", 0, false), "aborted insert leaves it missing");
    }

    #[test]
    fn clock_is_fetch_and_increment() {
        let s = Shard::new(0);
        assert_eq!(s.next_clock(), 1);
        assert_eq!(s.next_clock(), 2);
        s.advance_clock(10);
        assert_eq!(s.next_clock(), 11);
    }

    #[test]
    fn concurrent_inserts_and_scans() {
        let s = Arc::new(Shard::new(0));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let key = (i * 4 + t).to_be_bytes();
                        put(&s, &key, "x", 1);
                        if i % 100 == 0 {
                            let seen = keys_in(&s, Bound::Unbounded, Bound::Unbounded);
                            assert!(seen.windows(2).all(|w| w[0] < w[1]), "scan is ordered");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(keys_in(&s, Bound::Unbounded, Bound::Unbounded).len(), 8000);
    }
}
