//! The participant side of certification across nodes (Mako §4.2): what
//! a replica group's leader answers for the shards it holds, keeping
//! state per transaction.
//!
//! In one process a coordinator calls each shard's [`ShardClient`]
//! directly and cannot vanish between Lock and Install without the
//! shards vanishing too. Across nodes it can, and messages can be lost,
//! repeated or late; so a [`Participants`] remembers, per transaction,
//! what it locked on which shard, the clock values it handed out, the
//! coordinator's node, the epoch and a deadline, and answers [`Call`]s
//! by transaction id:
//!
//! - **Lock** (no wait) takes every key on every shard named, or none.
//!   The transaction's state is created with a deadline. A Lock repeated
//!   while the state exists changes nothing; a Lock for a transaction
//!   already finished here (a late one, overtaken by its Release) is
//!   refused.
//! - **GetClock** takes one clock value per shard, once: a repeated call
//!   answers the same values (a second value would be one nobody installs
//!   or gives back, and the shard's watermark would wait for it forever).
//! - **Validate** checks the reads. A participant that locked for the
//!   transaction marks it validated *before* checking, and from then on
//!   only the coordinator's decision (Install or Release; later, the epoch
//!   change) ends it: the deadline no longer applies, because the
//!   coordinator may already have decided to commit. A Validate that fails
//!   releases the locks at once (the transaction cannot commit any more).
//!   A Validate that expects locks (`locked`) but finds none (the
//!   deadline passed) fails.
//! - **Install** installs the writes locked with the commit's clock and
//!   ends the transaction. It is idempotent: a repeated or late Install
//!   of a transaction installed here answers Done (finished transactions
//!   are remembered for at least 30 s). An Install for a transaction
//!   that holds nothing here fails: this node may have taken over the
//!   group after another locked for it, and answering Done would
//!   acknowledge writes nobody installs.
//! - **Release** gives back the locks and clock values and ends the
//!   transaction; releasing one that holds nothing here answers Done. It
//!   releases only what *this* transaction took: the keys come from the
//!   state, never from the request.
//! - [`Participants::sweep`] (called periodically) releases transactions
//!   that locked but did not validate by their deadline: their coordinator
//!   gave up, died or lost touch, and nobody else would ever release
//!   them.
//!
//! Time is passed in (`now`), so that the tests here are deterministic.
//! Calls may run concurrently on many threads: each transaction's state
//! has its own lock, held while its shards are called, so that a repeated
//! Install waits for the first instead of answering before the versions
//! are in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kv::{Epoch, Error, ErrorKind, ReadResult, Result, ShardId, VectorClock};
use serde::{Deserialize, Serialize};

use crate::client::{KeyRange, ScanResult, ShardClient, TxnId, Validation, Write};
use crate::coord::{CommitProtocol, Coordinator, Reply, Request, Round};

/// A node's identity (the coordinator of a transaction is a node).
pub type NodeId = u32;

/// A participant RPC.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Call {
    /// Reads the newest version of `key` on `shard`.
    Read { shard: ShardId, key: Vec<u8> },
    /// Scans `range` on `shard` (see [`ShardClient::scan`]).
    Scan {
        shard: ShardId,
        range: KeyRange,
        limit: Option<usize>,
        reverse: bool,
    },
    /// Lock round: the writes of each shard, sorted by key.
    Lock {
        txn: TxnId,
        epoch: Epoch,
        writes: Vec<(ShardId, Vec<Write>)>,
    },
    /// GetClock round on these shards.
    GetClock { txn: TxnId, shards: Vec<ShardId> },
    /// Validate round: each shard's reads. `locked`: the coordinator's
    /// Lock succeeded here (so the locks must still be held).
    Validate {
        txn: TxnId,
        checks: Vec<(ShardId, Validation)>,
        locked: bool,
    },
    /// Install round: the locked writes, tagged with `vc` and `epoch`.
    Install {
        txn: TxnId,
        vc: VectorClock,
        epoch: Epoch,
    },
    /// Abort: give back whatever the transaction holds here.
    Release { txn: TxnId },
    /// Reads the newest version of each of `keys` on `shard`.
    ReadMany { shard: ShardId, keys: Vec<Vec<u8>> },
}

/// The answer to a [`Call`] that succeeded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Answer {
    /// Lock, Validate, Install, Release.
    Done,
    /// Read.
    Read(ReadResult),
    /// Scan.
    Scan(ScanResult),
    /// GetClock: each shard's clock value.
    Clocks(Vec<(ShardId, u64)>),
    /// ReadMany, in the order asked.
    Reads(Vec<ReadResult>),
}

/// Where a transaction is, here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Locked; released at the deadline unless validated by then.
    Locked,
    /// Validated: only the coordinator's decision ends it.
    Validated,
    /// Installed.
    Installed,
    /// Released (or its Lock or Validate failed).
    Finished,
}

/// One transaction's state on this participant.
struct State {
    /// The node coordinating it.
    coordinator: NodeId,
    /// The epoch its Lock came in.
    epoch: Epoch,
    /// The writes locked, by shard.
    writes: BTreeMap<ShardId, Vec<Write>>,
    /// The clock values handed out, by shard.
    clocks: BTreeMap<ShardId, u64>,
    phase: Phase,
    /// When it is released if not validated by then.
    deadline: Instant,
}

/// The transactions a participant knows, and recently finished ones.
#[derive(Default)]
struct Table {
    live: HashMap<TxnId, Arc<Mutex<State>>>,
    /// Transactions that ended here (released, installed, or failed
    /// validation), until this instant, and whether installed: a late
    /// Lock for one is refused, so it cannot lock keys nobody will
    /// release before the deadline, and a repeated Install of an
    /// installed one answers Done.
    finished: HashMap<TxnId, (Instant, bool)>,
}

/// How long a participant remembers a finished transaction at least
/// (longer than a coordinator repeats an Install).
const REMEMBER: Duration = Duration::from_secs(30);

/// The participant service of the shards one node leads (see the module
/// docs).
pub struct Participants {
    shards: HashMap<ShardId, Arc<dyn ShardClient>>,
    table: Mutex<Table>,
    /// How long a transaction may hold locks here before it validates.
    lock_timeout: Duration,
    /// Speculative, or the two-phase-commit-over-Paxos baseline (which
    /// makes Validate and Install wait for replicated records).
    protocol: CommitProtocol,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a participant says about a transaction it no longer holds.
fn expired(txn: TxnId) -> Error {
    Error::conflict(format!(
        "could not serialize access: transaction {txn} lost its locks on a participant \
         (its coordinator did not validate in time)"
    ))
}

impl Participants {
    /// Serves `shards`; a transaction that locked and has not validated
    /// within `lock_timeout` is released by [`Participants::sweep`].
    pub fn new(shards: Vec<Arc<dyn ShardClient>>, lock_timeout: Duration) -> Participants {
        Participants {
            shards: shards.into_iter().map(|c| (c.shard_id(), c)).collect(),
            table: Mutex::new(Table::default()),
            lock_timeout,
            protocol: CommitProtocol::Speculative,
        }
    }

    /// The same, answering as `protocol` asks (see [`CommitProtocol`]).
    pub fn with_protocol(mut self, protocol: CommitProtocol) -> Participants {
        self.protocol = protocol;
        self
    }

    /// The client of `shard`, if this participant holds it.
    fn shard(&self, shard: ShardId) -> Result<&Arc<dyn ShardClient>> {
        self.shards.get(&shard).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!("shard {shard} is not held by this participant"),
            )
        })
    }

    /// Answers `call` from node `from` at time `now`.
    pub fn handle(&self, from: NodeId, call: Call, now: Instant) -> Result<Answer> {
        match call {
            Call::Read { shard, key } => self.shard(shard)?.read(&key).map(Answer::Read),
            Call::ReadMany { shard, keys } => {
                self.shard(shard)?.read_many(&keys).map(Answer::Reads)
            }
            Call::Scan {
                shard,
                range,
                limit,
                reverse,
            } => self
                .shard(shard)?
                .scan(&range, limit, reverse)
                .map(Answer::Scan),
            Call::Lock { txn, epoch, writes } => self.lock(from, txn, epoch, writes, now),
            Call::GetClock { txn, shards } => self.get_clock(txn, &shards),
            Call::Validate {
                txn,
                checks,
                locked,
            } => self.validate(txn, &checks, locked, now),
            Call::Install { txn, vc, epoch } => self.install(txn, &vc, epoch, now),
            Call::Release { txn } => {
                self.release(txn, now);
                Ok(Answer::Done)
            }
        }
    }

    fn state(&self, txn: TxnId) -> Option<Arc<Mutex<State>>> {
        lock(&self.table).live.get(&txn).cloned()
    }

    /// Forgets `txn` (its state says Finished or Installed), remembering
    /// that it ended and whether it installed.
    fn finish(&self, txn: TxnId, now: Instant, installed: bool) {
        let until = now + (2 * self.lock_timeout).max(REMEMBER);
        let mut t = lock(&self.table);
        t.live.remove(&txn);
        let entry = t.finished.entry(txn).or_insert((until, installed));
        entry.1 |= installed;
    }

    fn lock(
        &self,
        from: NodeId,
        txn: TxnId,
        epoch: Epoch,
        writes: Vec<(ShardId, Vec<Write>)>,
        now: Instant,
    ) -> Result<Answer> {
        for (s, _) in &writes {
            self.shard(*s)?;
        }
        let state = Arc::new(Mutex::new(State {
            coordinator: from,
            epoch,
            writes: BTreeMap::new(),
            clocks: BTreeMap::new(),
            phase: Phase::Locked,
            deadline: now + self.lock_timeout,
        }));
        // Registered (and its own lock taken) before any key is locked, so
        // a repeated Lock or a Release arriving meanwhile waits for this
        // one and sees what it did.
        let mut st = lock(&state);
        {
            let mut t = lock(&self.table);
            if t.finished.contains_key(&txn) {
                return Err(Error::conflict(format!(
                    "could not serialize access: transaction {txn} already ended on this participant"
                )));
            }
            if let Some(other) = t.live.get(&txn) {
                // A repeated Lock: the first one's outcome stands, if it
                // is the same transaction (same coordinator and epoch).
                let same = other
                    .try_lock()
                    .map(|o| o.coordinator == from && o.epoch == epoch)
                    .unwrap_or(true);
                if same {
                    return Ok(Answer::Done);
                }
                return Err(Error::conflict(format!(
                    "could not serialize access: transaction id {txn} is in use on this participant \
                     by another coordinator"
                )));
            }
            t.live.insert(txn, state.clone());
        }
        for (i, (s, w)) in writes.iter().enumerate() {
            if let Err(e) = self.shards[s].lock(txn, w) {
                // No wait: what this call took goes back at once.
                for (done, w) in &writes[..i] {
                    let _ = self.shards[done].release(txn, w);
                }
                st.phase = Phase::Finished;
                drop(st);
                self.finish(txn, now, false);
                return Err(e);
            }
        }
        st.writes = writes.into_iter().collect();
        Ok(Answer::Done)
    }

    fn get_clock(&self, txn: TxnId, shards: &[ShardId]) -> Result<Answer> {
        let state = self.state(txn).ok_or_else(|| expired(txn))?;
        let mut st = lock(&state);
        if !matches!(st.phase, Phase::Locked | Phase::Validated) {
            return Err(expired(txn));
        }
        let mut out = Vec::with_capacity(shards.len());
        for &s in shards {
            if !st.writes.contains_key(&s) {
                return Err(Error::internal(format!(
                    "GetClock of transaction {txn} on shard {s}, where it locked nothing"
                )));
            }
            let c = match st.clocks.get(&s) {
                Some(&c) => c,
                None => {
                    let c = self.shards[&s].get_clock(txn)?;
                    st.clocks.insert(s, c);
                    c
                }
            };
            out.push((s, c));
        }
        Ok(Answer::Clocks(out))
    }

    fn validate(
        &self,
        txn: TxnId,
        checks: &[(ShardId, Validation)],
        locked: bool,
        now: Instant,
    ) -> Result<Answer> {
        for (s, _) in checks {
            self.shard(*s)?;
        }
        let Some(state) = self.state(txn) else {
            if locked {
                return Err(expired(txn));
            }
            // Reads only, here: nothing is held.
            for (s, v) in checks {
                self.shards[s].validate(txn, v, &[])?;
            }
            return Ok(Answer::Done);
        };
        let mut st = lock(&state);
        if !matches!(st.phase, Phase::Locked | Phase::Validated) {
            return Err(expired(txn));
        }
        // From here on the deadline no longer applies.
        st.phase = Phase::Validated;
        let result = checks.iter().try_for_each(|(s, v)| {
            let held = st.writes.get(s).map_or(&[][..], Vec::as_slice);
            self.shards[s].validate(txn, v, held)
        });
        // The baseline's prepare record: the vote counts once replicated.
        let result = result.and_then(|()| match self.protocol {
            CommitProtocol::Speculative => Ok(()),
            CommitProtocol::TwoPhaseOverPaxos => st
                .writes
                .iter()
                .filter(|(_, w)| !w.is_empty())
                .try_for_each(|(s, _)| self.shards[s].log_prepared(txn, st.epoch)),
        });
        if let Err(e) = result {
            // The transaction cannot commit: give everything back now.
            self.give_back(txn, &mut st);
            drop(st);
            self.finish(txn, now, false);
            return Err(e);
        }
        Ok(Answer::Done)
    }

    fn install(&self, txn: TxnId, vc: &VectorClock, epoch: Epoch, now: Instant) -> Result<Answer> {
        let Some(state) = self.state(txn) else {
            // A repeated Install of one installed here is done. Of one
            // never locked here (this node took over its group after
            // another locked for it, say), it is not: saying so would
            // acknowledge writes nobody installs. The coordinator asks
            // again, and gives up with an unknown outcome.
            return match lock(&self.table).finished.get(&txn) {
                Some((_, true)) => Ok(Answer::Done),
                _ => Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "transaction {txn} holds no locks on this participant (it never locked \
                         here, or this node took over its group since): nothing to install"
                    ),
                )),
            };
        };
        let mut st = lock(&state);
        match st.phase {
            Phase::Installed => return Ok(Answer::Done),
            Phase::Finished => {
                return Err(Error::internal(format!(
                    "Install of transaction {txn}, which was released on this participant"
                )));
            }
            Phase::Locked => {
                return Err(Error::internal(format!(
                    "Install of transaction {txn} before it validated on this participant"
                )));
            }
            Phase::Validated => {}
        }
        for (s, w) in &st.writes {
            self.shards[s].install(txn, w, vc, epoch)?;
        }
        // A stopped log installs nothing (the shard unlocked the writes):
        // the coordinator must not hear Done.
        if let Some(e) = st.writes.keys().find_map(|s| self.shards[s].log_failure()) {
            st.writes.clear();
            st.clocks.clear();
            st.phase = Phase::Finished;
            drop(st);
            self.finish(txn, now, false);
            return Err(e);
        }
        st.phase = Phase::Installed;
        let clocks = st.clocks.clone();
        drop(st);
        // An Install arriving later finds it installed.
        self.finish(txn, now, true);
        if self.protocol == CommitProtocol::TwoPhaseOverPaxos {
            // The baseline answers once the installed entries are
            // replicated (a repeated Install answers at once: the first
            // is still waiting or has answered).
            for (s, c) in &clocks {
                self.shards[s].wait_installed_durable(*c)?;
            }
        }
        Ok(Answer::Done)
    }

    fn release(&self, txn: TxnId, now: Instant) {
        let Some(state) = self.state(txn) else {
            // Nothing held; a Lock still on its way must not take anything.
            self.finish(txn, now, false);
            return;
        };
        let mut st = lock(&state);
        if matches!(st.phase, Phase::Locked | Phase::Validated) {
            self.give_back(txn, &mut st);
        }
        drop(st);
        self.finish(txn, now, false);
    }

    /// Unlocks the transaction's writes and gives back its clock values.
    fn give_back(&self, txn: TxnId, st: &mut State) {
        for (s, w) in &st.writes {
            let _ = self.shards[s].release(txn, w);
        }
        // Shards without writes took no clock value; none is left.
        st.writes.clear();
        st.clocks.clear();
        st.phase = Phase::Finished;
    }

    /// Releases every transaction that locked and did not validate by its
    /// deadline, and forgets finished ones old enough. Returns how many
    /// were released.
    pub fn sweep(&self, now: Instant) -> usize {
        let candidates: Vec<(TxnId, Arc<Mutex<State>>)> = {
            let mut t = lock(&self.table);
            t.finished.retain(|_, (until, _)| *until > now);
            t.live.iter().map(|(id, s)| (*id, s.clone())).collect()
        };
        let mut released = 0;
        for (txn, state) in candidates {
            // A state busy with a call is not overdue: it is being served.
            let Ok(mut st) = state.try_lock() else {
                continue;
            };
            if st.phase == Phase::Locked && st.deadline <= now {
                tracing::warn!(
                    txn,
                    coordinator = st.coordinator,
                    epoch = %st.epoch,
                    "releasing the locks of a transaction that did not validate in time"
                );
                self.give_back(txn, &mut st);
                drop(st);
                self.finish(txn, now, false);
                released += 1;
            }
        }
        released
    }

    /// How many transactions hold state here (for status and tests).
    pub fn live(&self) -> usize {
        lock(&self.table).live.len()
    }
}

/// The call that carries out `request` of `coord`'s transaction (what an
/// RPC driver of a [`Coordinator`] sends).
pub fn call_for(coord: &Coordinator, request: &Request) -> Result<Call> {
    let txn = coord.txn();
    Ok(match request.round {
        Round::Lock => Call::Lock {
            txn,
            epoch: coord.epoch(),
            writes: request
                .shards
                .iter()
                .map(|&s| (s, coord.writes(s).to_vec()))
                .collect(),
        },
        Round::GetClock => Call::GetClock {
            txn,
            shards: request.shards.clone(),
        },
        Round::Validate => Call::Validate {
            txn,
            checks: request
                .shards
                .iter()
                .filter(|&&s| !coord.validation(s).is_empty())
                .map(|&s| (s, coord.validation(s).clone()))
                .collect(),
            locked: request.shards.iter().any(|&s| coord.takes_clock(s)),
        },
        Round::Install => Call::Install {
            txn,
            vc: coord
                .vc()
                .cloned()
                .ok_or_else(|| Error::internal("Install before the commit's clock"))?,
            epoch: coord.epoch(),
        },
        Round::Release => Call::Release { txn },
    })
}

/// The coordinator's view of a participant's answer.
pub fn reply_of(answer: Answer) -> Result<Reply> {
    match answer {
        Answer::Done => Ok(Reply::Done),
        Answer::Clocks(c) => Ok(Reply::Clocks(c)),
        Answer::Read(_) | Answer::Scan(_) | Answer::Reads(_) => Err(Error::internal(
            "a participant answered a certification round with rows",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use kv::{ClockBuilder, Shard};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::client::{PointCheck, Seen};
    use crate::coord::{Participant, Ready};
    use crate::local::LocalShard;

    const TIMEOUT: Duration = Duration::from_millis(50);

    fn write(key: &str) -> Write {
        Write {
            key: key.as_bytes().to_vec(),
            value: Some(Arc::from(key.as_bytes())),
        }
    }

    /// Three shards; participant 0 serves shards 0 and 1, participant 1
    /// serves shard 2.
    struct World {
        stores: Vec<Arc<Shard>>,
        nodes: Vec<Participants>,
    }

    fn world() -> World {
        let stores: Vec<Arc<Shard>> = (0..3).map(|i| Arc::new(Shard::new(i))).collect();
        let client =
            |s: usize| Arc::new(LocalShard::new(stores[s].clone(), 3)) as Arc<dyn ShardClient>;
        let nodes = vec![
            Participants::new(vec![client(0), client(1)], TIMEOUT),
            Participants::new(vec![client(2)], TIMEOUT),
        ];
        World { stores, nodes }
    }

    impl World {
        fn locked(&self, shard: usize, key: &str) -> bool {
            self.stores[shard].is_locked(key.as_bytes())
        }
        fn present(&self, shard: usize, key: &str) -> bool {
            self.stores[shard].read(key.as_bytes()).value.is_some()
        }
    }

    fn lock_call(txn: TxnId, writes: Vec<(ShardId, Vec<Write>)>) -> Call {
        Call::Lock {
            txn,
            epoch: Epoch(1),
            writes,
        }
    }

    /// Lock (`writes` on `shard`), then GetClock there: the clock value.
    fn lock_and_clock(p: &Participants, txn: TxnId, shard: ShardId, writes: Vec<Write>) -> u64 {
        let t0 = Instant::now();
        p.handle(9, lock_call(txn, vec![(shard, writes)]), t0)
            .unwrap();
        let get_clock = Call::GetClock {
            txn,
            shards: vec![shard],
        };
        let Answer::Clocks(c) = p.handle(9, get_clock, t0).unwrap() else {
            panic!("no clocks");
        };
        assert_eq!(c.len(), 1);
        c[0].1
    }

    /// A coordinator that locks and then vanishes before Validate leaves
    /// its locks until the deadline; then they are released, and whatever
    /// of its arrives late is refused.
    #[test]
    fn locks_abandoned_before_validate_are_released_by_the_deadline() {
        let w = world();
        let p = &w.nodes[0];
        let t0 = Instant::now();
        let call = lock_call(5, vec![(0, vec![write("a")]), (1, vec![write("b")])]);
        p.handle(9, call.clone(), t0).unwrap();
        assert!(w.locked(0, "a") && w.locked(1, "b"));
        assert_eq!(p.sweep(t0 + TIMEOUT / 2), 0);
        assert!(w.locked(0, "a"));
        assert_eq!(p.sweep(t0 + TIMEOUT), 1);
        assert!(!w.locked(0, "a") && !w.locked(1, "b"));
        assert_eq!(p.live(), 0);
        let late = Call::Validate {
            txn: 5,
            checks: Vec::new(),
            locked: true,
        };
        assert!(p.handle(9, late, t0 + TIMEOUT).unwrap_err().is_retryable());
        // A Lock arriving this late takes nothing.
        assert!(p.handle(9, call, t0 + TIMEOUT).is_err());
        assert!(!w.locked(0, "a"));
    }

    /// Once validated, a transaction's locks are held past the deadline
    /// (the coordinator may have decided to commit); Install ends it, and
    /// a repeated Install changes nothing.
    #[test]
    fn validated_locks_outlive_the_deadline_and_install_is_idempotent() {
        let w = world();
        let p = &w.nodes[1];
        let t0 = Instant::now();
        p.handle(9, lock_call(6, vec![(2, vec![write("c")])]), t0)
            .unwrap();
        let Answer::Clocks(c) = p
            .handle(
                9,
                Call::GetClock {
                    txn: 6,
                    shards: vec![2],
                },
                t0,
            )
            .unwrap()
        else {
            panic!("no clocks");
        };
        // A repeated GetClock answers the same value.
        let Answer::Clocks(again) = p
            .handle(
                9,
                Call::GetClock {
                    txn: 6,
                    shards: vec![2],
                },
                t0,
            )
            .unwrap()
        else {
            panic!("no clocks");
        };
        assert_eq!(c, again);
        let validate = Call::Validate {
            txn: 6,
            checks: Vec::new(),
            locked: true,
        };
        p.handle(9, validate, t0).unwrap();
        assert_eq!(p.sweep(t0 + 10 * TIMEOUT), 0);
        assert!(w.locked(2, "c"));
        let mut vc = ClockBuilder::new(3);
        vc.observe(2, c[0].1);
        let install = Call::Install {
            txn: 6,
            vc: vc.build(),
            epoch: Epoch(1),
        };
        p.handle(9, install.clone(), t0).unwrap();
        assert!(!w.locked(2, "c") && w.present(2, "c"));
        let version = w.stores[2].read(b"c").version;
        p.handle(9, install, t0).unwrap();
        assert_eq!(w.stores[2].read(b"c").version, version);
        assert_eq!(p.live(), 0);
    }

    /// A commit log whose entries become durable only when the test says.
    struct HeldLog {
        shard: Arc<Shard>,
        queued: Mutex<Vec<kv::log::LogEntry>>,
    }

    impl kv::log::CommitLog for HeldLog {
        fn append(&self, entry: kv::log::LogEntry) -> Result<()> {
            lock(&self.queued).push(entry);
            Ok(())
        }
        fn failure(&self) -> Option<Error> {
            None
        }
        fn durability(&self) -> String {
            "held by the test".into()
        }
    }

    /// One logged shard whose log the test holds, served by one
    /// participant answering as `protocol` asks.
    fn held(protocol: CommitProtocol) -> (Arc<Shard>, Arc<HeldLog>, Arc<Participants>) {
        let store = Arc::new(Shard::logged(0, Arc::new(kv::shard::Watermarks::new(1))));
        let log = Arc::new(HeldLog {
            shard: store.clone(),
            queued: Mutex::new(Vec::new()),
        });
        let client = Arc::new(LocalShard::logged(store.clone(), 1, log.clone()));
        let p = Participants::new(vec![client as Arc<dyn ShardClient>], TIMEOUT * 100)
            .with_protocol(protocol);
        (store, log, Arc::new(p))
    }

    impl HeldLog {
        /// The entries queued: (writes, clock value).
        fn queued(&self) -> Vec<(usize, u64)> {
            lock(&self.queued)
                .iter()
                .map(|e| (e.writes.len(), e.clock()))
                .collect()
        }
        /// Makes every queued entry durable.
        fn flush(&self) {
            for e in std::mem::take(&mut *lock(&self.queued)) {
                self.shard.clock_durable(e.clock());
            }
            self.shard.wake_waiters();
        }
        /// Waits (at most 10 s) until `n` entries are queued.
        fn wait_for(&self, n: usize) {
            let until = Instant::now() + Duration::from_secs(10);
            while lock(&self.queued).len() < n {
                assert!(Instant::now() < until, "no log entry came");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Under the two-phase-commit-over-Paxos baseline a participant votes
    /// (answers Validate) only once its prepare record is durable, and
    /// answers Install only once the installed entry is; under Mako's
    /// protocol neither waits for the log.
    #[test]
    fn two_phase_commit_over_paxos_answers_only_once_its_records_are_durable() {
        for protocol in [
            CommitProtocol::Speculative,
            CommitProtocol::TwoPhaseOverPaxos,
        ] {
            let (store, log, p) = held(protocol);
            let t0 = Instant::now();
            let c = lock_and_clock(&p, 7, 0, vec![write("a")]);
            let call = |call: Call| {
                let (p, (tx, rx)) = (p.clone(), std::sync::mpsc::channel());
                std::thread::spawn(move || tx.send(p.handle(9, call, t0)));
                rx
            };
            let answer = |rx: &std::sync::mpsc::Receiver<Result<Answer>>| {
                rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap()
            };
            let validate = call(Call::Validate {
                txn: 7,
                checks: Vec::new(),
                locked: true,
            });
            if protocol == CommitProtocol::TwoPhaseOverPaxos {
                // The prepare record: a marker with a clock value of its own.
                log.wait_for(1);
                let queued = log.queued();
                assert_eq!(queued.len(), 1);
                assert_eq!(queued[0].0, 0);
                assert!(queued[0].1 > c);
                assert!(
                    validate.try_recv().is_err(),
                    "voted before its record was durable"
                );
                log.flush();
            }
            answer(&validate);
            assert!(store.is_locked(b"a"));
            let mut vc = ClockBuilder::new(1);
            vc.observe(0, c);
            let install = call(Call::Install {
                txn: 7,
                vc: vc.build(),
                epoch: Epoch(1),
            });
            if protocol == CommitProtocol::TwoPhaseOverPaxos {
                log.wait_for(1);
                assert_eq!(log.queued(), vec![(1, c)]);
                // Installed (visible, unlocked) but not acknowledged.
                while store.is_locked(b"a") {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(store.read(b"a").value.is_some());
                assert!(
                    install.try_recv().is_err(),
                    "acknowledged before it was durable"
                );
                log.flush();
            }
            answer(&install);
            assert!(store.read(b"a").value.is_some());
            if protocol == CommitProtocol::Speculative {
                // Nothing waited: the installed entry is still queued.
                assert_eq!(log.queued(), vec![(1, c)]);
            }
        }
    }

    /// A shard that takes a clock value without writing (a coordinator's
    /// own) settles it at Install with a marker: the watermark passes the
    /// value once the marker is durable, never before.
    #[test]
    fn a_clock_taken_without_writes_is_settled_by_a_marker_at_install() {
        let (store, log, p) = held(CommitProtocol::Speculative);
        let t0 = Instant::now();
        let c = lock_and_clock(&p, 8, 0, Vec::new());
        let validate = Call::Validate {
            txn: 8,
            checks: Vec::new(),
            locked: true,
        };
        p.handle(9, validate, t0).unwrap();
        let mut vc = ClockBuilder::new(1);
        vc.observe(0, c);
        let install = Call::Install {
            txn: 8,
            vc: vc.build(),
            epoch: Epoch(1),
        };
        p.handle(9, install, t0).unwrap();
        assert_eq!(log.queued(), vec![(0, c)]);
        assert!(store.watermark() < c);
        log.flush();
        assert_eq!(store.watermark(), c);
    }

    /// An Install for a transaction that never locked here (this node
    /// took over its group after another locked for it) is not
    /// acknowledged: the writes would be lost while the coordinator
    /// reports a commit.
    #[test]
    fn an_install_of_a_transaction_unknown_here_is_not_acknowledged() {
        let w = world();
        let install = Call::Install {
            txn: 12,
            vc: VectorClock::zero(3),
            epoch: Epoch(1),
        };
        let e = w.nodes[0].handle(9, install, Instant::now()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    }

    /// A transaction id another coordinator still uses here is refused,
    /// not taken for a repeated Lock (which would lock nothing).
    #[test]
    fn a_lock_with_an_id_in_use_by_another_coordinator_is_refused() {
        let w = world();
        let p = &w.nodes[1];
        let t0 = Instant::now();
        p.handle(9, lock_call(20, vec![(2, vec![write("c")])]), t0)
            .unwrap();
        p.handle(9, lock_call(20, vec![(2, vec![write("c")])]), t0)
            .unwrap();
        let e = p
            .handle(8, lock_call(20, vec![(2, vec![write("d")])]), t0)
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(!w.locked(2, "d"));
    }

    /// Release frees only what the named transaction locked here; an
    /// unknown one's Release is harmless and keeps its late Lock out.
    #[test]
    fn release_frees_only_the_transactions_own_locks() {
        let w = world();
        let p = &w.nodes[0];
        let t0 = Instant::now();
        p.handle(9, lock_call(7, vec![(0, vec![write("a")])]), t0)
            .unwrap();
        // Transaction 8 wants the same key: refused, holds nothing.
        let e = p
            .handle(
                9,
                lock_call(8, vec![(1, vec![write("b")]), (0, vec![write("a")])]),
                t0,
            )
            .unwrap_err();
        assert!(e.is_retryable());
        assert!(!w.locked(1, "b"), "a failed Lock gives back what it took");
        // Its Release must not free 7's lock on "a".
        p.handle(9, Call::Release { txn: 8 }, t0).unwrap();
        assert!(w.locked(0, "a"));
        // A Release before the Lock arrives keeps that Lock out.
        p.handle(9, Call::Release { txn: 10 }, t0).unwrap();
        assert!(
            p.handle(9, lock_call(10, vec![(1, vec![write("b")])]), t0)
                .is_err()
        );
        assert!(!w.locked(1, "b"));
        p.handle(9, Call::Release { txn: 7 }, t0).unwrap();
        assert!(!w.locked(0, "a"));
        assert_eq!(p.live(), 0);
    }

    /// A participant whose Validate fails gives its locks back at once.
    #[test]
    fn a_failed_validate_releases_at_once() {
        let w = world();
        let p = &w.nodes[0];
        let t0 = Instant::now();
        p.handle(9, lock_call(11, vec![(0, vec![write("a")])]), t0)
            .unwrap();
        // "b" was read at version 1, but it was never written.
        let checks = vec![(
            1,
            Validation {
                points: vec![PointCheck {
                    key: b"b".to_vec(),
                    seen: Seen::Version(1),
                }],
                scans: Vec::new(),
            },
        )];
        let call = Call::Validate {
            txn: 11,
            checks,
            locked: true,
        };
        assert!(p.handle(9, call, t0).unwrap_err().is_retryable());
        assert!(!w.locked(0, "a"));
        assert_eq!(p.live(), 0);
    }

    /// Calls and answers cross the network whole.
    #[test]
    fn calls_round_trip_through_postcard() {
        let call = Call::Validate {
            txn: 3,
            checks: vec![(
                1,
                Validation {
                    points: Vec::new(),
                    scans: vec![crate::client::ScanCheck {
                        range: KeyRange::new(b"a".to_vec(), None),
                        seen: vec![(b"b".to_vec(), Seen::Vc(Some(VectorClock::zero(2))))],
                    }],
                },
            )],
            locked: false,
        };
        let bytes = postcard::to_stdvec(&call).unwrap();
        let back: Call = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{call:?}"));
    }

    /// One seeded run: a coordinator of a transaction writing on shards 0
    /// and 2 and validating a read on shard 1, over a network that loses
    /// and repeats messages (in order per direction, as the transport
    /// keeps them), with replies that may be declared overdue early, a
    /// coordinator that may vanish at any step, and sometimes a
    /// conflicting lock. Returns what happened, after the participants
    /// swept well past every deadline.
    fn simulate(seed: u64) -> (Option<Result<VectorClock>>, bool) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = world();
        let t0 = Instant::now();
        let mut now = t0;
        // "b" on shard 1: written once, read at that version.
        w.stores[1].try_lock(b"b").unwrap();
        w.stores[1].install(
            b"b",
            Some(Arc::from(&b"b"[..])),
            VectorClock::zero(3),
            Epoch(1),
        );
        let seen = w.stores[1].read(b"b").version;
        let conflict = rng.random_bool(0.2);
        if conflict {
            w.stores[2].try_lock(b"c").unwrap();
        }
        let writes = vec![vec![write("a")], vec![], vec![write("c")]];
        let checks = vec![
            Validation::default(),
            Validation {
                points: vec![PointCheck {
                    key: b"b".to_vec(),
                    seen: Seen::Version(seen),
                }],
                scans: Vec::new(),
            },
            Validation::default(),
        ];
        let mut coord = Coordinator::new(1, Epoch(1), writes, checks, ClockBuilder::new(3), |s| {
            if s == 2 { 1 } else { 0 }
        });
        // Per participant: requests on their way there, replies back.
        let mut out: Vec<VecDeque<(Round, Call)>> = vec![VecDeque::new(), VecDeque::new()];
        let mut back: Vec<VecDeque<(Round, Result<Reply>)>> =
            vec![VecDeque::new(), VecDeque::new()];
        let mut alive = true;
        let mut outcome = None;
        let send = |ready: Ready, coord: &Coordinator, out: &mut Vec<VecDeque<(Round, Call)>>| {
            for r in &ready.requests {
                out[r.to as usize].push_back((r.round, call_for(coord, r).unwrap()));
            }
            ready.outcome
        };
        let ready = coord.start();
        outcome = outcome.or(send(ready, &coord, &mut out));
        for _ in 0..400 {
            now += Duration::from_millis(1);
            if outcome.is_some()
                && out.iter().all(VecDeque::is_empty)
                && back.iter().all(VecDeque::is_empty)
            {
                break;
            }
            if alive && outcome.is_none() && rng.random_bool(0.01) {
                alive = false; // the coordinator's node is gone
            }
            let p = rng.random_range(0..2usize);
            match rng.random_range(0..10) {
                0..=4 => {
                    if let Some((round, call)) = out[p].pop_front() {
                        let lose = rng.random_bool(0.1);
                        let twice = rng.random_bool(0.1);
                        for _ in 0..if twice { 2 } else { 1 } {
                            let answer = w.nodes[p].handle(9, call.clone(), now);
                            if !lose {
                                back[p].push_back((round, answer.and_then(reply_of)));
                            }
                        }
                    }
                }
                5..=8 => {
                    if let Some((round, reply)) = back[p].pop_front()
                        && alive
                    {
                        let ready = coord.on_reply(p as Participant, round, reply);
                        outcome = outcome.or(send(ready, &coord, &mut out));
                    }
                }
                _ => {
                    if alive && rng.random_bool(0.3) {
                        let ready = coord.timeout();
                        outcome = outcome.or(send(ready, &coord, &mut out));
                    }
                }
            }
            for n in &w.nodes {
                n.sweep(now);
            }
        }
        if conflict {
            w.stores[2].unlock(b"c");
        }
        // Long after: every deadline has passed.
        for n in &w.nodes {
            n.sweep(now + 100 * TIMEOUT);
        }
        let installed = [w.present(0, "a"), w.present(2, "c")];
        let held = [w.locked(0, "a"), !conflict && w.locked(2, "c")];
        let validated: Vec<bool> = w.nodes.iter().map(|n| n.live() > 0).collect();
        // Nothing is half done unless the coordinator vanished after the
        // commit point, and then what is not installed is still locked
        // (never released by a deadline: it may be committed).
        match &outcome {
            Some(Ok(_)) => assert_eq!(installed, [true, true], "seed {seed}"),
            Some(Err(_)) => {
                assert_eq!(installed, [false, false], "seed {seed}");
                assert_eq!(
                    held,
                    [false, false],
                    "seed {seed}: an aborted transaction left locks"
                );
            }
            None => {
                assert!(
                    !alive,
                    "seed {seed}: the coordinator neither finished nor vanished"
                );
                if installed.contains(&true) {
                    for i in 0..2 {
                        assert!(
                            installed[i] || (held[i] && validated[i]),
                            "seed {seed}: {installed:?} {held:?}"
                        );
                    }
                } else if !validated.contains(&true) {
                    assert_eq!(
                        held,
                        [false, false],
                        "seed {seed}: abandoned locks outlived the deadline"
                    );
                }
            }
        }
        (outcome, installed.contains(&true))
    }

    /// Seeded runs of [`simulate`]: every one keeps the invariants, and
    /// the runs cover commits, aborts and vanished coordinators.
    #[test]
    fn a_lossy_network_and_vanishing_coordinators_never_half_commit() {
        let (mut committed, mut aborted, mut vanished) = (0, 0, 0);
        for seed in 0..2000 {
            match simulate(seed) {
                (Some(Ok(_)), _) => committed += 1,
                (Some(Err(_)), _) => aborted += 1,
                (None, _) => vanished += 1,
            }
        }
        assert!(
            committed > 50 && aborted > 50 && vanished > 50,
            "{committed} {aborted} {vanished}"
        );
    }
}
