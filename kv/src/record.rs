//! One key's record: an atomic lock/version word and a chain of versions.
//!
//! The word follows Silo's TID word: bit 63 is the lock bit, the other bits
//! count installs. Version 0 means "never written". OCC readers record the
//! version they saw; certification checks the word is unchanged and unlocked.
//!
//! The chain is newest-first, each version tagged with the writing
//! transaction's vector clock and epoch (Mako §4). Older versions stay until no
//! rollback can need them: a version whose VC is covered by the watermark is
//! *stable*, and everything below the newest stable version is unreachable by
//! any reader that starts later, so it is unlinked and freed through
//! crossbeam-epoch once in-flight readers are done.
//!
//! Concurrency: only the lock holder changes the chain or the word (install,
//! unlock). Readers never block writers; they re-read the word around the head
//! pointer load to get a consistent (version, value) pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};

use crate::clock::{Epoch, VectorClock};

const LOCK_BIT: u64 = 1 << 63;

/// How many times a reader spins on a locked word before reading through it.
const READ_SPINS: u32 = 64;

/// One version of a record.
pub struct Version {
    /// The row bytes, or `None` for a deletion (tombstone).
    pub value: Option<Arc<[u8]>>,
    /// The vector clock of the transaction that installed this version.
    pub vc: VectorClock,
    /// The epoch in which it was installed; versions of a failed epoch may be
    /// rolled back (Mako §5).
    pub epoch: Epoch,
    /// The next older version.
    next: Atomic<Version>,
}

/// What a read of a record saw.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadResult {
    /// The record's version (install count) at the time of the read; 0 when
    /// the key was never written. OCC validation compares against this.
    pub version: u64,
    /// The newest value, `None` when absent or deleted.
    pub value: Option<Arc<[u8]>>,
    /// The VC of the version read, `None` when the key was never written.
    pub vc: Option<VectorClock>,
    /// Whether the record was locked (being certified by some transaction)
    /// when read.
    pub locked: bool,
}

impl ReadResult {
    /// The result of reading a key that has no record.
    pub fn missing() -> Self {
        ReadResult {
            version: 0,
            value: None,
            vc: None,
            locked: false,
        }
    }
}

/// One version as reported by [`Record::chain`]: value, VC and epoch.
pub type VersionInfo = (Option<Arc<[u8]>>, VectorClock, Epoch);

/// A record: lock/version word plus version chain.
pub struct Record {
    word: AtomicU64,
    head: Atomic<Version>,
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}

impl Record {
    /// An empty, never-written record.
    pub fn new() -> Self {
        Record {
            word: AtomicU64::new(0),
            head: Atomic::null(),
        }
    }

    /// An empty record whose version counter starts at `version` (a record
    /// re-created after its predecessor was removed continues above the
    /// predecessor's versions, so no reader mistakes one for the other).
    pub fn with_version(version: u64) -> Self {
        Record {
            word: AtomicU64::new(version & !LOCK_BIT),
            head: Atomic::null(),
        }
    }

    /// True when the newest version is a deletion whose VC `stable`
    /// accepts: then no reader or rollback needs the record any more.
    pub fn is_stable_tombstone(&self, stable: impl Fn(&VectorClock) -> bool) -> bool {
        let guard = epoch::pin();
        let head = self.head.load(Ordering::Acquire, &guard);
        // SAFETY: `head` was loaded under `guard`; versions are only freed
        // through the guard's deferred destruction.
        match unsafe { head.as_ref() } {
            Some(v) => v.value.is_none() && stable(&v.vc),
            None => false,
        }
    }

    /// Reads the newest version consistently with the version counter.
    pub fn read(&self) -> ReadResult {
        let mut spins = 0;
        loop {
            let w1 = self.word.load(Ordering::Acquire);
            if w1 & LOCK_BIT != 0 && spins < READ_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let guard = epoch::pin();
            let head = self.head.load(Ordering::Acquire, &guard);
            // SAFETY: `head` was loaded under `guard`; versions are only freed
            // through `defer_destroy`, so it stays valid while `guard` lives.
            let (value, vc) = match unsafe { head.as_ref() } {
                Some(v) => (v.value.clone(), Some(v.vc.clone())),
                None => (None, None),
            };
            let w2 = self.word.load(Ordering::Acquire);
            if w1 == w2 {
                // A locked-through read may see the lock holder's new head with
                // the old version number; validation then fails, as it must.
                return ReadResult {
                    version: w1 & !LOCK_BIT,
                    value,
                    vc,
                    locked: w1 & LOCK_BIT != 0,
                };
            }
        }
    }

    /// The current version number, ignoring the lock bit.
    pub fn version(&self) -> u64 {
        self.word.load(Ordering::Acquire) & !LOCK_BIT
    }

    /// True while some transaction holds the lock.
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Acquire) & LOCK_BIT != 0
    }

    /// Tries to take the lock without waiting (Mako's no-wait Lock round).
    /// Returns the locked version, or `None` when another holder has it.
    pub fn try_lock(&self) -> Option<u64> {
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_BIT != 0 {
            return None;
        }
        self.word
            .compare_exchange(w, w | LOCK_BIT, Ordering::AcqRel, Ordering::Acquire)
            .ok()
    }

    /// Releases a lock without installing (abort).
    pub fn unlock(&self) {
        let w = self.word.load(Ordering::Acquire);
        debug_assert!(w & LOCK_BIT != 0, "unlock of an unlocked record");
        self.word.store(w & !LOCK_BIT, Ordering::Release);
    }

    /// True when the record still has `expected` version and is either
    /// unlocked or locked by the validating transaction itself (`held`).
    pub fn check(&self, expected: u64, held: bool) -> bool {
        let w = self.word.load(Ordering::Acquire);
        if w & LOCK_BIT != 0 && !held {
            return false;
        }
        w & !LOCK_BIT == expected
    }

    /// Installs a new version and releases the lock. The caller must hold the
    /// lock. Versions below the newest one for which `stable` holds are
    /// unlinked and freed once no reader can see them.
    pub fn install(
        &self,
        value: Option<Arc<[u8]>>,
        vc: VectorClock,
        epoch_no: Epoch,
        stable: impl Fn(&VectorClock) -> bool,
    ) {
        let w = self.word.load(Ordering::Acquire);
        assert!(w & LOCK_BIT != 0, "install without holding the lock");
        let guard = epoch::pin();
        let old = self.head.load(Ordering::Acquire, &guard);
        let new = Owned::new(Version {
            value,
            vc,
            epoch: epoch_no,
            next: Atomic::from(old),
        });
        let new = new.into_shared(&guard);
        self.head.store(new, Ordering::Release);
        self.prune(new, &stable, &guard);
        self.word.store((w & !LOCK_BIT) + 1, Ordering::Release);
    }

    /// Removes the version that the transaction with `vc` installed, if the
    /// chain has it, moves the version number on and releases the lock. The
    /// caller must hold the lock. Returns whether a version was removed.
    pub fn remove_version(&self, vc: &VectorClock) -> bool {
        let w = self.word.load(Ordering::Acquire);
        assert!(w & LOCK_BIT != 0, "rollback without holding the lock");
        let guard = epoch::pin();
        let mut link = &self.head;
        let mut removed = false;
        loop {
            let node = link.load(Ordering::Acquire, &guard);
            // SAFETY: nodes reachable from head are alive under `guard`.
            let Some(v) = (unsafe { node.as_ref() }) else {
                break;
            };
            if v.vc == *vc {
                let next = v.next.load(Ordering::Acquire, &guard);
                link.store(next, Ordering::Release);
                // SAFETY: unlinked; readers that still see it hold guards
                // that delay the free.
                unsafe { guard.defer_destroy(node) };
                removed = true;
                break;
            }
            link = &v.next;
        }
        let next = if removed {
            (w & !LOCK_BIT) + 1
        } else {
            w & !LOCK_BIT
        };
        self.word.store(next, Ordering::Release);
        removed
    }

    /// Unlinks every version older than the newest stable one.
    fn prune(
        &self,
        head: Shared<'_, Version>,
        stable: &dyn Fn(&VectorClock) -> bool,
        guard: &Guard,
    ) {
        let mut node = head;
        // SAFETY: nodes reachable from head are alive under `guard`.
        while let Some(v) = unsafe { node.as_ref() } {
            if stable(&v.vc) {
                let mut tail = v.next.swap(Shared::null(), Ordering::AcqRel, guard);
                while !tail.is_null() {
                    // SAFETY: `tail` is unlinked; no new reader can reach it,
                    // and current readers hold guards that delay the free.
                    let next = unsafe { tail.deref() }.next.load(Ordering::Acquire, guard);
                    unsafe { guard.defer_destroy(tail) };
                    tail = next;
                }
                return;
            }
            node = v.next.load(Ordering::Acquire, guard);
        }
    }

    /// The VCs and epochs of the chain, newest first (for tests and tools).
    pub fn chain(&self) -> Vec<VersionInfo> {
        let guard = epoch::pin();
        let mut out = Vec::new();
        let mut node = self.head.load(Ordering::Acquire, &guard);
        // SAFETY: as in `read`.
        while let Some(v) = unsafe { node.as_ref() } {
            out.push((v.value.clone(), v.vc.clone(), v.epoch));
            node = v.next.load(Ordering::Acquire, &guard);
        }
        out
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // SAFETY: the record is being dropped, so no reader can reach it (the
        // index frees records through crossbeam-epoch as well).
        unsafe {
            let guard = epoch::unprotected();
            let mut node = self.head.load(Ordering::Relaxed, guard);
            while !node.is_null() {
                let next = node.deref().next.load(Ordering::Relaxed, guard);
                drop(node.into_owned());
                node = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(n: u64) -> VectorClock {
        VectorClock::from_vec(vec![n])
    }

    fn val(s: &str) -> Option<Arc<[u8]>> {
        Some(Arc::from(s.as_bytes()))
    }

    #[test]
    fn lock_install_read() {
        let r = Record::new();
        assert_eq!(r.read(), ReadResult::missing());
        assert_eq!(r.try_lock(), Some(0));
        assert_eq!(r.try_lock(), None, "no-wait: a held lock refuses");
        assert!(!r.check(0, false), "locked by someone else");
        assert!(r.check(0, true), "locked by me");
        r.install(val("a"), vc(1), Epoch(1), |_| false);
        let read = r.read();
        assert_eq!(read.version, 1);
        assert_eq!(read.value, val("a"));
        assert_eq!(read.vc, Some(vc(1)));
        assert!(r.check(1, false));
        assert!(!r.check(0, false));
    }

    #[test]
    fn unlock_keeps_version() {
        let r = Record::new();
        r.try_lock().unwrap();
        r.unlock();
        assert_eq!(r.version(), 0);
        assert!(!r.is_locked());
    }

    #[test]
    fn chain_is_pruned_below_newest_stable_version() {
        let r = Record::new();
        for i in 1..=4 {
            r.try_lock().unwrap();
            // Versions 1 and 2 become stable; 3 and 4 are not yet.
            r.install(val(&i.to_string()), vc(i), Epoch(1), |c| c.get(0) <= 2);
        }
        let clocks: Vec<u64> = r.chain().iter().map(|(_, c, _)| c.get(0)).collect();
        assert_eq!(
            clocks,
            vec![4, 3, 2],
            "versions below the newest stable one are gone"
        );
        r.try_lock().unwrap();
        r.install(None, vc(5), Epoch(1), |_| true);
        assert_eq!(r.chain().len(), 1);
        assert_eq!(r.read().value, None, "a tombstone reads as absent");
    }

    #[test]
    fn a_version_that_will_never_be_durable_is_removed_in_any_order() {
        let r = Record::new();
        for i in 1..=4 {
            r.try_lock().unwrap();
            // Only version 1 is stable; 2, 3 and 4 are waiting for the log.
            r.install(val(&i.to_string()), vc(i), Epoch(1), |c| c.get(0) <= 1);
        }
        assert_eq!(r.version(), 4);
        // The log failed: roll 3 back before 4 (rollback order is free).
        r.try_lock().unwrap();
        assert!(r.remove_version(&vc(3)));
        assert_eq!(r.read().value, val("4"));
        r.try_lock().unwrap();
        assert!(r.remove_version(&vc(4)));
        r.try_lock().unwrap();
        assert!(r.remove_version(&vc(2)));
        let read = r.read();
        assert_eq!(read.value, val("1"), "the durable version is current again");
        assert_eq!(read.version, 7, "every removal moves the version on");
        assert!(!read.locked);
        r.try_lock().unwrap();
        assert!(!r.remove_version(&vc(9)), "not in the chain");
        assert_eq!(r.version(), 7);
        assert!(!r.is_locked());
    }

    #[test]
    fn concurrent_readers_see_consistent_versions() {
        let r = Arc::new(Record::new());
        let writer = {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 1..=5000u64 {
                    while r.try_lock().is_none() {}
                    r.install(
                        Some(Arc::from(i.to_be_bytes().as_slice())),
                        vc(i),
                        Epoch(1),
                        |_| true,
                    );
                }
            })
        };
        let mut last = 0;
        while last < 5000 {
            let read = r.read();
            if let Some(v) = read.value {
                let n = u64::from_be_bytes(v[..].try_into().unwrap());
                assert!(n >= last, "versions never go backwards");
                // Value i is installed as version i; a read through a held
                // lock may see the next value with the old version number.
                assert!(
                    n == read.version || n == read.version + 1,
                    "{n} vs {}",
                    read.version
                );
                last = n;
            }
        }
        writer.join().unwrap();
    }
}
