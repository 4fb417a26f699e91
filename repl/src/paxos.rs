//! The sans-IO Multi-Paxos replica of one stream.
//!
//! Safety rests on the two acceptor rules of Paxos, applied per slot with
//! one promise for all slots (Multi-Paxos): an acceptor never accepts below
//! the highest ballot it promised, and a new leader proposes, in every slot
//! from its first unchosen one, the value accepted with the highest ballot
//! among a majority of promises (or a no-op). Everything an acceptor
//! promises or accepts is handed to the caller to persist before the reply
//! that depends on it is sent ([`Ready`]).
//!
//! Ballots are `(number, node)`: a new leader takes the next number, so every
//! entry and message says which leadership it belongs to (DESIGN.md §1.4).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod bytes;
mod message;

pub use message::{Ballot, Envelope, Message, NodeId, Slot, Value};

/// A change to a replica's acceptor state, to be made durable before the
/// messages returned with it are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// The highest ballot promised.
    Promised(Ballot),
    /// An entry accepted in a ballot.
    Accepted(Slot, Ballot, Value),
}

/// A replica's durable acceptor state: what [`Persist`] records build up,
/// and what a restarted replica starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The highest ballot promised.
    pub promised: Ballot,
    /// Accepted entries by slot, with the ballot they were accepted in.
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Entries known to be chosen, if the caller keeps them (optional:
    /// chosen entries are learned again from the others after a restart,
    /// but a replica that keeps them can serve them to laggards).
    pub chosen: BTreeMap<Slot, Value>,
}

impl HardState {
    /// Applies one persisted change.
    pub fn apply(&mut self, p: Persist) {
        match p {
            Persist::Promised(b) => self.promised = self.promised.max(b),
            Persist::Accepted(slot, b, v) => {
                self.accepted.insert(slot, (b, v));
            }
        }
    }
}

/// What the caller must do after stepping, ticking or proposing.
#[derive(Debug, Default)]
pub struct Ready {
    /// Persist these first (in order)...
    pub persist: Vec<Persist>,
    /// ...then send these.
    pub messages: Vec<Envelope>,
    /// Entries newly known to be chosen, in slot order with no gaps.
    pub chosen: Vec<(Slot, Value)>,
    /// Replicas that asked for entries this one no longer has (replica,
    /// first slot asked for): they need a snapshot.
    pub snapshot_needed: Vec<(NodeId, Slot)>,
    /// Messages that promise nothing persisted, which may be sent before
    /// `persist` is done: answers to a leader's Accepts that acknowledge
    /// no entry, which keep its lease (see
    /// [`Replica::quorum_acked_tick`]) from waiting for this replica's
    /// disk.
    pub early: Vec<Envelope>,
    /// Two different values were reported chosen for one slot: this
    /// replica must stop (it keeps the first).
    pub conflict: Option<String>,
}

/// A replica's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// The replicas that vote (this one included, unless it is a learner).
    pub voters: Vec<NodeId>,
    /// Replicas that receive every entry but never vote (nor lead,
    /// unless they are `standby`).
    pub learners: Vec<NodeId>,
    /// This replica, a learner, may lead: it stands for election and
    /// proposes (phases 1 and 2 with a majority of the voters, none of
    /// which it is), but never votes. Mako's learner in the leader's
    /// datacenter, which takes over first when the leader fails, so
    /// that the leadership stays near the clients. It stands only once it
    /// has followed a leader (so a group starting up elects a voter), and
    /// only while it has learned everything that leader said was chosen.
    /// Ignored for a voter.
    pub standby: bool,
    /// Ticks without hearing from a leader before standing for election:
    /// a random value between this and twice this, so that candidates
    /// rarely collide.
    pub election_ticks: u32,
    /// A leader sends a heartbeat (and re-sends unchosen entries) every
    /// this many ticks.
    pub heartbeat_ticks: u32,
    /// At most this many entries are sent in one Accept or Chosen message.
    pub max_batch: usize,
    /// A voter that heard from its leader within this many ticks neither
    /// promises another candidate nor stands itself, and neither does a
    /// replica within this many ticks of starting. A leader's lease
    /// (serving reads without asking the others) rests on this: it lasts
    /// less than this from the sending of the Accepts a majority answered.
    pub stick_ticks: u32,
    /// Seeds the election-timer randomness (time and randomness are
    /// injected, so runs are reproducible).
    pub seed: u64,
    /// Applied slots kept for replicas that lag behind: a replica
    /// forgets what it has applied durably once it is this far behind,
    /// even if another replica has not caught up with it (that one then
    /// gets a snapshot). Bounds the log while a replica is down.
    pub retain: u64,
}

impl Config {
    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn is_voter(&self) -> bool {
        self.voters.contains(&self.id)
    }

    /// This replica may lead: a voter, or a standby learner.
    fn may_lead(&self) -> bool {
        self.is_voter() || (self.standby && self.learners.contains(&self.id))
    }
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotLeader {
    /// Another replica leads (as far as this one knows): propose there.
    LeaderIs(NodeId),
    /// No leader is known right now: retry later.
    Unknown,
}

/// A promise (or a standby learner's own report): what the replica had
/// accepted, and where its log starts.
type Promised = (Vec<(Slot, Ballot, Value)>, Slot);

/// How many times a standby learner stands on its own before it leaves
/// the election to the voters (until it hears a leader again).
pub const STANDBY_TRIES: u32 = 3;

/// When a replica stands for election (see [`Replica::set_candidacy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidacy {
    /// On its own: a voter whenever its timer fires; a standby learner
    /// a few times per leader it followed, while up to date with it.
    Own,
    /// Whenever its timer fires (standby learners too, even behind): its
    /// node leads the first stream.
    Led,
    /// Never.
    Off,
}

enum Role {
    Follower,
    Candidate {
        /// Promises so far, by replica (and a standby learner's own
        /// report): what each had accepted, and where its log starts.
        promises: BTreeMap<NodeId, Promised>,
    },
    Leader {
        /// The first slot this leadership proposed anew: everything below
        /// it was recovered from earlier leaderships.
        takeover: Slot,
        /// Voters that accepted each unchosen slot of this ballot.
        acks: BTreeMap<Slot, BTreeSet<NodeId>>,
        /// Entries proposed since the last Accept was sent.
        unsent: Vec<(Slot, Value)>,
        /// Ticks since the last heartbeat.
        since_heartbeat: u32,
    },
}

/// One replica of one stream.
pub struct Replica {
    cfg: Config,
    /// The highest ballot promised (durable).
    promised: Ballot,
    /// Accepted entries (durable).
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Entries known chosen (volatile: learned again after a restart).
    chosen: BTreeMap<Slot, Value>,
    /// Every slot below this is chosen.
    first_unchosen: Slot,
    /// Chosen entries below this were handed out in a Ready.
    delivered: Slot,
    /// The next slot a leader assigns.
    next_slot: Slot,
    role: Role,
    /// The leader this replica follows, if any.
    leader: Option<NodeId>,
    /// Ticks since the leader (or a candidate) was last heard from.
    idle_ticks: u32,
    /// The current election timeout.
    timeout: u32,
    rng: u64,
    out: Ready,
    /// Every slot below this is applied and durable here (set by the
    /// caller; reported to the leader).
    durable: Slot,
    /// What each other replica last reported as durable (as leader).
    peer_durable: BTreeMap<NodeId, Slot>,
    /// The forgettable point last heard from a leader (as follower).
    forget_hint: Slot,
    /// Every slot below this is chosen and applied here, and its entry
    /// may be forgotten (compacted, or applied before a restart).
    log_start: Slot,
    /// Ticks so far.
    now: u64,
    /// When each voter last accepted something of this leader's ballot.
    heard: BTreeMap<NodeId, u64>,
    /// The latest send tick of this leader's Accepts each voter answered.
    acked: BTreeMap<NodeId, u64>,
    /// A Prepare that arrived while this replica had just started, to be
    /// answered once `stick_ticks` have passed: (candidate, ballot, from).
    deferred_prepare: Option<(NodeId, Ballot, Slot)>,
    /// When this replica stands for election.
    candidacy: Candidacy,
    /// The first unchosen slot the leaders heard from reported, once one
    /// was heard (a standby learner stands on its own only then, and not
    /// behind it).
    leader_chosen: Option<Slot>,
    /// Times this standby learner stood on its own since it last heard a
    /// leader.
    stood: u32,
}

impl Replica {
    /// A replica starting from `state` (empty for a new one).
    pub fn new(cfg: Config, state: HardState) -> Self {
        Self::restore(cfg, state, 1)
    }

    /// A replica starting from `state` whose caller has already applied
    /// (and made durable) every slot below `applied`: [`Ready::chosen`]
    /// starts there.
    pub fn restore(cfg: Config, state: HardState, applied: Slot) -> Self {
        let applied = applied.max(1);
        let rng = cfg.seed ^ (u64::from(cfg.id) << 32) ^ 0x9E37_79B9_7F4A_7C15;
        let last = |m: Option<&Slot>| m.map_or(0, |s| *s);
        let next_slot = (last(state.accepted.keys().next_back()))
            .max(last(state.chosen.keys().next_back()))
            .max(applied - 1)
            + 1;
        let mut first_unchosen = applied;
        while state.chosen.contains_key(&first_unchosen) {
            first_unchosen += 1;
        }
        let mut r = Replica {
            promised: state.promised,
            accepted: state.accepted,
            chosen: state.chosen,
            first_unchosen,
            delivered: applied,
            next_slot,
            role: Role::Follower,
            leader: None,
            idle_ticks: 0,
            timeout: 0,
            rng,
            out: Ready::default(),
            durable: applied,
            peer_durable: BTreeMap::new(),
            forget_hint: 1,
            log_start: applied,
            now: 0,
            heard: BTreeMap::new(),
            acked: BTreeMap::new(),
            deferred_prepare: None,
            candidacy: Candidacy::Own,
            leader_chosen: None,
            stood: 0,
            cfg,
        };
        r.reset_timeout();
        r
    }

    /// The caller has applied every slot below `slot` and made it durable.
    pub fn set_durable(&mut self, slot: Slot) {
        self.durable = self.durable.max(slot.min(self.delivered));
    }

    /// The slot below which every replica has applied everything durably,
    /// so that entries below it are needed by nobody, not even a replica
    /// that leads later: as the leader computes it from every replica's
    /// reports (1 while some replica has not reported), or as a follower
    /// last heard it from a leader. Compacting only below this point is
    /// what keeps a later leader's phase 1 complete.
    ///
    /// Beyond that, a replica forgets what it applied durably more than
    /// `retain` slots ago: a replica that far behind is sent a snapshot
    /// instead. That is safe because a promise says where its log starts
    /// (see [`Message::Promise`]): a candidate missing slots that a
    /// promiser forgot does not lead before it has caught up.
    pub fn forgettable(&self) -> Slot {
        self.forgettable_by_all()
            .max(self.durable.saturating_sub(self.cfg.retain))
            .min(self.durable)
    }

    /// What every replica has made durable, as far as this one knows
    /// (what a leader tells followers they may forget).
    fn forgettable_by_all(&self) -> Slot {
        if !self.is_leader() {
            return self.forget_hint.min(self.durable);
        }
        let mut low = self.durable;
        for n in self.peers() {
            low = low.min(self.peer_durable.get(&n).copied().unwrap_or(1));
        }
        low
    }

    /// Forgets chosen and accepted entries below `slot` (which the caller
    /// has applied): a replica that needs them again can no longer be
    /// served from this one's log.
    pub fn compact(&mut self, slot: Slot) {
        let slot = slot.min(self.delivered).min(self.durable);
        // The chosen value of the slot before is kept: a new leader looks
        // at it (see `maybe_lead`).
        self.chosen = self.chosen.split_off(&slot.saturating_sub(1));
        self.accepted = self.accepted.split_off(&slot);
        self.log_start = self.log_start.max(slot);
    }

    /// The caller has installed a snapshot of the applied state holding
    /// every slot below `slot` (durably): this replica continues from
    /// there. `before` is the value chosen for the slot before, if known
    /// (the caller keeps it with the snapshot: a new leader looks at it).
    /// A snapshot behind what is already applied changes nothing.
    pub fn install_snapshot(&mut self, slot: Slot, before: Option<Value>) {
        if slot <= self.delivered {
            return;
        }
        self.chosen = self.chosen.split_off(&(slot - 1));
        if let Some(v) = before {
            self.chosen.insert(slot - 1, v);
        }
        self.accepted = self.accepted.split_off(&slot);
        self.first_unchosen = self.first_unchosen.max(slot);
        while self.chosen.contains_key(&self.first_unchosen) {
            self.first_unchosen += 1;
        }
        self.delivered = slot;
        self.durable = self.durable.max(slot);
        self.log_start = self.log_start.max(slot);
        self.next_slot = self.next_slot.max(slot);
    }

    /// Every slot below this is applied here and may be forgotten.
    pub fn log_start(&self) -> Slot {
        self.log_start
    }

    /// True once this replica leads and has every slot of earlier
    /// leaderships chosen: from then on what it has applied is the whole
    /// history, and it may serve.
    pub fn ready_to_serve(&self) -> bool {
        match self.role {
            Role::Leader { takeover, .. } => self.first_unchosen >= takeover,
            _ => false,
        }
    }

    /// Whether this replica stands for election when its election timer
    /// fires. A node running several streams of one group lets only its
    /// first stream stand on its own (the default, until this is
    /// called): the others stand while the node leads the first, so that
    /// one node leads them all. On, a replica stands whenever its timer
    /// fires, a standby learner too, even behind on this stream (it
    /// recovers what it lacks through phases 1 and 2 before it serves;
    /// the voters, without candidacy here, would not stand for it). Off,
    /// the replica still votes, and stops leading if it did.
    pub fn set_candidacy(&mut self, on: bool) {
        self.candidacy = if on { Candidacy::Led } else { Candidacy::Off };
        // Turned off, a leader (or candidate) steps down, so that the node
        // now leading the first stream can take this one over.
        if !on && !matches!(self.role, Role::Follower) {
            self.step_down(None);
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The value chosen for `slot`, if this replica knows it.
    pub fn chosen_value(&self, slot: Slot) -> Option<&Value> {
        self.chosen.get(&slot)
    }

    /// The value this replica accepted for `slot`, if it holds one.
    pub fn accepted(&self, slot: Slot) -> Option<&Value> {
        self.accepted.get(&slot).map(|(_, v)| v)
    }

    /// True for the group's replicas other than this one (voters and
    /// learners).
    pub fn is_peer(&self, id: NodeId) -> bool {
        id != self.cfg.id && (self.cfg.voters.contains(&id) || self.cfg.learners.contains(&id))
    }

    /// The voting replicas.
    pub fn voters(&self) -> &[NodeId] {
        &self.cfg.voters
    }

    /// True while this replica stands for election.
    pub fn is_candidate(&self) -> bool {
        matches!(self.role, Role::Candidate { .. })
    }

    /// A leader that a majority of voters (itself included, unless it is
    /// a standby learner) answered within the election timeout: none of them can have promised
    /// another leader since.
    fn has_lease(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        let recent = self
            .cfg
            .voters
            .iter()
            .filter(|&&v| v != self.cfg.id)
            .filter(|v| {
                self.heard
                    .get(v)
                    .is_some_and(|&t| self.now - t <= u64::from(self.cfg.election_ticks))
            })
            .count();
        // A standby learner leading counts only the voters.
        recent + usize::from(self.cfg.is_voter()) >= self.cfg.majority()
    }

    /// As leader: the latest tick such that a majority of voters (this
    /// one included, unless it is a standby learner) answered Accepts sent at or after it. None when not
    /// leading, or before a majority answered.
    pub fn quorum_acked_tick(&self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let mut ticks: Vec<u64> = self
            .cfg
            .voters
            .iter()
            .filter_map(|v| {
                if *v == self.cfg.id {
                    Some(self.now)
                } else {
                    self.acked.get(v).copied()
                }
            })
            .collect();
        ticks.sort_unstable_by(|a, b| b.cmp(a));
        ticks.get(self.cfg.majority() - 1).copied()
    }

    /// Ticks so far.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// True while this replica leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<NodeId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else {
            self.leader
        }
    }

    /// The ballot promised.
    pub fn ballot(&self) -> Ballot {
        self.promised
    }

    /// Every slot below this is known chosen here.
    pub fn first_unchosen(&self) -> Slot {
        self.first_unchosen
    }

    /// Takes what the caller must persist, send and apply.
    pub fn ready(&mut self) -> Ready {
        let from = self.delivered;
        let upto = self.first_unchosen;
        for slot in from..upto {
            let v = self.chosen[&slot].clone();
            self.out.chosen.push((slot, v));
        }
        self.delivered = upto;
        std::mem::take(&mut self.out)
    }

    /// Proposes a batch; it is sent with the next tick (batched phase 2) or
    /// at once when `max_batch` entries are waiting. Returns its slot.
    pub fn propose(&mut self, batch: impl Into<Arc<[u8]>>) -> Result<Slot, NotLeader> {
        if !self.is_leader() {
            return Err(self.leader.map_or(NotLeader::Unknown, NotLeader::LeaderIs));
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let ballot = self.promised;
        let first = matches!(self.role, Role::Leader { takeover, .. } if takeover == slot);
        let value = Value::Batch {
            origin: ballot,
            first,
            data: batch.into(),
        };
        self.accept_own(slot, value.clone());
        let full = match &mut self.role {
            Role::Leader { unsent, .. } => {
                unsent.push((slot, value));
                unsent.len() >= self.cfg.max_batch
            }
            _ => unreachable!("checked above"),
        };
        debug_assert_eq!(ballot, self.promised);
        if full {
            self.flush();
        }
        Ok(slot)
    }

    /// Sends the entries proposed since the last Accept now, rather than
    /// with the next tick (a caller that batches proposals itself, e.g.
    /// everything that arrived during one disk write, calls this after
    /// each batch).
    pub fn flush_now(&mut self) {
        self.flush();
    }

    /// Advances time by one tick: heartbeats and batching for a leader,
    /// the election timer for the others.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.now >= u64::from(self.cfg.stick_ticks)
            && let Some((from, ballot, slot)) = self.deferred_prepare.take()
        {
            self.on_prepare(from, ballot, slot);
        }
        match &mut self.role {
            Role::Leader {
                since_heartbeat, ..
            } => {
                *since_heartbeat += 1;
                if *since_heartbeat >= self.cfg.heartbeat_ticks {
                    *since_heartbeat = 0;
                    self.heartbeat();
                } else {
                    self.flush();
                }
            }
            Role::Follower | Role::Candidate { .. } => {
                self.idle_ticks += 1;
                if self.idle_ticks >= self.timeout.max(self.cfg.stick_ticks) {
                    if self.may_stand() {
                        self.stand();
                    } else if self.is_candidate() {
                        // A candidacy that failed, not to be repeated.
                        self.step_down(None);
                    }
                }
            }
        }
    }

    /// Handles a message. Messages from replicas outside the group are
    /// ignored.
    pub fn step(&mut self, from: NodeId, msg: Message) {
        if from == self.cfg.id
            || !(self.cfg.voters.contains(&from) || self.cfg.learners.contains(&from))
        {
            return;
        }
        if !msg.plausible() {
            tracing::warn!(from, "dropped a message with an implausible ballot or slot");
            return;
        }
        match msg {
            Message::Prepare { ballot, from: slot } => self.on_prepare(from, ballot, slot),
            Message::Promise {
                ballot,
                accepted,
                log_start,
            } => self.on_promise(from, ballot, accepted, log_start),
            Message::Reject { ballot, promised } => self.on_reject(ballot, promised),
            Message::Accept {
                ballot,
                entries,
                chosen,
                forget,
                sent,
            } => {
                if ballot >= self.promised {
                    self.forget_hint = self.forget_hint.max(forget);
                    self.leader_chosen = self.leader_chosen.max(Some(chosen));
                    self.stood = 0;
                }
                self.on_accept(from, ballot, entries, chosen, sent)
            }
            Message::Accepted {
                ballot,
                slots,
                durable,
                echo,
            } => self.on_accepted(from, ballot, slots, durable, echo),
            Message::CatchUp { from: slot } => self.on_catch_up(from, slot),
            Message::Chosen { entries } => {
                for (slot, v) in entries {
                    self.learn(slot, v);
                }
            }
            Message::Raft(_)
            | Message::Rpc(_)
            | Message::Snapshot { .. }
            | Message::SnapshotAck { .. }
            | Message::Stream { .. } => {}
        }
    }

    /// Whether this replica stands when its election timer fires (see
    /// [`Candidacy`]). On its own, a standby learner stands only once it
    /// has followed a leader, only if it learned everything that leader
    /// said was chosen (one behind leaves it to the voters: it would
    /// recover the missing slots through phase 2 before serving), and at
    /// most [`STANDBY_TRIES`] times until it hears a leader again. A try
    /// may fail because voters that heard the old leader a little later
    /// still stick to it; one cut off from a majority of the voters must
    /// not keep outbidding the voters' own candidates.
    fn may_stand(&self) -> bool {
        match self.candidacy {
            Candidacy::Off => false,
            Candidacy::Led => self.cfg.may_lead(),
            Candidacy::Own => {
                self.cfg.is_voter()
                    || (self.cfg.may_lead()
                        && self.stood < STANDBY_TRIES
                        && self.leader_chosen.is_some_and(|c| self.first_unchosen >= c))
            }
        }
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.out.messages.push(Envelope {
            from: self.cfg.id,
            to,
            msg,
        });
    }

    fn peers(&self) -> Vec<NodeId> {
        self.cfg
            .voters
            .iter()
            .chain(&self.cfg.learners)
            .copied()
            .filter(|&n| n != self.cfg.id)
            .collect()
    }

    fn reset_timeout(&mut self) {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let base = self.cfg.election_ticks.max(1);
        self.timeout = base + (r % u64::from(base)) as u32;
        self.idle_ticks = 0;
    }

    fn promise(&mut self, ballot: Ballot) {
        if ballot > self.promised {
            self.promised = ballot;
            self.out.persist.push(Persist::Promised(ballot));
        }
    }

    fn accept_own(&mut self, slot: Slot, value: Value) {
        let ballot = self.promised;
        self.accepted.insert(slot, (ballot, value.clone()));
        self.out
            .persist
            .push(Persist::Accepted(slot, ballot, value.clone()));
        // A standby learner's own acceptance counts for nothing: it
        // keeps the entry only to send it again.
        if let Role::Leader { acks, .. } = &mut self.role
            && self.cfg.voters.contains(&self.cfg.id)
        {
            acks.entry(slot).or_default().insert(self.cfg.id);
        }
        self.check_chosen(slot);
    }

    /// Records that `slot` holds `value` for good.
    fn learn(&mut self, slot: Slot, value: Value) {
        if slot < self.first_unchosen {
            return;
        }
        if let Some(v) = self.chosen.get(&slot) {
            // Never between honest replicas running this code: a bug, a
            // damaged disk or a forged message. The caller stops.
            if *v != value && self.out.conflict.is_none() {
                self.out.conflict = Some(format!(
                    "slot {slot} is known chosen with one value and reported chosen with another"
                ));
            }
            return;
        }
        self.chosen.insert(slot, value);
        while self.chosen.contains_key(&self.first_unchosen) {
            self.first_unchosen += 1;
        }
        self.next_slot = self.next_slot.max(slot + 1);
    }

    fn step_down(&mut self, leader: Option<NodeId>) {
        self.role = Role::Follower;
        self.leader = leader;
        // A lease is this leadership's (or its re-standing's, see
        // `on_reject`): it ends here.
        self.acked.clear();
        self.reset_timeout();
    }

    /// The election timer fired: phase 1 with the next ballot number.
    fn stand(&mut self) {
        // Ballots come from authenticated peers (repl::net::ClusterKey),
        // but a promise to the largest number must not make this replica
        // panic, or wrap to a ballot below those already promised.
        let Some(number) = self.promised.number.checked_add(1) else {
            tracing::error!(
                promised = ?self.promised,
                "cannot stand for election: the promised ballot's number is at its maximum"
            );
            self.reset_timeout();
            return;
        };
        let ballot = Ballot {
            number,
            node: self.cfg.id,
        };
        self.promise(ballot);
        self.leader = None;
        self.reset_timeout();
        if !self.cfg.is_voter() {
            self.stood += 1;
        }
        let from = self.first_unchosen;
        let own = self.accepted_from(from);
        let mut promises = BTreeMap::new();
        // A standby learner's own report is no promise (it is no
        // acceptor: see `maybe_lead`), but what it accepted is still
        // taken over.
        promises.insert(self.cfg.id, (own, self.log_start));
        self.role = Role::Candidate { promises };
        for n in self.cfg.voters.clone() {
            if n != self.cfg.id {
                self.send(n, Message::Prepare { ballot, from });
            }
        }
        self.maybe_lead();
    }

    fn accepted_from(&self, from: Slot) -> Vec<(Slot, Ballot, Value)> {
        self.accepted
            .range(from..)
            .map(|(&s, (b, v))| (s, *b, v.clone()))
            .collect()
    }

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, slot: Slot) {
        if !self.cfg.is_voter() {
            return;
        }
        // A leader that a majority still answers ignores candidates (a
        // replica back from a partition, say): they cannot win, and
        // stepping down for them would only interrupt service.
        if ballot > self.promised && self.has_lease() {
            return;
        }
        // A follower that heard from its leader within the election
        // timeout ignores other candidates: a replica that merely missed
        // some heartbeats (or has just restarted) cannot depose a leader
        // that a majority still hears. Ignoring a message is always safe.
        if ballot > self.promised
            && matches!(self.role, Role::Follower)
            && self.leader.is_some_and(|l| l != from)
            && self.idle_ticks < self.cfg.stick_ticks
        {
            return;
        }
        // Nor does a replica that has just started: before it stopped, it
        // may have answered a leader whose lease still runs. It answers
        // the latest such candidate once that time is over.
        if ballot > self.promised && self.now < u64::from(self.cfg.stick_ticks) {
            if self.deferred_prepare.is_none_or(|(_, b, _)| b < ballot) {
                self.deferred_prepare = Some((from, ballot, slot));
            }
            return;
        }
        if ballot < self.promised {
            let promised = self.promised;
            self.send(from, Message::Reject { ballot, promised });
            return;
        }
        if ballot > self.promised {
            self.promise(ballot);
            // A leader standing again for a later ballot stays this
            // replica's leader: it still promises no one else within the
            // election timeout, so the leader's lease holds across.
            let same = self.leader.filter(|&l| l == from);
            self.step_down(same);
        }
        self.idle_ticks = 0;
        let accepted = self.accepted_from(slot);
        let log_start = self.log_start;
        self.send(
            from,
            Message::Promise {
                ballot,
                accepted,
                log_start,
            },
        );
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Value)>,
        log_start: Slot,
    ) {
        if ballot != self.promised || !self.cfg.voters.contains(&from) {
            return; // an old candidacy, or not a voter
        }
        if let Role::Candidate { promises } = &mut self.role {
            promises.insert(from, (accepted, log_start));
            self.maybe_lead();
        }
    }

    /// With a majority of promises, takes over: every slot from the first
    /// unchosen one to the highest reported gets the value accepted with
    /// the highest ballot, or a no-op, re-accepted in this ballot.
    fn maybe_lead(&mut self) {
        let Role::Candidate { promises } = &self.role else {
            return;
        };
        // Only voters' promises count. A standby learner's own report
        // adds values to take over, which is safe: each is what the
        // leader of its ballot proposed, so a value chosen in an earlier
        // ballot is still the one with the highest ballot (the majority
        // reports it, or a later ballot's, which proposed the same). And
        // it keeps what the learner itself proposed while it led (which
        // it has in memory, and later proposals may depend on), as a
        // voter's own promise does.
        let voted = promises
            .keys()
            .filter(|n| self.cfg.voters.contains(n))
            .count();
        if voted < self.cfg.majority() {
            return;
        }
        // A promiser that forgot slots this candidate has not learned
        // chosen reports nothing about them: their values may be chosen,
        // so filling them with no-ops could lose them. Such a candidate
        // catches up first (from that promiser's log, or a snapshot) and
        // stands again later.
        if let Some((&ahead, &(_, start))) = promises.iter().max_by_key(|(_, (_, s))| *s)
            && start > self.first_unchosen
        {
            let from = self.first_unchosen;
            self.step_down(None);
            self.send(ahead, Message::CatchUp { from });
            return;
        }
        let mut best: BTreeMap<Slot, (Ballot, Value)> = BTreeMap::new();
        for (slot, b, v) in promises.values().flat_map(|(a, _)| a) {
            match best.get(slot) {
                Some((old, _)) if old >= b => {}
                _ => {
                    best.insert(*slot, (*b, v.clone()));
                }
            }
        }
        let from = self.first_unchosen;
        let last = best
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(from.saturating_sub(1));
        self.role = Role::Leader {
            takeover: last + 1,
            acks: BTreeMap::new(),
            unsent: Vec::new(),
            since_heartbeat: 0,
        };
        self.leader = Some(self.cfg.id);
        self.next_slot = last + 1;
        // Where the slot before each one came from, while known.
        let mut before: Option<Option<Ballot>> = self.chosen.get(&(from - 1)).map(Value::origin);
        for slot in from..=last {
            let value = match self.chosen.get(&slot) {
                Some(v) => v.clone(),
                None => {
                    let v = best.remove(&slot).map_or(Value::Noop, |(_, v)| v);
                    match &v {
                        // A batch whose leadership's previous batch (in
                        // the slot before) did not make it: it was not
                        // chosen in its own leadership (acceptors take
                        // slots in order, so a majority would hold the
                        // previous one, which would then be chosen), nor
                        // since (every leader applies this rule). It may
                        // depend on the lost batch, so it is dropped.
                        Value::Batch {
                            origin,
                            first: false,
                            ..
                        } if before.is_some_and(|b| b != Some(*origin)) => Value::Noop,
                        _ => v,
                    }
                }
            };
            before = Some(value.origin());
            self.accept_own(slot, value);
        }
        // The heartbeat carries them all.
        self.heartbeat();
    }

    fn on_reject(&mut self, ballot: Ballot, promised: Ballot) {
        if ballot == self.promised && promised > self.promised {
            // Someone promised a later leadership. A leader that a
            // majority still answers takes a yet later ballot at once (a
            // replica back from a partition had stood in vain and now
            // rejects this leader's ballot); otherwise it follows, and
            // stands above it next time.
            let keep = self.has_lease();
            self.promise(promised);
            if keep {
                self.stand();
            } else {
                self.step_down(None);
            }
        }
    }

    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        entries: Vec<(Slot, Value)>,
        chosen: Slot,
        sent: u64,
    ) {
        if ballot < self.promised {
            let promised = self.promised;
            self.send(from, Message::Reject { ballot, promised });
            return;
        }
        if ballot > self.promised || !matches!(self.role, Role::Follower) {
            self.promise(ballot);
            self.step_down(Some(from));
        }
        self.leader = Some(from);
        self.idle_ticks = 0;
        // Entries are accepted in slot order without gaps: a slot only
        // once every unchosen slot below it is accepted in this ballot.
        // So when a slot is chosen, a majority holds every earlier slot of
        // its leadership, and a later leader recovers them rather than
        // filling them with no-ops: a batch is never applied without the
        // batches before it (whose transactions it may have read from).
        // Entries after a gap (a lost message) wait for the leader to send
        // them again with its next heartbeat.
        let mut entries = entries;
        entries.sort_by_key(|(slot, _)| *slot);
        let mut contiguous = self.first_unchosen;
        let mut slots = Vec::with_capacity(entries.len());
        for (slot, value) in entries {
            if slot < self.first_unchosen {
                slots.push(slot); // chosen already: the value is the same
                continue;
            }
            while self
                .accepted
                .get(&contiguous)
                .is_some_and(|(b, _)| *b == ballot)
                || self.chosen.contains_key(&contiguous)
            {
                contiguous += 1;
            }
            if slot > contiguous {
                break; // a gap
            }
            self.accepted.insert(slot, (ballot, value.clone()));
            self.out
                .persist
                .push(Persist::Accepted(slot, ballot, value));
            slots.push(slot);
        }
        // Answered at once with no entries (a heartbeat's answer, or the
        // lease's part of one with entries), so the leader knows it still
        // has a majority, and what this replica has made durable; then,
        // once persisted, with the entries accepted.
        {
            let durable = self.durable;
            let ack = |slots| Message::Accepted {
                ballot,
                slots,
                durable,
                echo: sent,
            };
            self.out.early.push(Envelope {
                from: self.cfg.id,
                to: from,
                msg: ack(Vec::new()),
            });
            if !slots.is_empty() {
                self.send(from, ack(slots));
            }
        }
        // Slots below `chosen` are chosen; the value this replica accepted
        // in the leader's own ballot is the one, anything else is not known.
        let mut missing = false;
        for slot in self.first_unchosen..chosen {
            match self.accepted.get(&slot) {
                Some((b, v)) if *b == ballot => {
                    let v = v.clone();
                    self.learn(slot, v);
                }
                _ => {
                    missing = true;
                    break;
                }
            }
        }
        if missing {
            let from_slot = self.first_unchosen;
            self.send(from, Message::CatchUp { from: from_slot });
        }
    }

    fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slots: Vec<Slot>,
        durable: Slot,
        echo: u64,
    ) {
        if ballot != self.promised {
            return;
        }
        let Role::Leader { acks, .. } = &mut self.role else {
            return;
        };
        self.peer_durable.insert(from, durable);
        self.heard.insert(from, self.now);
        if !self.cfg.voters.contains(&from) {
            return; // a learner: it never counts toward a majority
        }
        // An echo from the future is a confused or forged peer's.
        if echo <= self.now {
            let t = self.acked.entry(from).or_insert(echo);
            *t = (*t).max(echo);
        }
        for &slot in &slots {
            if slot >= self.first_unchosen {
                acks.entry(slot).or_default().insert(from);
            }
        }
        for slot in slots {
            self.check_chosen(slot);
        }
    }

    fn check_chosen(&mut self, slot: Slot) {
        let majority = self.cfg.majority();
        let Role::Leader { acks, .. } = &mut self.role else {
            return;
        };
        if acks.get(&slot).is_some_and(|a| a.len() >= majority) {
            acks.remove(&slot);
            // Acks only count for slots this leader accepted; any other
            // (a confused or forged peer) is ignored.
            if let Some((_, value)) = self.accepted.get(&slot).cloned() {
                self.learn(slot, value);
            }
        }
    }

    fn on_catch_up(&mut self, from: NodeId, slot: Slot) {
        if slot < self.first_unchosen && !self.chosen.contains_key(&slot) {
            // Forgotten (compacted, or from before a restart): the
            // replica needs a snapshot of the applied state instead.
            self.out.snapshot_needed.push((from, slot));
            return;
        }
        let entries: Vec<(Slot, Value)> = self
            .chosen
            .range(slot..)
            .take(self.cfg.max_batch)
            .map(|(&s, v)| (s, v.clone()))
            .collect();
        if !entries.is_empty() {
            self.send(from, Message::Chosen { entries });
        }
    }

    /// Sends the entries proposed since the last Accept.
    fn flush(&mut self) {
        let Role::Leader { unsent, .. } = &mut self.role else {
            return;
        };
        if unsent.is_empty() {
            return;
        }
        let entries = std::mem::take(unsent);
        self.broadcast_accept(entries);
    }

    /// A heartbeat carries every entry not yet chosen, so that lost
    /// Accepts are made good.
    fn heartbeat(&mut self) {
        if let Role::Leader { unsent, .. } = &mut self.role {
            unsent.clear();
        }
        let entries: Vec<(Slot, Value)> = self
            .accepted
            .range(self.first_unchosen..)
            .take(self.cfg.max_batch)
            .map(|(&s, (_, v))| (s, v.clone()))
            .collect();
        self.broadcast_accept(entries);
    }

    fn broadcast_accept(&mut self, entries: Vec<(Slot, Value)>) {
        let ballot = self.promised;
        let chosen = self.first_unchosen;
        let forget = self.forgettable_by_all();
        let sent = self.now;
        for n in self.peers() {
            self.send(
                n,
                Message::Accept {
                    ballot,
                    entries: entries.clone(),
                    chosen,
                    forget,
                    sent,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
