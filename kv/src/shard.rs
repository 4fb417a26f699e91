//! One shard's store: an ordered concurrent index of records plus the shard
//! clock.
//!
//! The index plays the role Masstree plays in Mako: point get, insert and
//! range scan in key order from many threads without a global lock. Records
//! live in a lock-free skip list (`crossbeam-skiplist`, nodes reclaimed
//! with crossbeam-epoch) for scans in key order, and the same records are
//! reachable by key through a sharded hash map (`dashmap`) for the point
//! operations (read, lock, validate, install), which a skip-list search
//! made the most expensive part of a transaction. The hash map is the
//! authority on which record a key has: records are created and removed
//! under its per-key entry lock, and the skip list follows. Records
//! themselves are versioned as described in [`crate::record`].
//!
//! The methods here are the OCC primitives the transaction layer composes
//! into Mako's certification rounds (Lock, GetClock, Validate, Install). They
//! do not know about transactions: which locks a transaction holds is the
//! caller's business.
//!
//! Records are created on first lock (an insert); a delete installs a
//! tombstone. Tombstones are collected in batches once their deletion is
//! stable: the collector locks the record (for good), raises the version
//! floor of the key's stripe (one of [`FLOOR_STRIPES`], by key hash) above
//! its version and unlinks it. Whoever still holds the
//! old entry finds it locked and fails validation; a record created later
//! for the same key starts at the floor, so version numbers never repeat
//! for a key and a reader that saw the tombstone cannot be fooled. A key
//! without a record reads as version `floor` too: a reader that saw it
//! missing still validates against a record created since but never
//! written, and fails once a collection has run in between (it cannot tell
//! whether that collection removed this key; stripes keep such false
//! conflicts rare).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_skiplist::SkipMap;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::clock::{Epoch, VectorClock};
use crate::error::{Error, Result};
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
    /// Records by key, in key order (for scans).
    index: SkipMap<Box<[u8]>, Arc<Record>>,
    /// The same records by key (for point operations).
    by_key: DashMap<Box<[u8]>, Arc<Record>, foldhash::fast::RandomState>,
    /// The shard clock handed out by GetClock (Mako §4.2).
    clock: AtomicU64,
    /// The watermark test used to prune version chains.
    stable: Box<StableFn>,
    /// Per stripe of keys, the first version of newly created records:
    /// above every version of any record of the stripe removed so far.
    floors: Box<[AtomicU64]>,
    /// Deleted keys not collected yet.
    tombstones: Mutex<Tombstones>,
    /// The durable watermark, when commits wait for a log.
    durability: Option<Durability>,
}

/// Deleted keys waiting for collection.
#[derive(Default)]
struct Tombstones {
    /// The keys.
    keys: Vec<Box<[u8]>>,
    /// How many of them the last collection had to keep (not stable yet):
    /// the next one waits until as many new ones have come, so that keys
    /// that stay unstable for a while (a long delete on a logged shard) are
    /// not re-examined after every delete, keeping collection linear.
    kept: usize,
}

/// Which of a shard's clock values are durable (see [`Shard::watermark`]).
struct Durability {
    /// Clock values handed out to committing transactions whose log entries
    /// (or abandon markers) are not durable yet.
    inflight: Mutex<BTreeSet<u64>>,
    /// The node's watermarks; this shard's says every clock value up to it
    /// is durable.
    marks: Arc<Watermarks>,
    /// Set (under `inflight`) when the log stops: the watermark never moves
    /// again.
    frozen: AtomicBool,
    /// Why the log stopped, and who waits for which clock value.
    waits: Mutex<Waits>,
    /// Signalled (with `inflight`) when a clock value settles while
    /// `settle_waiters` is not 0: for [`Shard::wait_settled`].
    settled: Condvar,
    settle_waiters: AtomicUsize,
}

/// The commits waiting for the watermark.
#[derive(Default)]
struct Waits {
    /// Why the log stopped, once it has.
    failed: Option<Error>,
    /// Waiting commits by the clock value they wait for: a rise of the
    /// watermark wakes only those it covers (waking every waiter on every
    /// log write cost a large share of the CPU with many committers).
    by_clock: BTreeMap<u64, Vec<Waiter>>,
}

/// A commit waiting for the watermark.
enum Waiter {
    /// A thread parked in [`Shard::wait_watermark`].
    Thread(std::thread::Thread),
    /// A task polling [`Shard::poll_watermark`].
    Task(std::task::Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }
}

/// The durable watermark of every shard of a node: the vector watermark
/// (VW) of Mako §4.3. A version whose vector clock is covered (VC ≤ VW) is
/// *stable*: its transaction and everything it read from are durable on
/// every shard, so it is never rolled back, and recovery keeps exactly
/// the stable transactions.
pub struct Watermarks {
    marks: Box<[AtomicU64]>,
}

impl Watermarks {
    /// All zero, for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Watermarks {
            marks: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Shard `s`'s watermark.
    pub fn get(&self, s: ShardId) -> u64 {
        self.marks[s].load(Ordering::Acquire)
    }

    /// Every shard's watermark, read one after the other.
    pub fn snapshot(&self) -> Vec<u64> {
        self.marks
            .iter()
            .map(|m| m.load(Ordering::Acquire))
            .collect()
    }

    /// True when `vc` ≤ the watermarks.
    pub fn covers(&self, vc: &VectorClock) -> bool {
        vc.entries().len() <= self.marks.len()
            && vc
                .entries()
                .iter()
                .zip(self.marks.iter())
                .all(|(&c, m)| c <= m.load(Ordering::Acquire))
    }
}

/// Locks a mutex, ignoring poisoning (the data behind these stays valid).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deleted keys that trigger a tombstone collection.
const TOMBSTONE_BATCH: usize = 256;

/// Stripes of version floors.
pub const FLOOR_STRIPES: usize = 1024;

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
            by_key: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            clock: AtomicU64::new(0),
            stable,
            floors: (0..FLOOR_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            tombstones: Mutex::new(Tombstones::default()),
            durability: None,
        }
    }

    /// An empty shard whose commits are acknowledged only once their log
    /// entries are durable: clock values are tracked from [`next_clock`]
    /// until [`clock_durable`] or [`abandon_clock`].
    ///
    /// [`next_clock`]: Shard::next_clock
    /// [`clock_durable`]: Shard::clock_durable
    /// [`abandon_clock`]: Shard::abandon_clock
    ///
    /// `marks` holds the watermarks of all of the node's shards: a version
    /// older than the newest one they cover is pruned, and the versions above
    /// it stay until then, so that a commit which can never become durable
    /// can be rolled back ([`Shard::rollback`]).
    pub fn logged(id: ShardId, marks: Arc<Watermarks>) -> Self {
        let stable = {
            let marks = marks.clone();
            Box::new(move |vc: &VectorClock| marks.covers(vc))
        };
        Shard {
            durability: Some(Durability {
                inflight: Mutex::new(BTreeSet::new()),
                marks,
                frozen: AtomicBool::new(false),
                waits: Mutex::new(Waits::default()),
                settled: Condvar::new(),
                settle_waiters: AtomicUsize::new(0),
            }),
            ..Self::with_stability(id, stable)
        }
    }

    /// The version floor of `key`'s stripe.
    fn floor(&self, key: &[u8]) -> &AtomicU64 {
        // FNV-1a: cheap, and any spread will do.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.floors[(h % FLOOR_STRIPES as u64) as usize]
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Reads the newest version of `key`.
    pub fn read(&self, key: &[u8]) -> ReadResult {
        match self.by_key.get(key) {
            Some(record) => record.read(),
            // A missing key reads as version `floor`: the version a record
            // created for it now would start at. A later removal raises
            // the floor, so validation notices it.
            None => ReadResult {
                version: self.floor(key).load(Ordering::SeqCst),
                ..ReadResult::missing()
            },
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
        if let Some(record) = self.by_key.get(key) {
            return record.try_lock();
        }
        let record = match self.by_key.entry(key.into()) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                let record = Arc::new(Record::with_version(self.floor(key).load(Ordering::SeqCst)));
                // Under the entry lock: no one else creates or removes
                // this key's record meanwhile.
                self.index.insert(key.into(), record.clone());
                e.insert(record.clone());
                record
            }
        };
        record.try_lock()
    }

    /// Releases a lock taken with [`Shard::try_lock`] without installing.
    pub fn unlock(&self, key: &[u8]) {
        if let Some(record) = self.by_key.get(key) {
            record.unlock();
        }
    }

    /// OCC validation of one read: `key` still has version `expected` and is
    /// unlocked, or locked by the validating transaction itself (`held`).
    pub fn check(&self, key: &[u8], expected: u64, held: bool) -> bool {
        match self.by_key.get(key) {
            Some(record) => record.check(expected, held),
            None => expected == self.floor(key).load(Ordering::SeqCst),
        }
    }

    /// True when `key` is currently locked.
    pub fn is_locked(&self, key: &[u8]) -> bool {
        self.by_key.get(key).is_some_and(|r| r.is_locked())
    }

    /// Installs a version of a key this caller has locked, and unlocks it.
    pub fn install(&self, key: &[u8], value: Option<Arc<[u8]>>, vc: VectorClock, epoch: Epoch) {
        let record = self
            .by_key
            .get(key)
            .expect("install of a key that was never locked")
            .clone();
        let deleted = value.is_none();
        record.install(value, vc, epoch, &*self.stable);
        if deleted {
            let due = {
                let mut t = lock(&self.tombstones);
                t.keys.push(key.into());
                t.keys.len() >= TOMBSTONE_BATCH.max(2 * t.kept)
            };
            if due {
                self.collect_tombstones();
            }
        }
    }

    /// Unlinks the records of deleted keys whose deletion is stable; the
    /// others wait for a later collection. Returns how many were removed.
    pub fn collect_tombstones(&self) -> usize {
        let keys = std::mem::take(&mut lock(&self.tombstones).keys);
        let mut later = Vec::new();
        let mut removed = 0;
        for key in keys {
            let Entry::Occupied(entry) = self.by_key.entry(key.clone()) else {
                continue;
            };
            let record = entry.get().clone();
            let Some(version) = record.try_lock() else {
                later.push(key); // someone is committing to it
                continue;
            };
            if !record.is_stable_tombstone(&*self.stable) {
                record.unlock();
                if record.read().value.is_none() {
                    later.push(key); // deleted, not yet stable
                }
                continue;
            }
            // The floor rises before the record leaves the index, so a
            // record created after that starts above this one's versions.
            self.floor(&key).fetch_max(version + 1, Ordering::SeqCst);
            self.index.remove(&*key);
            entry.remove();
            removed += 1;
        }
        let mut t = lock(&self.tombstones);
        t.kept = later.len();
        t.keys.extend(later);
        removed
    }

    /// GetClock: advances the shard clock and returns the new value. On a
    /// logged shard the value stays in flight (holding the watermark below
    /// it) until its log entry is durable or the commit is abandoned.
    pub fn next_clock(&self) -> u64 {
        match &self.durability {
            None => self.clock.fetch_add(1, Ordering::AcqRel) + 1,
            Some(d) => {
                let mut inflight = lock(&d.inflight);
                let c = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
                inflight.insert(c);
                c
            }
        }
    }

    /// The log entry of the commit that took clock value `c` is durable.
    /// Call [`wake_waiters`](Shard::wake_waiters) after a batch of these.
    pub fn clock_durable(&self, c: u64) {
        self.settle(c);
    }

    /// The commit that took clock value `c` failed before installing
    /// anything. On a logged shard, call this only once a marker saying so
    /// is durable (the participant logs one): recovery must find every
    /// clock value below the watermark accounted for.
    pub fn abandon_clock(&self, c: u64) {
        self.settle(c);
    }

    fn settle(&self, c: u64) {
        let Some(d) = &self.durability else {
            return;
        };
        let mut inflight = lock(&d.inflight);
        inflight.remove(&c);
        if d.settle_waiters.load(Ordering::Acquire) > 0 {
            d.settled.notify_all();
        }
        if d.frozen.load(Ordering::Acquire) {
            return;
        }
        let w = match inflight.first() {
            Some(&lowest) => lowest - 1,
            None => self.clock.load(Ordering::Acquire),
        };
        let mark = &d.marks.marks[self.id];
        if w > mark.load(Ordering::Acquire) {
            mark.store(w, Ordering::Release);
        }
    }

    /// Wakes the commits the watermark now covers, after
    /// [`clock_durable`](Shard::clock_durable) raised it (once per log
    /// write, not per entry).
    pub fn wake_waiters(&self) {
        if let Some(d) = &self.durability {
            // The watermark is read under the waiters' mutex: a waiter
            // that registered before it checked the old watermark, so it
            // cannot miss this.
            let ready = {
                let mut waits = lock(&d.waits);
                let mark = d.marks.get(self.id);
                let rest = waits.by_clock.split_off(&(mark + 1));
                std::mem::replace(&mut waits.by_clock, rest)
            };
            for w in ready.into_values().flatten() {
                w.wake();
            }
        }
    }

    /// Undoes the version of `key` that the transaction with `vc`
    /// installed, if it is there: for commits that can never become
    /// durable once the log has stopped. The version before it becomes
    /// current again, and the key's version number moves on so that no
    /// transaction that read the undone version validates. Waits for a
    /// committer still holding the key's lock.
    pub fn rollback(&self, key: &[u8], vc: &VectorClock) -> bool {
        let Some(record) = self.by_key.get(key).map(|r| r.clone()) else {
            return false;
        };
        while record.try_lock().is_none() {
            // A collected record stays locked for good: it has left the
            // index, and so has anything to undo in it.
            let current = self.by_key.get(key).map(|r| r.clone());
            if !current.is_some_and(|c| Arc::ptr_eq(&c, &record)) {
                return false;
            }
            std::thread::yield_now();
        }
        record.remove_version(vc)
    }

    /// The durable watermark: every commit with a clock value up to it
    /// (on this shard) is durable. Without a log, the shard clock.
    pub fn watermark(&self) -> u64 {
        match &self.durability {
            None => self.clock(),
            Some(d) => d.marks.get(self.id),
        }
    }

    /// Blocks until the watermark reaches `c`, or fails once the log has
    /// stopped with the watermark still below it.
    pub fn wait_watermark(&self, c: u64) -> Result<()> {
        let Some(d) = &self.durability else {
            return Ok(());
        };
        if d.marks.get(self.id) >= c {
            return Ok(());
        }
        loop {
            {
                let mut waits = lock(&d.waits);
                if d.marks.get(self.id) >= c {
                    return Ok(());
                }
                if let Some(e) = waits.failed.as_ref() {
                    return Err(e.clone());
                }
                waits
                    .by_clock
                    .entry(c)
                    .or_default()
                    .push(Waiter::Thread(std::thread::current()));
            }
            // Woken by `wake_waiters` (or spuriously); the timeout only
            // guards against a missed wake-up.
            std::thread::park_timeout(Duration::from_millis(50));
            if d.marks.get(self.id) >= c {
                return Ok(());
            }
        }
    }

    /// Blocks until the entry (or marker) of clock value `c`, handed out
    /// by [`Shard::next_clock`], is durable itself, whatever the values
    /// below it (the watermark waits for those too); fails once the log
    /// has stopped. Without a log, returns at once. For a commit protocol
    /// that makes each participant's records durable before it answers
    /// (two-phase commit over Paxos, the baseline Mako is measured
    /// against).
    pub fn wait_settled(&self, c: u64) -> Result<()> {
        let Some(d) = &self.durability else {
            return Ok(());
        };
        d.settle_waiters.fetch_add(1, Ordering::AcqRel);
        let result = loop {
            {
                let inflight = lock(&d.inflight);
                if !inflight.contains(&c) {
                    break Ok(());
                }
                // The timeout only bounds how late a stopped log is noticed.
                let (inflight, _) = d
                    .settled
                    .wait_timeout(inflight, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner());
                if !inflight.contains(&c) {
                    break Ok(());
                }
            }
            if let Some(e) = lock(&d.waits).failed.as_ref() {
                break Err(e.clone());
            }
        };
        d.settle_waiters.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// [`Shard::wait_watermark`] for a task: ready once the watermark is
    /// at `c` or later (or the log has stopped); otherwise the task is
    /// woken when it may be (poll again then: a wake-up may also be
    /// spurious).
    pub fn poll_watermark(
        &self,
        c: u64,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        use std::task::Poll;
        let Some(d) = &self.durability else {
            return Poll::Ready(Ok(()));
        };
        if d.marks.get(self.id) >= c {
            return Poll::Ready(Ok(()));
        }
        let mut waits = lock(&d.waits);
        // Checked under the waiters' lock, as in `wait_watermark`.
        if d.marks.get(self.id) >= c {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = waits.failed.as_ref() {
            return Poll::Ready(Err(e.clone()));
        }
        // Polled again (a spurious wake-up, a caller's timeout): its
        // waker is there already.
        let waiting = waits.by_clock.entry(c).or_default();
        if !waiting
            .iter()
            .any(|w| matches!(w, Waiter::Task(t) if t.will_wake(cx.waker())))
        {
            waiting.push(Waiter::Task(cx.waker().clone()));
        }
        Poll::Pending
    }

    /// The log stopped with `error`: the watermark stops where it is (once
    /// this returns it never moves again), and commits still waiting fail
    /// with the error.
    pub fn fail_durability(&self, error: Error) {
        self.freeze_durability();
        self.fail_waiters(error);
    }

    /// The log stopped: the watermark stops where it is (once this
    /// returns it never moves again). Waiting commits go on waiting until
    /// [`Shard::fail_waiters`], so that the log can first roll back the
    /// writes that will never be durable: a committer told of its failure
    /// no longer finds its writes visible.
    pub fn freeze_durability(&self) {
        if let Some(d) = &self.durability {
            let _inflight = lock(&d.inflight);
            d.frozen.store(true, Ordering::Release);
        }
    }

    /// Commits still waiting for the (frozen) watermark, and those that
    /// come to wait for it, fail with `error` (the first error given).
    pub fn fail_waiters(&self, error: Error) {
        if let Some(d) = &self.durability {
            let all = {
                let mut waits = lock(&d.waits);
                if waits.failed.is_none() {
                    waits.failed = Some(error);
                }
                std::mem::take(&mut waits.by_clock)
            };
            for w in all.into_values().flatten() {
                w.wake();
            }
        }
    }

    /// The current shard clock.
    pub fn clock(&self) -> u64 {
        self.clock.load(Ordering::Acquire)
    }

    /// Raises the shard clock to at least `value` (used by recovery, when
    /// nothing is in flight: the watermark follows).
    pub fn advance_clock(&self, value: u64) {
        self.clock.fetch_max(value, Ordering::AcqRel);
        if let Some(d) = &self.durability
            && lock(&d.inflight).is_empty()
        {
            d.marks.marks[self.id].fetch_max(value, Ordering::AcqRel);
        }
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
            Epoch(1),
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

    fn delete(shard: &Shard, key: &[u8], clock: u64) {
        shard.try_lock(key).expect("lock");
        shard.install(key, None, VectorClock::from_vec(vec![clock]), Epoch(1));
    }

    #[test]
    fn stable_tombstones_are_collected_and_versions_never_repeat() {
        let s = Shard::new(0);
        put(&s, b"k", "v1", 1);
        delete(&s, b"k", 2);
        let seen = s.read(b"k");
        assert_eq!((seen.version, seen.value.is_none()), (2, true));
        // A holder of the old entry that has not locked it yet.
        let held = s.index.get(&b"k"[..]).expect("entry");
        assert_eq!(s.collect_tombstones(), 1);
        assert_eq!(s.record_count(), 0);
        assert!(
            held.value().try_lock().is_none(),
            "the removed record stays locked"
        );
        assert!(
            !s.check(b"k", seen.version, false),
            "a reader of the tombstone fails"
        );
        // A missing key reads as the floor, and that read stays valid until
        // the key is written or another collection runs.
        let missing = s.read(b"k");
        assert!(missing.version > seen.version);
        assert!(s.check(b"k", missing.version, false));
        s.try_lock(b"k").expect("lock");
        assert!(s.check(b"k", missing.version, true), "created, not written");
        s.unlock(b"k");
        // Re-created: versions continue above the removed record's.
        put(&s, b"k", "v2", 3);
        let again = s.read(b"k");
        assert!(again.version > seen.version);
        assert_eq!(again.value.as_deref(), Some(&b"v2"[..]));
    }

    #[test]
    fn unstable_or_rewritten_tombstones_stay() {
        let stable_below = Arc::new(AtomicU64::new(0));
        let limit = stable_below.clone();
        let s = Shard::with_stability(
            0,
            Box::new(move |vc: &VectorClock| vc.get(0) <= limit.load(Ordering::SeqCst)),
        );
        put(&s, b"a", "x", 1);
        delete(&s, b"a", 2);
        put(&s, b"b", "x", 3);
        delete(&s, b"b", 4);
        put(&s, b"b", "back", 5);
        assert_eq!(s.collect_tombstones(), 0, "deletion of a is not stable yet");
        stable_below.store(10, Ordering::SeqCst);
        assert_eq!(s.collect_tombstones(), 1, "a goes; b was written again");
        assert_eq!(s.read(b"b").value.as_deref(), Some(&b"back"[..]));
        assert_eq!(s.collect_tombstones(), 0);
    }

    #[test]
    fn deletes_trigger_collection_in_batches() {
        let s = Shard::new(0);
        for i in 0..(TOMBSTONE_BATCH as u32 * 2) {
            let k = i.to_be_bytes();
            put(&s, &k, "v", 1);
            delete(&s, &k, 2);
        }
        assert_eq!(s.record_count(), 0);
    }

    #[test]
    fn tombstones_that_stay_unstable_are_not_rescanned_after_every_delete() {
        use std::sync::atomic::AtomicUsize;
        let checks = Arc::new(AtomicUsize::new(0));
        let stable_upto = Arc::new(AtomicU64::new(1));
        let s = {
            let (checks, upto) = (checks.clone(), stable_upto.clone());
            Shard::with_stability(
                0,
                Box::new(move |vc| {
                    checks.fetch_add(1, Ordering::Relaxed);
                    vc.get(0) <= upto.load(Ordering::Relaxed)
                }),
            )
        };
        const N: u32 = 20_000;
        for i in 0..N {
            put(&s, &i.to_be_bytes(), "v", 1);
        }
        checks.store(0, Ordering::Relaxed);
        // A long delete whose tombstones are not stable until it is done.
        for i in 0..N {
            delete(&s, &i.to_be_bytes(), 2);
        }
        let work = checks.load(Ordering::Relaxed);
        assert!(
            work < 10 * N as usize,
            "{work} stability checks for {N} deletes"
        );
        stable_upto.store(2, Ordering::Relaxed);
        s.collect_tombstones();
        assert_eq!(s.record_count(), 0);
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
