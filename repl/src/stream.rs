//! A stream: one [`Replica`] driven by a thread, with real time, a disk
//! and a network.
//!
//! The thread takes events (messages from peers, proposals from the
//! local node), steps the replica, and after each round does what
//! [`Replica::ready`] asks in order: persists through [`Storage`] (synced
//! before any message that promises it leaves), sends through a
//! [`Transport`], and hands chosen entries, in slot order, to the
//! [`Machine`] that applies them. Everything that arrives while one
//! round's disk write runs forms the next round: that is the group commit
//! of a replicated node.
//!
//! Proposals carry a token for the proposer (the node's own copy of the
//! batch): when a slot this replica proposed is chosen with its value, the
//! machine gets the token back ([`Chosen::Own`]) instead of the bytes.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::Transport;
use crate::paxos::{
    Ballot, Envelope, HardState, Message, NodeId, NotLeader, Persist, Replica, Slot, Value,
};
use crate::snapshot::{self, Part, Received, Receiving, SnapshotSource};

/// What a stream's thread is told.
pub enum Event<T> {
    /// A message from a peer.
    Message(NodeId, Message),
    /// Replicate this batch; `T` is the proposer's own copy.
    Propose(Vec<u8>, T),
    /// Stand for election when the timer fires, or not (see
    /// [`Replica::set_candidacy`]).
    Candidacy(bool),
    /// Stop the thread.
    Stop,
}

/// A chosen slot, as the machine sees it.
pub enum Chosen<T> {
    /// A batch this replica proposed, chosen as proposed.
    Own(T),
    /// A batch proposed by another replica (or by this one in an earlier
    /// life).
    Other(Arc<[u8]>),
    /// A hole filled by a new leader.
    Noop,
}

/// Where a stream's acceptor state lives (durably).
pub trait Storage: Send {
    /// Makes `records` durable (synced unless the node runs without
    /// syncs) and records `chosen` entries (need not be synced: chosen
    /// entries can be learned again).
    fn persist(&mut self, records: &[Record]) -> Result<(), String>;

    /// Drops every record below `slot`.
    fn forget(&mut self, slot: Slot) -> Result<(), String>;
}

/// One durable record of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The highest ballot promised.
    Promised(Ballot),
    /// A slot accepted in a ballot (must be synced before replying).
    Accepted(Slot, Ballot, Value),
    /// A slot known chosen (may be written without a sync).
    Chosen(Slot, Value),
    /// A slot known chosen with the value this replica accepted for it
    /// (which its `Accepted` record holds): no need to write it twice.
    ChosenAsAccepted(Slot),
}

impl Record {
    /// True for records a reply depends on.
    pub fn needs_sync(&self) -> bool {
        matches!(self, Record::Promised(_) | Record::Accepted(..))
    }

    /// Rebuilds a replica's hard state from its records. A slot known
    /// chosen is also reported as accepted in the highest ballot there is:
    /// its value is the only one any leader may propose for it.
    pub fn load(records: impl IntoIterator<Item = Record>) -> HardState {
        let mut st = HardState::default();
        let top = Ballot {
            number: u64::MAX,
            node: NodeId::MAX,
        };
        let mut as_accepted = Vec::new();
        for r in records {
            match r {
                Record::ChosenAsAccepted(slot) => as_accepted.push(slot),
                Record::Promised(b) => st.promised = st.promised.max(b),
                Record::Accepted(slot, b, v) => {
                    if !st.chosen.contains_key(&slot) {
                        st.accepted.insert(slot, (b, v));
                    }
                }
                Record::Chosen(slot, v) => {
                    st.accepted.insert(slot, (top, v.clone()));
                    st.chosen.insert(slot, v);
                }
            }
        }
        for slot in as_accepted {
            if st.chosen.contains_key(&slot) {
                continue;
            }
            // An acceptor only ever accepts the chosen value for a chosen
            // slot again, so the record found is the chosen value.
            if let Some((_, v)) = st.accepted.get(&slot).cloned() {
                st.accepted.insert(slot, (top, v.clone()));
                st.chosen.insert(slot, v);
            }
        }
        st
    }
}

/// What the stream applies chosen entries to.
pub trait Machine<T>: Send {
    /// Applies chosen slot `slot` (called in slot order, once each).
    fn apply(&mut self, slot: Slot, value: Chosen<T>);

    /// Whether a value another replica sends (to accept, or as chosen)
    /// is one this machine can apply. A value that is not is dropped
    /// with its message before the replica stores or acknowledges it: a
    /// value accepted and then found undecodable would stop the node at
    /// every restart. Checked on the stream's thread, so it must be cheap.
    fn check(&self, value: &[u8]) -> Result<(), String> {
        let _ = value;
        Ok(())
    }

    /// A proposal was not taken, or its slot was chosen with another
    /// value: this replica is not (or no longer) the leader.
    fn lost(&mut self, token: T, why: NotLeader);

    /// The stream's status changed.
    fn status(&mut self, status: &Status);

    /// Every slot below the returned one is applied and durable here.
    fn durable(&mut self) -> Slot;

    /// The stream has stopped for good (its disk failed): the node must
    /// stop too. Proposals still pending were reported through `lost`.
    fn failed(&mut self, error: &str);

    /// While this replica leads: it may serve until `until` (its lease),
    /// unless told a later time by then. `None`: it may not serve. Called
    /// often; a serving check must also compare the time, since the
    /// stream's thread may be held up (a slow disk) past the lease.
    fn lease(&mut self, until: Option<Instant>) {
        let _ = until;
    }

    /// A snapshot of the applied state (at the machine's durable point),
    /// for a replica that needs entries this one has forgotten; `None`
    /// if the machine cannot give one.
    fn snapshot(&mut self) -> Option<Box<dyn SnapshotSource>> {
        None
    }

    /// Stores part `seq` of the snapshot at `slot` (parts come in order
    /// from 0); with `last`, the snapshot is complete and the machine
    /// installs it or has the node restart from it.
    fn receive_snapshot(
        &mut self,
        slot: Slot,
        seq: u64,
        data: &[u8],
        last: bool,
    ) -> Result<Received, String> {
        let _ = (slot, seq, data, last);
        Err("this replica cannot install snapshots".into())
    }
}

/// A stream's state, as the node and its operators see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The leader, as far as this replica knows.
    pub leader: Option<NodeId>,
    /// This replica leads, has recovered every earlier leadership's slots
    /// and has heard from a majority recently: it may serve.
    pub serving: bool,
    /// The ballot promised (its number is the current leadership's).
    pub ballot: Ballot,
    /// Every slot below this is chosen here.
    pub chosen: Slot,
    /// This replica led and lost the leadership (its proposals may not be
    /// chosen).
    pub deposed: bool,
}

/// Timing of a stream.
#[derive(Clone, Debug)]
pub struct Timing {
    /// One tick of the replica.
    pub tick: Duration,
    /// A leader serves for this long after sending the Accepts a
    /// majority answered, and then stops until newer ones are answered
    /// (it may have been replaced). It must be shorter than the replicas'
    /// `stick_ticks` (see [`crate::paxos::Config`]).
    pub lease: Duration,
}

/// A leader that has not heard from a majority for this many leases gives
/// up on its outstanding proposals.
pub const GIVE_UP_LEASES: u32 = 3;

/// A running stream.
pub struct Stream<T> {
    tx: Sender<Event<T>>,
    status: Arc<Mutex<Status>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Stream<T> {
    /// Starts the thread of `replica`.
    pub fn start(
        replica: Replica,
        storage: Box<dyn Storage>,
        machine: Box<dyn Machine<T>>,
        transport: Arc<dyn Transport>,
        timing: Timing,
    ) -> Stream<T> {
        let (tx, rx) = channel();
        let status = Arc::new(Mutex::new(Status::default()));
        let driver = Driver {
            replica,
            storage,
            machine,
            transport,
            timing,
            own: BTreeMap::new(),
            status: status.clone(),
            last: Status::default(),
            led: false,
            isolated_since: None,
            deferred: Vec::new(),
            sending: BTreeMap::new(),
            receiving: None,
            ticks: std::collections::VecDeque::from([(0, Instant::now())]),
        };
        let thread = std::thread::Builder::new()
            .name("mako-stream".into())
            .spawn(move || driver.run(rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start the stream thread"))
            .ok();
        Stream { tx, status, thread }
    }

    /// Where to send events (messages from the transport, proposals).
    pub fn sender(&self) -> Sender<Event<T>> {
        self.tx.clone()
    }

    /// Proposes a batch; `token` comes back through the machine.
    pub fn propose(&self, batch: Vec<u8>, token: T) {
        let _ = self.tx.send(Event::Propose(batch, token));
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let _ = self.tx.send(Event::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T> Drop for Stream<T> {
    fn drop(&mut self) {
        let _ = self.tx.send(Event::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A snapshot on its way to a replica.
struct Sending {
    /// Where its acknowledgements go.
    acks: Sender<u64>,
    thread: JoinHandle<()>,
    /// Its slot: the log from there on is kept while it is under way and
    /// for a while after (the receiver restarts, then catches up from
    /// there).
    slot: Slot,
    /// When it finished, once it has.
    finished: Option<Instant>,
}

/// How long after a snapshot was sent the log from its slot on is kept.
const KEEP_AFTER_SNAPSHOT: Duration = Duration::from_secs(60);

struct Driver<T> {
    replica: Replica,
    storage: Box<dyn Storage>,
    machine: Box<dyn Machine<T>>,
    transport: Arc<dyn Transport>,
    timing: Timing,
    /// This replica's proposals not yet chosen: slot → (value, token).
    own: BTreeMap<Slot, (Arc<[u8]>, T)>,
    status: Arc<Mutex<Status>>,
    last: Status,
    /// This replica has led in this life.
    led: bool,
    /// Since when this leader has not heard from a majority.
    isolated_since: Option<Instant>,
    /// Proposals that arrived while this leader stood again for a later
    /// ballot: proposed once it leads again.
    deferred: Vec<(Arc<[u8]>, T)>,
    /// Snapshots being sent, by receiver.
    sending: BTreeMap<NodeId, Sending>,
    /// The snapshot being received.
    receiving: Option<Receiving>,
    /// When recent ticks of the replica began (its Accepts carry the tick
    /// they were sent in): the leader's lease runs from there.
    ticks: std::collections::VecDeque<(u64, Instant)>,
}

impl<T> Driver<T> {
    /// Checks every value `msg` carries with the machine (see
    /// [`Machine::check`]).
    fn check_values(&self, msg: &Message) -> Result<(), String> {
        let check = |v: &crate::paxos::Value| v.data().map_or(Ok(()), |d| self.machine.check(d));
        match msg {
            Message::Accept { entries, .. } | Message::Chosen { entries } => {
                entries.iter().try_for_each(|(_, v)| check(v))
            }
            Message::Promise { accepted, .. } => accepted.iter().try_for_each(|(_, _, v)| check(v)),
            _ => Ok(()),
        }
    }

    fn run(mut self, rx: Receiver<Event<T>>) {
        let mut next_tick = Instant::now() + self.timing.tick;
        let mut next_compact = Instant::now() + Duration::from_secs(1);
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut events: Vec<Event<T>> = first.into_iter().collect();
            while events.len() < 4096 {
                match rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            for e in events {
                match e {
                    Event::Stop => return,
                    // Snapshots only between the group's replicas.
                    Event::Message(
                        from,
                        Message::Snapshot { .. } | Message::SnapshotAck { .. },
                    ) if !self.replica.is_peer(from) => {}
                    Event::Message(
                        from,
                        Message::Snapshot {
                            slot,
                            seq,
                            data,
                            last,
                            before,
                        },
                    ) => {
                        if !self.snapshot_part(from, slot, seq, &data, last, before) {
                            return;
                        }
                    }
                    Event::Message(from, Message::SnapshotAck { slot, seq }) => {
                        if let Some(s) = self.sending.get(&from).filter(|s| s.slot == slot) {
                            let _ = s.acks.send(seq);
                        }
                    }
                    Event::Message(from, msg) => {
                        if let Err(e) = self.check_values(&msg) {
                            tracing::warn!(
                                from,
                                error = %e,
                                "dropped a message carrying a value this replica cannot apply"
                            );
                            continue;
                        }
                        self.replica.step(from, msg);
                    }
                    Event::Candidacy(on) => self.replica.set_candidacy(on),
                    Event::Propose(batch, token) if self.must_defer() => {
                        self.deferred.push((batch.into(), token));
                    }
                    Event::Propose(batch, token) => {
                        let batch: Arc<[u8]> = batch.into();
                        match self.replica.propose(batch.clone()) {
                            Ok(slot) => {
                                self.own.insert(slot, (batch, token));
                            }
                            Err(why) => self.machine.lost(token, why),
                        }
                    }
                }
            }
            self.replica.flush_now();
            let now = Instant::now();
            if now >= next_tick {
                // Recorded before the tick: everything stamped with it is
                // sent later.
                self.ticks
                    .push_back((self.replica.now() + 1, Instant::now()));
                while self
                    .ticks
                    .front()
                    .is_some_and(|(_, t)| t.elapsed() > self.timing.lease * 2)
                {
                    self.ticks.pop_front();
                }
                self.replica.tick();
                next_tick = now + self.timing.tick;
            }
            if !self.process() {
                return;
            }
            if now >= next_compact {
                next_compact = now + Duration::from_secs(1);
                self.compact();
            }
        }
    }

    /// Persists, sends and applies what the replica asks for. False when
    /// the disk failed: the stream stops (a replica that cannot persist
    /// must not answer).
    fn process(&mut self) -> bool {
        let ready = self.replica.ready();
        if let Some(conflict) = &ready.conflict {
            tracing::error!(
                conflict,
                "replicas disagree on a chosen value: this replica stops"
            );
            self.publish(true);
            self.give_up_all();
            self.machine.failed(conflict);
            return false;
        }
        let mut records: Vec<Record> = ready
            .persist
            .into_iter()
            .map(|p| match p {
                Persist::Promised(b) => Record::Promised(b),
                Persist::Accepted(s, b, v) => Record::Accepted(s, b, v),
            })
            .collect();
        records.extend(ready.chosen.iter().map(|(s, v)| {
            if self.replica.accepted(*s) == Some(v) {
                Record::ChosenAsAccepted(*s)
            } else {
                Record::Chosen(*s, v.clone())
            }
        }));
        for env in ready.early {
            self.transport.send(env);
        }
        // A leader's Accepts go out before its own records are durable, so
        // that its disk write overlaps the followers' (and the round
        // trip). That is safe: its own acceptance of an entry counts
        // toward choosing it only together with answers to these Accepts,
        // which this thread handles after this write is done, and a
        // follower's acceptance needs nothing of the leader's disk. Not
        // when the leader is a majority alone: it would announce entries
        // chosen that are not durable anywhere yet.
        let messages = if self.replica.voters().len() > 1 {
            let (accepts, rest): (Vec<Envelope>, Vec<Envelope>) = ready
                .messages
                .into_iter()
                .partition(|e| matches!(e.msg, Message::Accept { .. }));
            for env in accepts {
                self.transport.send(env);
            }
            rest
        } else {
            ready.messages
        };
        if !records.is_empty()
            && let Err(e) = self.storage.persist(&records)
        {
            tracing::error!(error = %e, "cannot persist replication state: this replica stops");
            self.publish(true);
            self.give_up_all();
            self.machine.failed(&e);
            return false;
        }
        for env in messages {
            self.transport.send(env);
        }
        for (peer, slot) in ready.snapshot_needed {
            self.send_snapshot(peer, slot);
        }
        for (slot, value) in ready.chosen {
            let chosen = match (self.own.remove(&slot), value) {
                (Some((mine, token)), Value::Batch { data, .. }) if mine == data => {
                    Chosen::Own(token)
                }
                (mine, value) => {
                    if let Some((_, token)) = mine {
                        self.machine.lost(token, NotLeader::Unknown);
                        // Later proposals of this node may depend on the
                        // lost one: none of them may be acknowledged.
                        self.give_up_all();
                    }
                    match value {
                        Value::Batch { data, .. } => Chosen::Other(data),
                        Value::Noop => Chosen::Noop,
                    }
                }
            };
            self.machine.apply(slot, chosen);
        }
        self.publish(false);
        true
    }

    fn publish(&mut self, failed: bool) {
        let leader = self.replica.leader();
        let is_leader = self.replica.is_leader();
        // A leader standing again for a later ballot (see
        // `Replica::on_reject`) has not lost its leadership yet.
        let restanding = self.led && self.replica.is_candidate();
        self.led |= is_leader;
        if is_leader && !self.must_defer() && !self.deferred.is_empty() {
            for (batch, token) in std::mem::take(&mut self.deferred) {
                match self.replica.propose(batch.clone()) {
                    Ok(slot) => {
                        self.own.insert(slot, (batch, token));
                    }
                    Err(why) => self.machine.lost(token, why),
                }
            }
        }
        // The lease: a majority answered Accepts sent less than a lease
        // ago, so none of them can have promised another leader yet.
        let lease_until = self.replica.quorum_acked_tick().and_then(|tick| {
            self.ticks
                .binary_search_by_key(&tick, |(t, _)| *t)
                .ok()
                .map(|i| self.ticks[i].1 + self.timing.lease)
        });
        let majority_heard = lease_until.is_some_and(|t| Instant::now() < t);
        self.machine
            .lease(lease_until.filter(|_| !failed && self.replica.ready_to_serve()));
        let status = Status {
            leader,
            serving: !failed && self.replica.ready_to_serve() && majority_heard,
            ballot: self.replica.ballot(),
            chosen: self.replica.first_unchosen(),
            deposed: self.led && !is_leader && !restanding,
        };
        // A leader cut off from a majority for several leases gives up
        // on its proposals (their commits would wait for good): someone
        // else has probably been elected.
        self.isolated_since = match (is_leader && !majority_heard, self.isolated_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
        let given_up = self
            .isolated_since
            .is_some_and(|t| t.elapsed() > self.timing.lease * GIVE_UP_LEASES);
        if ((!is_leader && !restanding) || given_up)
            && !(self.own.is_empty() && self.deferred.is_empty())
        {
            if given_up {
                tracing::warn!(
                    "no majority heard for {} leases: giving up on this leader's proposals",
                    GIVE_UP_LEASES
                );
            }
            self.give_up_all();
        }
        if status != self.last {
            if status.serving != self.last.serving || status.leader != self.last.leader {
                tracing::info!(
                    leader = ?status.leader,
                    serving = status.serving,
                    ballot = status.ballot.number,
                    "replication status changed"
                );
            }
            *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
            self.machine.status(&status);
            self.last = status;
        }
    }

    /// Proposals wait while this replica stands again for a later ballot
    /// (see `Replica::on_reject`), and while it leads but has not yet
    /// recovered every earlier slot: its memory may hold batches of its
    /// earlier ballot that another leader replaced, and a new batch may
    /// have read from them (it would be the first of its leadership, so
    /// nothing would check). Once every earlier slot is chosen, each of
    /// its earlier proposals came back as its own or was reported lost.
    fn must_defer(&self) -> bool {
        (self.led && self.replica.is_candidate())
            || (self.replica.is_leader() && !self.replica.ready_to_serve())
    }

    /// Reports every pending proposal lost.
    fn give_up_all(&mut self) {
        for (_, (_, token)) in std::mem::take(&mut self.own) {
            self.machine.lost(token, NotLeader::Unknown);
        }
        for (_, token) in std::mem::take(&mut self.deferred) {
            self.machine.lost(token, NotLeader::Unknown);
        }
    }

    /// Starts sending a snapshot to `peer`, which needs slot `slot` and
    /// later (unless one is on its way already).
    fn send_snapshot(&mut self, peer: NodeId, slot: Slot) {
        if self
            .sending
            .get(&peer)
            .is_some_and(|s| s.finished.is_none() && !s.thread.is_finished())
        {
            return;
        }
        let Some(source) = self.machine.snapshot() else {
            tracing::warn!(
                peer,
                slot,
                "a replica needs entries this one has forgotten, and no snapshot can be made"
            );
            return;
        };
        if source.slot() <= slot {
            return; // it would not help; the replica will ask someone else
        }
        tracing::info!(
            peer,
            needs = slot,
            at = source.slot(),
            "a replica needs entries this one has forgotten: sending it a snapshot"
        );
        let source_slot = source.slot();
        let before = self.replica.chosen_value(source_slot - 1).cloned();
        let (tx, rx) = channel();
        let (me, transport) = (self.replica.id(), self.transport.clone());
        match std::thread::Builder::new()
            .name("mako-snapshot-send".into())
            .spawn(move || snapshot::send(me, peer, source, before, transport, rx))
        {
            Ok(thread) => {
                let slot = source_slot;
                self.sending.insert(
                    peer,
                    Sending {
                        acks: tx,
                        thread,
                        slot,
                        finished: None,
                    },
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot start sending a snapshot"),
        }
    }

    /// Takes part of a snapshot. False when the stream must stop (the
    /// node restarts from the snapshot, or cannot store it).
    fn snapshot_part(
        &mut self,
        from: NodeId,
        slot: Slot,
        seq: u64,
        data: &[u8],
        last: bool,
        before: Option<Value>,
    ) -> bool {
        // A leader has everything chosen; a snapshot behind what is
        // applied here is of no use.
        if self.replica.is_leader() || slot <= self.replica.first_unchosen() {
            return true;
        }
        let ack = |d: &mut Self| {
            d.transport.send(Envelope {
                from: d.replica.id(),
                to: from,
                msg: Message::SnapshotAck { slot, seq },
            });
        };
        match snapshot::classify(&mut self.receiving, from, slot, seq) {
            Part::Ignore => return true,
            Part::Ack => {
                ack(self);
                return true;
            }
            Part::Store => {}
        }
        // The value of the slot before the snapshot's is kept as a chosen
        // record first: after a restart from the snapshot, a new leader
        // looks at it.
        if last
            && let Some(v) = &before
            && let Err(e) = self.storage.persist(&[Record::Chosen(slot - 1, v.clone())])
        {
            tracing::warn!(error = %e, "cannot store a snapshot; it is dropped");
            self.receiving = None;
            return true;
        }
        match self.machine.receive_snapshot(slot, seq, data, last) {
            Err(e) => {
                tracing::warn!(error = %e, slot, "cannot store a snapshot; it is dropped");
                self.receiving = None;
                true
            }
            Ok(received) => {
                ack(self);
                if let Some(r) = self.receiving.as_mut() {
                    r.next = seq + 1;
                    r.at = Instant::now();
                }
                match received {
                    Received::Stored => true,
                    Received::Installed => {
                        self.receiving = None;
                        self.replica.install_snapshot(slot, before);
                        true
                    }
                    Received::Restart => false,
                }
            }
        }
    }

    /// Forgets what nobody needs any more.
    fn compact(&mut self) {
        let durable = self.machine.durable();
        self.replica.set_durable(durable);
        // Only below what every replica has made durable (a follower
        // learns the point from the leader): a replica that forgot
        // entries another still needs could lead later and miss them in
        // its phase 1.
        let mut below = self.replica.forgettable();
        // Keep what the receivers of snapshots will ask for next.
        let now = Instant::now();
        self.sending.retain(|_, s| {
            if s.finished.is_none() && s.thread.is_finished() {
                s.finished = Some(now);
            }
            s.finished.is_none_or(|t| now - t < KEEP_AFTER_SNAPSHOT)
        });
        for s in self.sending.values() {
            below = below.min(s.slot);
        }
        if below > 1 {
            self.replica.compact(below);
            // The slot before stays: a new leader looks at it.
            if let Err(e) = self.storage.forget(below - 1) {
                tracing::warn!(error = %e, "cannot drop old replication records");
            }
        }
    }
}
