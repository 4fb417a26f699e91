//! The commit coordinator of a transaction with several participants, as a
//! state machine without I/O (Mako §4.2).
//!
//! A [`Coordinator`] runs the four certification rounds — Lock, GetClock,
//! Validate, Install — and, when the transaction aborts, Release. It sends
//! nothing itself: each step returns a [`Ready`] with the requests to send
//! (one per participant and round, all of a round at once: a round costs
//! one round trip, however many participants) and, at the end, the
//! outcome. Its driver sends the requests, hands each reply back with
//! [`Coordinator::on_reply`], and calls [`Coordinator::timeout`] when
//! replies are overdue. The in-process driver is in [`crate::txn`]; an RPC
//! driver runs the same machine over the network, so lost, duplicated and
//! reordered replies are tested here, deterministically.
//!
//! A participant is whoever answers for a set of shards in one reply: a
//! replica group's leader across nodes, one shard in one process. A
//! request names the participant's shards it is about; their writes,
//! reads to validate and the commit's clock are read from the
//! coordinator ([`Coordinator::writes`], [`Coordinator::validation`],
//! [`Coordinator::vc`]), so that nothing is copied for a local call.
//!
//! The rules:
//! - A round ends when every participant of it has answered (or the driver
//!   says the rest are overdue). Only then does the next begin: an abort
//!   never overtakes a request still on its way, so a participant never
//!   gets Release before a Lock or GetClock it may still apply.
//! - Before the commit point (every Validate answered yes), any failure
//!   aborts: Release goes to every participant that locked, or may have
//!   (its Lock or GetClock reply is overdue). A participant whose Lock
//!   failed holds nothing. So a driver reports a request that got no
//!   answer (a lost message, a dead peer) through `timeout`, never as an
//!   error reply.
//! - After it, the transaction is committed: Install is repeated to a
//!   participant until it answers (Install is idempotent), and the outcome
//!   is the commit's vector clock once every participant installed.
//! - Validate goes to every participant, also one that only writes: it
//!   tells a participant that the transaction reached the commit point's
//!   round, after which only the decision releases its locks (before, a
//!   deadline may; see [`crate::participant`]).
//! - A reply that is not awaited (a duplicate, one from an earlier round,
//!   or from a participant not asked) is ignored.

use std::collections::{BTreeMap, BTreeSet};

use kv::{ClockBuilder, Epoch, Error, ErrorKind, Result, ShardId, VectorClock};

use crate::client::{TxnId, Validation, Write};

/// Whoever answers one request for a set of shards.
pub type Participant = u32;

/// How a transaction across replica groups commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitProtocol {
    /// Mako's: the four rounds replicate nothing; each group replicates
    /// its installs in the background, and the commit is acknowledged
    /// once its vector clock is covered by the vector watermark.
    #[default]
    Speculative,
    /// The baseline Mako is measured against, two-phase commit over
    /// Paxos: a participant answers Validate (its prepare vote) only once
    /// a prepare record is replicated in its group, the coordinator
    /// replicates its decision in its own group before Install, and a
    /// participant answers Install only once the installed entry is
    /// replicated. Locks are held across the first two replications (the
    /// installed versions are visible before the third, which is kinder
    /// to the baseline than holding them longer).
    TwoPhaseOverPaxos,
}

impl CommitProtocol {
    /// The name used in cluster files and reports.
    pub fn name(self) -> &'static str {
        match self {
            CommitProtocol::Speculative => "speculative",
            CommitProtocol::TwoPhaseOverPaxos => "2pc-paxos",
        }
    }

    /// The protocol of `name` (see [`CommitProtocol::name`]).
    pub fn parse(name: &str) -> Option<CommitProtocol> {
        [
            CommitProtocol::Speculative,
            CommitProtocol::TwoPhaseOverPaxos,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// A certification round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Round {
    /// Lock the writes (no wait).
    Lock,
    /// Take a clock value on each written shard.
    GetClock,
    /// Check the reads (the writes' own locks do not fail them).
    Validate,
    /// Install the writes with the commit's clock and release their locks.
    Install,
    /// Abort: release the locks and give up the clock values taken.
    Release,
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// To whom.
    pub to: Participant,
    /// Which round.
    pub round: Round,
    /// The participant's shards the request is about (in order).
    pub shards: Vec<ShardId>,
}

/// A participant's answer to a request that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Lock, Validate, Install, Release: done on every shard asked.
    Done,
    /// GetClock: each shard's new clock value.
    Clocks(Vec<(ShardId, u64)>),
}

/// What a step asks of the driver.
#[derive(Debug, Default)]
pub struct Ready {
    /// Requests to send now (each round's all at once).
    pub requests: Vec<Request>,
    /// The outcome, once decided and carried out: the commit's vector
    /// clock, or why it aborted.
    pub outcome: Option<Result<VectorClock>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Round(Round),
    Done,
}

/// The coordinator of one transaction's commit (see the module docs).
pub struct Coordinator {
    txn: TxnId,
    epoch: Epoch,
    /// Writes by shard.
    writes: Vec<Vec<Write>>,
    /// Reads to validate, by shard.
    checks: Vec<Validation>,
    /// Each participant's shards that write or validate something.
    participants: BTreeMap<Participant, Vec<ShardId>>,
    /// The clock being built: the reads' clocks, then the values taken.
    clock: ClockBuilder,
    /// The commit's clock, once every clock value is in.
    vc: Option<VectorClock>,
    phase: Phase,
    /// Participants whose reply to the current round is awaited.
    pending: BTreeSet<Participant>,
    /// Participants that may hold this transaction's locks or clock
    /// values (their Lock succeeded or is unanswered), until installed or
    /// released.
    holding: BTreeSet<Participant>,
    /// Why the transaction aborts, once something failed.
    error: Option<Error>,
    /// A shard without writes that takes a clock value all the same (the
    /// coordinator's own; see [`Coordinator::with_coordinator_clock`]).
    clock_only: Option<ShardId>,
}

impl Coordinator {
    /// The coordinator of `txn` (tagged with `epoch`), writing `writes`
    /// and validating `checks` (both indexed by shard), having read at
    /// `read_vc`; `participant` says who answers for each shard.
    pub fn new(
        txn: TxnId,
        epoch: Epoch,
        writes: Vec<Vec<Write>>,
        checks: Vec<Validation>,
        read_vc: ClockBuilder,
        participant: impl Fn(ShardId) -> Participant,
    ) -> Coordinator {
        let mut participants: BTreeMap<Participant, Vec<ShardId>> = BTreeMap::new();
        for (s, w) in writes.iter().enumerate() {
            if !w.is_empty() || checks.get(s).is_some_and(|c| !c.is_empty()) {
                participants.entry(participant(s)).or_default().push(s);
            }
        }
        Coordinator {
            txn,
            epoch,
            writes,
            checks,
            participants,
            clock: read_vc,
            vc: None,
            phase: Phase::Start,
            pending: BTreeSet::new(),
            holding: BTreeSet::new(),
            error: None,
            clock_only: None,
        }
    }

    /// Makes the commit's vector clock name the coordinator's own
    /// participant (`home_participant`, answering for shard `home`), as
    /// Mako's coordinator takes a clock value on its own shard (§4): when
    /// the transaction writes, and none of its writes are on that
    /// participant, `home` takes part in Lock (locking nothing), GetClock
    /// and Install (which logs a marker for the value). The commit is then
    /// acknowledged only once that marker is durable too, and the
    /// coordinator's group knows of every commit it coordinated, so a
    /// failure of that group can doom the commits it had not finished.
    pub fn with_coordinator_clock(mut self, home: ShardId, home_participant: Participant) -> Self {
        if self.phase != Phase::Start
            || self.writers().next().is_none()
            || self.writer_shards(home_participant).next().is_some()
            || home >= self.writes.len()
        {
            return self;
        }
        self.clock_only = Some(home);
        let shards = self.participants.entry(home_participant).or_default();
        if let Err(at) = shards.binary_search(&home) {
            shards.insert(at, home);
        }
        self
    }

    /// Whether `shard` takes a clock value (it has writes, or it is the
    /// coordinator's own; see [`Coordinator::with_coordinator_clock`]).
    pub fn takes_clock(&self, shard: ShardId) -> bool {
        self.writes.get(shard).is_some_and(|w| !w.is_empty()) || self.clock_only == Some(shard)
    }

    /// The transaction.
    pub fn txn(&self) -> TxnId {
        self.txn
    }

    /// The epoch its versions are tagged with.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The writes on `shard`, sorted by key.
    pub fn writes(&self, shard: ShardId) -> &[Write] {
        &self.writes[shard]
    }

    /// The reads to validate on `shard`.
    pub fn validation(&self, shard: ShardId) -> &Validation {
        &self.checks[shard]
    }

    /// The commit's vector clock, once every clock value is in (for
    /// Validate's and Install's requests).
    pub fn vc(&self) -> Option<&VectorClock> {
        self.vc.as_ref()
    }

    /// How many reads Validate checks, all participants together (point
    /// reads and rows seen by scans): its work grows with them, and so
    /// may the time a driver gives it.
    pub fn reads_to_validate(&self) -> usize {
        self.checks
            .iter()
            .map(|c| c.points.len() + c.scans.iter().map(|s| s.seen.len() + 1).sum::<usize>())
            .sum()
    }

    /// How many participants take part.
    pub fn participants(&self) -> usize {
        self.participants.len()
    }

    /// Participants that may hold locks or clock values of this
    /// transaction: a driver that cannot go on (it panicked) releases
    /// them.
    pub fn holding(&self) -> impl Iterator<Item = Participant> + '_ {
        self.holding.iter().copied()
    }

    /// Whether the outcome has been given.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Begins: the first round's requests (or, with nothing to certify,
    /// the outcome).
    pub fn start(&mut self) -> Ready {
        if self.phase != Phase::Start {
            return Ready::default();
        }
        if self.writers().next().is_none() {
            self.vc = Some(self.clock.build());
            return self.begin(Round::Validate);
        }
        self.begin(Round::Lock)
    }

    /// `from` answered `round`.
    pub fn on_reply(&mut self, from: Participant, round: Round, reply: Result<Reply>) -> Ready {
        if self.phase != Phase::Round(round) || !self.pending.remove(&from) {
            return Ready::default(); // not awaited
        }
        match (round, reply) {
            (Round::Install | Round::Release, Err(_)) => {
                // Decided: it is asked again (see `timeout`).
                self.pending.insert(from);
                return Ready::default();
            }
            (Round::Lock, Err(e)) => {
                // The participant answered: a Lock that fails, whatever
                // the reason, holds nothing (it releases what it took).
                // Releasing there could free another transaction's locks.
                // A Lock that was never answered is `timeout`'s case.
                self.holding.remove(&from);
                self.error.get_or_insert(e);
            }
            (_, Err(e)) => {
                self.error.get_or_insert(e);
            }
            (Round::GetClock, Ok(Reply::Clocks(clocks))) => {
                let asked: Vec<ShardId> = self.writer_shards(from).collect();
                let mut answered: Vec<ShardId> = clocks.iter().map(|&(s, _)| s).collect();
                answered.sort_unstable();
                if answered != asked {
                    self.error.get_or_insert(Error::internal(format!(
                        "participant {from} answered GetClock for other shards: {clocks:?}"
                    )));
                } else {
                    for (s, c) in clocks {
                        self.clock.observe(s, c);
                    }
                }
            }
            (Round::GetClock, Ok(Reply::Done)) => {
                self.error.get_or_insert(Error::internal(format!(
                    "participant {from} answered GetClock without clock values"
                )));
            }
            (Round::Lock | Round::Validate, Ok(_)) => {}
            (Round::Install | Round::Release, Ok(_)) => {
                self.holding.remove(&from);
            }
        }
        if !self.pending.is_empty() {
            return Ready::default();
        }
        self.round_done(round)
    }

    /// The replies still awaited are overdue: before the commit point the
    /// transaction aborts (those participants may hold its locks, so they
    /// are asked to release them); after it, Install (or Release) is sent
    /// again to those that have not answered.
    pub fn timeout(&mut self) -> Ready {
        let Phase::Round(round) = self.phase else {
            return Ready::default();
        };
        if self.pending.is_empty() {
            return Ready::default();
        }
        match round {
            Round::Install | Round::Release => Ready {
                requests: self.requests(round, self.pending.iter().copied()),
                outcome: None,
            },
            Round::Lock | Round::GetClock | Round::Validate => {
                let late: Vec<Participant> =
                    std::mem::take(&mut self.pending).into_iter().collect();
                self.error.get_or_insert_with(|| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "participants {late:?} did not answer {round:?} in time; the transaction was not committed"
                        ),
                    )
                });
                self.round_done(round)
            }
        }
    }

    /// Every reply of `round` is in (or overdue): the next step.
    fn round_done(&mut self, round: Round) -> Ready {
        if self.error.is_some() && round < Round::Install {
            return self.begin(Round::Release);
        }
        match round {
            Round::Lock => self.begin(Round::GetClock),
            Round::GetClock => {
                self.vc = Some(self.clock.build());
                self.begin(Round::Validate)
            }
            Round::Validate => self.begin(Round::Install),
            Round::Install => self.finish(Ok(())),
            Round::Release => {
                let e = self
                    .error
                    .take()
                    .unwrap_or_else(|| Error::internal("a transaction released without a reason"));
                self.finish(Err(e))
            }
        }
    }

    /// Starts `round` with everyone it concerns; a round that concerns
    /// no one is done at once.
    fn begin(&mut self, round: Round) -> Ready {
        self.phase = Phase::Round(round);
        let to: Vec<Participant> = match round {
            Round::Lock | Round::GetClock | Round::Install => self.writers().collect(),
            // Every participant, also one with writes but no reads: its
            // Validate tells it the transaction reached the commit
            // point's round, after which only the decision may release
            // its locks (before, a deadline does; `crate::participant`).
            Round::Validate => self.participants.keys().copied().collect(),
            Round::Release => self.holding.iter().copied().collect(),
        };
        if round == Round::Lock {
            self.holding.extend(to.iter().copied());
        }
        if to.is_empty() {
            return self.round_done(round);
        }
        self.pending = to.iter().copied().collect();
        Ready {
            requests: self.requests(round, to.into_iter()),
            outcome: None,
        }
    }

    /// The requests of `round` to `to`.
    fn requests(&self, round: Round, to: impl Iterator<Item = Participant>) -> Vec<Request> {
        to.map(|p| Request {
            to: p,
            round,
            shards: match round {
                Round::Validate => self.participants[&p].clone(),
                _ => self.writer_shards(p).collect(),
            },
        })
        .collect()
    }

    fn finish(&mut self, outcome: Result<()>) -> Ready {
        self.phase = Phase::Done;
        self.pending.clear();
        let outcome = outcome.and_then(|()| {
            self.vc
                .clone()
                .ok_or_else(|| Error::internal("a transaction installed without its clock"))
        });
        Ready {
            requests: Vec::new(),
            outcome: Some(outcome),
        }
    }

    /// Participants with writes.
    fn writers(&self) -> impl Iterator<Item = Participant> + '_ {
        self.participants
            .keys()
            .copied()
            .filter(|&p| self.writer_shards(p).next().is_some())
    }

    /// `p`'s shards that take a clock value: those with writes (and the
    /// coordinator's own, if it takes one).
    fn writer_shards(&self, p: Participant) -> impl Iterator<Item = ShardId> + '_ {
        self.participants
            .get(&p)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&s| self.takes_clock(s))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::client::PointCheck;
    use crate::client::Seen;

    fn write(key: &str) -> Write {
        Write {
            key: key.as_bytes().to_vec(),
            value: Some(Arc::from(&b"v"[..])),
        }
    }

    fn check(key: &str) -> Validation {
        Validation {
            points: vec![PointCheck {
                key: key.as_bytes().to_vec(),
                seen: Seen::Version(1),
            }],
            scans: Vec::new(),
        }
    }

    /// Four shards: 0 and 1 answered by participant 0, 2 by 1, 3 by 2.
    /// Writes on 0, 2 and 3; reads to validate on 1 and 3.
    fn coordinator() -> Coordinator {
        let writes = vec![vec![write("a")], vec![], vec![write("c")], vec![write("d")]];
        let checks = vec![
            Validation::default(),
            check("b"),
            Validation::default(),
            check("d"),
        ];
        let mut read = ClockBuilder::new(4);
        read.observe(1, 5);
        Coordinator::new(7, Epoch(1), writes, checks, read, |s| match s {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        })
    }

    fn to(ready: &Ready) -> Vec<(Participant, Round, Vec<ShardId>)> {
        ready
            .requests
            .iter()
            .map(|r| (r.to, r.round, r.shards.clone()))
            .collect()
    }

    fn clocks(p: Participant) -> Reply {
        Reply::Clocks(match p {
            0 => vec![(0, 10)],
            1 => vec![(2, 20)],
            _ => vec![(3, 30)],
        })
    }

    /// Answers every request of `ready` with success, in order; returns
    /// the last step.
    fn answer_all(c: &mut Coordinator, ready: Ready) -> Ready {
        let mut last = Ready::default();
        for r in ready.requests {
            let reply = if r.round == Round::GetClock {
                clocks(r.to)
            } else {
                Reply::Done
            };
            last = c.on_reply(r.to, r.round, Ok(reply));
        }
        last
    }

    fn conflict() -> Error {
        Error::conflict("row is locked by a committing transaction")
    }

    /// A coordinator whose own participant has no writes takes a clock
    /// value on its own shard all the same (Lock, GetClock and Install
    /// go there too), so the commit's clock names it; one whose
    /// participant writes, or a read-only transaction, adds nothing.
    #[test]
    fn the_coordinators_own_shard_takes_a_clock_value() {
        // Writes on shard 2 (participant 1) only; the coordinator's own
        // shard is 1 (participant 0), which only validates a read.
        let writes = vec![vec![], vec![], vec![write("c")], vec![]];
        let checks = vec![
            Validation::default(),
            check("b"),
            Validation::default(),
            Validation::default(),
        ];
        let p = |s: ShardId| if s < 2 { 0 } else { 1 };
        let mut c = Coordinator::new(
            7,
            Epoch(1),
            writes.clone(),
            checks.clone(),
            ClockBuilder::new(4),
            p,
        )
        .with_coordinator_clock(1, 0);
        assert!(c.takes_clock(1) && c.takes_clock(2) && !c.takes_clock(0));
        let lock = c.start();
        assert_eq!(
            to(&lock),
            vec![(0, Round::Lock, vec![1]), (1, Round::Lock, vec![2])]
        );
        let get_clock = answer_all(&mut c, lock);
        assert_eq!(
            to(&get_clock),
            vec![(0, Round::GetClock, vec![1]), (1, Round::GetClock, vec![2])]
        );
        c.on_reply(0, Round::GetClock, Ok(Reply::Clocks(vec![(1, 11)])));
        let validate = c.on_reply(1, Round::GetClock, Ok(clocks(1)));
        assert_eq!(c.vc().unwrap().entries(), &[0, 11, 20, 0]);
        let install = answer_all(&mut c, validate);
        assert_eq!(
            to(&install),
            vec![(0, Round::Install, vec![1]), (1, Round::Install, vec![2])]
        );
        let done = answer_all(&mut c, install);
        assert_eq!(done.outcome.unwrap().unwrap().entries(), &[0, 11, 20, 0]);

        // Its participant writes already: nothing is added.
        let mut writes_home = writes.clone();
        writes_home[0] = vec![write("a")];
        let c = Coordinator::new(
            7,
            Epoch(1),
            writes_home,
            checks.clone(),
            ClockBuilder::new(4),
            p,
        )
        .with_coordinator_clock(1, 0);
        assert!(!c.takes_clock(1));
        // Read-only: nothing to take a clock value for.
        let none = vec![Vec::new(); 4];
        let c = Coordinator::new(7, Epoch(1), none, checks, ClockBuilder::new(4), p)
            .with_coordinator_clock(1, 0);
        assert!(!c.takes_clock(1));
    }

    /// Each round goes to every participant it concerns at once, and the
    /// next begins only when all have answered: four round trips.
    #[test]
    fn rounds_go_to_every_participant_at_once() {
        let mut c = coordinator();
        assert_eq!(c.participants(), 3);
        let lock = c.start();
        assert_eq!(
            to(&lock),
            vec![
                (0, Round::Lock, vec![0]),
                (1, Round::Lock, vec![2]),
                (2, Round::Lock, vec![3]),
            ]
        );
        // Replies in any order; nothing new until the last.
        assert!(to(&c.on_reply(2, Round::Lock, Ok(Reply::Done))).is_empty());
        assert!(to(&c.on_reply(0, Round::Lock, Ok(Reply::Done))).is_empty());
        let get_clock = c.on_reply(1, Round::Lock, Ok(Reply::Done));
        assert_eq!(
            to(&get_clock),
            vec![
                (0, Round::GetClock, vec![0]),
                (1, Round::GetClock, vec![2]),
                (2, Round::GetClock, vec![3]),
            ]
        );
        assert!(c.vc().is_none());
        let validate = answer_all(&mut c, get_clock);
        assert_eq!(c.vc().unwrap().entries(), &[10, 5, 20, 30]);
        // Everyone, a writer without reads too (so that its locks are
        // no longer released by its deadline), for all its shards.
        assert_eq!(
            to(&validate),
            vec![
                (0, Round::Validate, vec![0, 1]),
                (1, Round::Validate, vec![2]),
                (2, Round::Validate, vec![3]),
            ]
        );
        let install = answer_all(&mut c, validate);
        assert_eq!(
            to(&install),
            vec![
                (0, Round::Install, vec![0]),
                (1, Round::Install, vec![2]),
                (2, Round::Install, vec![3]),
            ]
        );
        let done = answer_all(&mut c, install);
        assert_eq!(done.outcome.unwrap().unwrap().entries(), &[10, 5, 20, 30]);
        assert!(c.is_done());
        assert_eq!(c.holding().count(), 0);
    }

    /// A lost Install is sent again on timeout, to that participant only;
    /// a duplicated reply changes nothing.
    #[test]
    fn a_lost_install_is_repeated_and_a_duplicate_reply_ignored() {
        let mut c = coordinator();
        let r = c.start();
        let r = answer_all(&mut c, r);
        let r = answer_all(&mut c, r);
        let install = answer_all(&mut c, r);
        assert_eq!(install.requests.len(), 3);
        // Participant 1's request (or its reply) is lost.
        assert!(
            c.on_reply(0, Round::Install, Ok(Reply::Done))
                .outcome
                .is_none()
        );
        assert!(
            c.on_reply(0, Round::Install, Ok(Reply::Done))
                .outcome
                .is_none()
        );
        assert!(
            c.on_reply(2, Round::Install, Ok(Reply::Done))
                .outcome
                .is_none()
        );
        let again = c.timeout();
        assert_eq!(to(&again), vec![(1, Round::Install, vec![2])]);
        // A failed Install is asked again too, never given up.
        assert!(
            c.on_reply(
                1,
                Round::Install,
                Err(Error::new(ErrorKind::Unavailable, "down"))
            )
            .outcome
            .is_none()
        );
        assert_eq!(to(&c.timeout()), vec![(1, Round::Install, vec![2])]);
        let done = c.on_reply(1, Round::Install, Ok(Reply::Done));
        assert!(done.outcome.unwrap().is_ok());
        // Late duplicates after the outcome are ignored.
        let late = c.on_reply(1, Round::Install, Ok(Reply::Done));
        assert!(late.outcome.is_none() && late.requests.is_empty());
    }

    /// A participant whose Lock fails (no wait, or any other failure it
    /// answers with) aborts the transaction once every Lock is answered:
    /// Release goes to those that locked, not to the one that failed (it
    /// holds nothing, and a Release there could free another
    /// transaction's locks).
    #[test]
    fn a_failed_lock_releases_the_others_after_the_round() {
        let mut c = coordinator();
        c.start();
        assert!(to(&c.on_reply(1, Round::Lock, Err(conflict()))).is_empty());
        assert_eq!(c.holding().collect::<Vec<_>>(), vec![0, 2]);
        assert!(to(&c.on_reply(0, Round::Lock, Ok(Reply::Done))).is_empty());
        let release = c.on_reply(2, Round::Lock, Ok(Reply::Done));
        assert_eq!(
            to(&release),
            vec![(0, Round::Release, vec![0]), (2, Round::Release, vec![3])]
        );
        assert!(
            c.on_reply(0, Round::Release, Ok(Reply::Done))
                .outcome
                .is_none()
        );
        let done = c.on_reply(2, Round::Release, Ok(Reply::Done));
        let err = done.outcome.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::SerializationFailure);

        let mut c = coordinator();
        c.start();
        let full = Error::new(ErrorKind::DiskFull, "the commit log has stopped");
        c.on_reply(0, Round::Lock, Err(full));
        c.on_reply(1, Round::Lock, Ok(Reply::Done));
        let release = c.on_reply(2, Round::Lock, Ok(Reply::Done));
        assert_eq!(
            to(&release),
            vec![(1, Round::Release, vec![2]), (2, Round::Release, vec![3])]
        );
    }

    /// A participant that votes no at Validate aborts the transaction:
    /// every writer (all locked, all took a clock value) is released.
    #[test]
    fn a_no_at_validate_releases_every_writer() {
        let mut c = coordinator();
        let r = c.start();
        let r = answer_all(&mut c, r);
        answer_all(&mut c, r);
        assert!(to(&c.on_reply(2, Round::Validate, Err(conflict()))).is_empty());
        assert!(to(&c.on_reply(1, Round::Validate, Ok(Reply::Done))).is_empty());
        let release = c.on_reply(0, Round::Validate, Ok(Reply::Done));
        assert_eq!(
            to(&release),
            vec![
                (0, Round::Release, vec![0]),
                (1, Round::Release, vec![2]),
                (2, Round::Release, vec![3]),
            ]
        );
        let done = answer_all(&mut c, release);
        assert!(done.outcome.unwrap().unwrap_err().is_retryable());
    }

    /// A Lock not answered in time aborts: the silent participant may
    /// have locked, so it is asked to release as well; a lost Release is
    /// repeated; the Lock reply arriving late is ignored.
    #[test]
    fn a_lock_that_times_out_aborts_and_releases_everyone_who_may_hold() {
        let mut c = coordinator();
        c.start();
        c.on_reply(0, Round::Lock, Ok(Reply::Done));
        c.on_reply(1, Round::Lock, Ok(Reply::Done));
        let release = c.timeout();
        assert_eq!(release.requests.len(), 3, "{:?}", to(&release));
        assert!(
            c.on_reply(2, Round::Lock, Ok(Reply::Done))
                .requests
                .is_empty()
        );
        c.on_reply(0, Round::Release, Ok(Reply::Done));
        c.on_reply(1, Round::Release, Ok(Reply::Done));
        assert_eq!(to(&c.timeout()), vec![(2, Round::Release, vec![3])]);
        let done = c.on_reply(2, Round::Release, Ok(Reply::Done));
        let err = done.outcome.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("[2]"), "{}", err.message);
    }

    /// Replies to another round, from participants not asked, or with
    /// clock values for shards the participant does not answer for are
    /// not taken.
    #[test]
    fn stray_and_malformed_replies_are_not_taken() {
        let mut c = coordinator();
        c.start();
        assert!(to(&c.on_reply(9, Round::Lock, Ok(Reply::Done))).is_empty());
        assert!(to(&c.on_reply(0, Round::Install, Ok(Reply::Done))).is_empty());
        c.on_reply(0, Round::Lock, Ok(Reply::Done));
        c.on_reply(1, Round::Lock, Ok(Reply::Done));
        c.on_reply(2, Round::Lock, Ok(Reply::Done));
        c.on_reply(0, Round::GetClock, Ok(Reply::Clocks(vec![(2, 99)])));
        c.on_reply(1, Round::GetClock, Ok(clocks(1)));
        let release = c.on_reply(2, Round::GetClock, Ok(clocks(2)));
        assert!(to(&release).iter().all(|(_, r, _)| *r == Round::Release));
        let done = answer_all(&mut c, release);
        assert_eq!(done.outcome.unwrap().unwrap_err().kind, ErrorKind::Internal);
    }

    /// Reads only, on several participants: Validate alone, and the
    /// commit's clock is the reads'.
    #[test]
    fn a_read_only_transaction_only_validates() {
        let checks = vec![check("a"), check("b")];
        let mut read = ClockBuilder::new(2);
        read.observe(0, 3);
        let mut c = Coordinator::new(8, Epoch(1), vec![vec![], vec![]], checks, read, |s| {
            s as u32
        });
        let validate = c.start();
        assert_eq!(
            to(&validate),
            vec![(0, Round::Validate, vec![0]), (1, Round::Validate, vec![1])]
        );
        let done = answer_all(&mut c, validate);
        assert_eq!(done.outcome.unwrap().unwrap().entries(), &[3, 0]);
        assert_eq!(c.holding().count(), 0);
    }
}
