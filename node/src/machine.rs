//! What a replicated node's streams drive: the state they share, the
//! log's [`Replicate`] handle, the applier thread and the per-stream
//! [`Machine`].
//!
//! A node runs one stream per configured stream of its group (each a
//! Multi-Paxos instance on a thread of its own; the openraft stream runs
//! one). The leader's log threads, one per stream, each hand their
//! batches to their stream (each committing thread appends to one
//! stream's log queue); every stream's chosen values go to one applier
//! thread, which
//! delivers them to the data directory's replay (per stream in slot
//! order; the replay merges the streams per shard in clock order).
//!
//! Stream 0 leads the way: its replicas stand for election on their own,
//! and a node that leads stream 0 lets its other streams stand too, so
//! one node leads them all. That node serves once every stream has
//! recovered its predecessors' slots, the applier has applied them, and
//! its close of the predecessors' entries (proposed on stream 0, naming
//! every stream's next slot) is applied; while it serves, each stream's
//! lease must hold.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kv::log::{LogEntry, Replicate, StreamValue, encode_batch};
use kv::persist::{Persist, SyncMode};
use kv::{Error, ErrorKind, Result};
use repl::net::{Deliver, Transport};
use repl::paxos::{NodeId, NotLeader, Slot};
use repl::raft::RaftStream;
use repl::snapshot::{Received, SnapshotSource};
use repl::stream::{Chosen, Event, Machine, Status};
use txn::Db;

use crate::{Consensus, Stop};

/// What a stream carries back to its proposer: the value proposed (a
/// batch as installed, or a new leader's close).
pub(super) type Token = StreamValue;

/// How a node proposes to one of its streams, whichever consensus runs
/// it.
#[derive(Clone)]
pub(super) enum Proposer {
    Paxos(Sender<Event<Token>>),
    Raft(Arc<RaftStream<Token>>),
}

impl Proposer {
    /// Hands a value to the stream; gives it back if the stream has
    /// stopped.
    fn propose(&self, bytes: Vec<u8>, value: StreamValue) -> std::result::Result<(), StreamValue> {
        match self {
            Proposer::Raft(stream) => {
                stream.propose(bytes, value);
                Ok(())
            }
            Proposer::Paxos(tx) => tx
                .send(Event::Propose(bytes, value))
                .map_err(|e| match e.0 {
                    Event::Propose(_, value) => value,
                    _ => unreachable!("sent a proposal"),
                }),
        }
    }

    /// Lets the stream stand for election, or not; `heartbeat`: a raft
    /// leader goes on sending heartbeats (off, it goes quiet, so that
    /// another node can take the stream over: openraft 0.9 cannot step
    /// down; a Paxos leader steps down when its candidacy is turned off).
    fn roles(&self, candidacy: bool, heartbeat: bool) {
        match self {
            Proposer::Paxos(tx) => {
                let _ = tx.send(Event::Candidacy(candidacy));
            }
            Proposer::Raft(stream) => {
                stream.set_candidacy(candidacy);
                stream.set_heartbeat(heartbeat);
            }
        }
    }
}

/// One stream's part of the shared state.
#[derive(Default)]
pub(super) struct StreamShared {
    /// Its replica's last status.
    pub status: Mutex<Status>,
    /// Microseconds after `Shared::started` until which its lease lets the
    /// node serve (0: it may not).
    lease_until: AtomicU64,
    /// The last slot handed to the applier.
    handed: AtomicU64,
    /// Its replica leads, has recovered every earlier slot and hears a
    /// majority.
    ready: AtomicBool,
    /// Since when it has had a leader other than stream 0's, or none,
    /// and which (see `Shared::roles`).
    leaderless_since: Mutex<Option<(std::time::Instant, Option<NodeId>)>>,
    /// The roles last set: (candidacy, heartbeat).
    roles: Mutex<Option<(bool, bool)>>,
}

/// State shared by the streams' machines, the log's [`Replicate`] handle
/// and `SHOW mako.replication`.
pub(super) struct Shared {
    pub consensus: Consensus,
    pub group: String,
    pub id: NodeId,
    pub voters: usize,
    pub sync: SyncMode,
    pub members: HashMap<NodeId, (String, SocketAddr)>,
    /// With several groups: how transactions across them commit.
    pub across_groups: Option<txn::coord::CommitProtocol>,
    /// This node serves transactions (its leases are checked too).
    pub serving: AtomicBool,
    /// When the node started: leases are kept as microseconds after it.
    pub started: std::time::Instant,
    /// This node has served as leader in this life.
    pub served: AtomicBool,
    /// This node was deposed (it stops, or, in tests, goes on as a
    /// follower).
    deposed: AtomicBool,
    /// `Node::close` has begun: proposals lost now are the shutdown's,
    /// not a sign of deposition.
    pub closing: AtomicBool,
    /// Per stream.
    pub streams: Vec<StreamShared>,
    /// Per stream, once the streams run.
    /// (Emptied when the node closes: an openraft stream holds its
    /// machine, which holds this.)
    proposers: Mutex<Vec<Proposer>>,
    /// Where received messages go, once the streams run.
    pub deliver: OnceLock<Deliver>,
    /// The transport, once the streams run (for its refusal count).
    pub transport: OnceLock<Arc<dyn Transport>>,
    /// The stream storing a snapshot, and when its last part came.
    staging: Mutex<Option<(usize, std::time::Instant)>>,
    /// The election timeout.
    election: Duration,
    /// The applier thread.
    pub applier: Arc<Applier>,
    pub persist: Arc<Persist>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consensus: Consensus,
        group: String,
        id: NodeId,
        voters: usize,
        sync: SyncMode,
        members: HashMap<NodeId, (String, SocketAddr)>,
        streams: usize,
        election: Duration,
        persist: Arc<Persist>,
        across_groups: Option<txn::coord::CommitProtocol>,
    ) -> Shared {
        Shared {
            consensus,
            group,
            id,
            voters,
            sync,
            members,
            across_groups,
            serving: AtomicBool::new(false),
            started: std::time::Instant::now(),
            served: AtomicBool::new(false),
            deposed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            streams: (0..streams).map(|_| StreamShared::default()).collect(),
            proposers: Mutex::new(Vec::new()),
            deliver: OnceLock::new(),
            transport: OnceLock::new(),
            staging: Mutex::new(None),
            election,
            applier: Arc::new(Applier {
                applied: Mutex::new(vec![0; streams]),
                ..Applier::default()
            }),
            persist,
        }
    }

    /// One node leads every stream: the one that leads stream 0. The
    /// other streams stand for election only on that node; a node that
    /// leads another stream while another node leads stream 0 lets go of
    /// it (a Paxos replica steps down; an openraft leader, which cannot,
    /// stops sending heartbeats, so its followers elect the stream-0
    /// leader). A raft stream that has had no leader (or another than
    /// stream 0's) for a while lets any node stand: only a node with the longest log can win a raft
    /// election, and the stream-0 leader may not have it; the winner then
    /// hands the stream over as above once it has brought the others'
    /// logs up to date.
    pub fn roles(&self) {
        let proposers = self.proposers();
        if proposers.is_empty() {
            return;
        }
        let me = Some(self.id);
        let leader_of =
            |s: &StreamShared| s.status.lock().unwrap_or_else(|p| p.into_inner()).leader;
        // Stream 0 without a known leader (standing again, say) changes
        // nothing.
        let Some(leader0) = leader_of(&self.streams[0]) else {
            return;
        };
        let leads0 = Some(leader0) == me;
        let stalled_after = self.election * 4;
        for (s, p) in self.streams.iter().zip(proposers.iter()).skip(1) {
            let leader = leader_of(s);
            // A raft follower goes on naming a dead leader until it sees
            // a later term: "no leader" is a leader other than stream 0's.
            let stalled = {
                // The clock starts over when the stream's leader changes:
                // after a handover by another node, only the stream-0
                // leader stands in the next round.
                let mut since = s.leaderless_since.lock().unwrap_or_else(|p| p.into_inner());
                match *since {
                    _ if leader == Some(leader0) => *since = None,
                    Some((_, seen)) if seen == leader => {}
                    _ => *since = Some((std::time::Instant::now(), leader)),
                }
                self.consensus == Consensus::Raft
                    && since.is_some_and(|(t, _)| t.elapsed() > stalled_after)
            };
            let want = (leads0 || stalled, leads0 || leader != me);
            let mut last = s.roles.lock().unwrap_or_else(|p| p.into_inner());
            if *last != Some(want) {
                if stalled && !leads0 {
                    tracing::info!(
                        leader = ?leader,
                        stream0 = leader0,
                        "a stream has had no leader, or another than stream 0's, for {} ms: \
                         this node may stand for it",
                        stalled_after.as_millis()
                    );
                }
                p.roles(want.0, want.1);
                *last = Some(want);
            }
        }
    }

    /// The streams' proposers (empty before the streams start and after
    /// the node closes).
    pub fn proposers(&self) -> std::sync::MutexGuard<'_, Vec<Proposer>> {
        self.proposers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name(&self, id: NodeId) -> String {
        self.members
            .get(&id)
            .map_or_else(|| format!("node {id}"), |(n, a)| format!("{n} ({a})"))
    }

    /// Stream 0's status (the group's leadership).
    pub fn status(&self) -> Status {
        self.streams[0]
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serving, and within every stream's lease (checked against the
    /// clock here: the stream's thread that clears `serving` may be held
    /// up).
    pub fn may_serve(&self) -> bool {
        let now = self.started.elapsed().as_micros() as u64;
        self.serving.load(Ordering::Acquire)
            && self
                .streams
                .iter()
                .all(|s| now < s.lease_until.load(Ordering::Acquire))
    }
}

/// The log's handle on the streams.
/// Weak: the data directory holds the handle, and the shared state holds
/// the data directory.
pub(super) struct Handle(pub std::sync::Weak<Shared>);

impl Handle {
    fn shared(&self) -> Result<Arc<Shared>> {
        self.0
            .upgrade()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the replicated node has shut down"))
    }
}

impl Replicate for Handle {
    fn propose(
        &self,
        stream: usize,
        batch: Vec<LogEntry>,
    ) -> std::result::Result<(), (Error, Vec<LogEntry>)> {
        let sh = match self.shared() {
            Ok(sh) => sh,
            Err(e) => return Err((e, batch)),
        };
        // Encoded and sent outside the lock: the streams' log threads
        // (and the streams' own threads) share it.
        let proposer = {
            let proposers = sh.proposers();
            if proposers.is_empty() {
                let e = Error::new(ErrorKind::NotServing, "replication is not running");
                return Err((e, batch));
            }
            proposers[stream % proposers.len()].clone()
        };
        let bytes = encode_batch(&batch);
        proposer
            .propose(bytes, StreamValue::Batch(batch))
            .map_err(|value| {
                let batch = match value {
                    StreamValue::Batch(batch) => batch,
                    StreamValue::Close(_) => Vec::new(),
                };
                let e = Error::new(ErrorKind::Unavailable, "the replication stream has stopped");
                (e, batch)
            })
    }

    fn serving(&self) -> Result<()> {
        let sh = self.shared()?;
        if sh.may_serve() {
            return Ok(());
        }
        let st = sh.status();
        let me = sh.name(sh.id);
        let message = match st.leader {
            Some(l) if l == sh.id => format!(
                "node {me} leads replica group {} but cannot serve yet: it is recovering \
                 earlier leaders' entries or has not heard from a majority; retry shortly",
                sh.group
            ),
            Some(l) => format!(
                "node {me} is a follower in replica group {} and does not serve transactions; \
                 the leader is {}",
                sh.group,
                sh.name(l)
            ),
            None => format!(
                "node {me} does not serve transactions: replica group {} has no leader right \
                 now (an election may be running); retry shortly",
                sh.group
            ),
        };
        Err(Error::new(ErrorKind::NotServing, message))
    }

    fn durability(&self) -> String {
        let Ok(sh) = self.shared() else {
            return "replicated (shut down)".into();
        };
        let across = match sh.across_groups {
            None => String::new(),
            Some(p @ txn::coord::CommitProtocol::Speculative) => format!(
                "; across replica groups: {} (Mako's protocol: acknowledged once every group \
                 it touched has it durable)",
                p.name()
            ),
            Some(p @ txn::coord::CommitProtocol::TwoPhaseOverPaxos) => format!(
                "; across replica groups: {} (two-phase commit over Paxos, the baseline)",
                p.name()
            ),
        };
        format!(
            "replicated: a commit is acknowledged once a majority of the {} voting replicas of \
             group {} has it on disk ({}, sync={}){across}",
            sh.voters,
            sh.group,
            sh.consensus.name(),
            sh.sync.name()
        )
    }

    fn status(&self) -> String {
        let Ok(sh) = self.shared() else {
            return "shut down".into();
        };
        let st = sh.status();
        let serving = sh.may_serve();
        let role = if serving {
            "leader"
        } else if st.leader == Some(sh.id) {
            "leader (not serving)"
        } else if st.leader.is_some() {
            "follower"
        } else {
            "no leader"
        };
        let leader = st.leader.map_or_else(|| "unknown".into(), |l| sh.name(l));
        // Per stream, the last slot chosen and the last checkpointed.
        let per_stream = |f: &dyn Fn(usize, &StreamShared) -> u64| {
            let v: Vec<String> = sh
                .streams
                .iter()
                .enumerate()
                .map(|(k, s)| f(k, s).saturating_sub(1).to_string())
                .collect();
            v.join(",")
        };
        let chosen = per_stream(&|_, s| s.status.lock().unwrap_or_else(|p| p.into_inner()).chosen);
        let checkpointed = per_stream(&|k, _| sh.persist.checkpointed_slot_of(k));
        let refused = sh.transport.get().map_or(0, |t| t.refused());
        format!(
            "group={} node={} role={role} leader={leader} ballot={} chosen={chosen} checkpointed={checkpointed} replicas={} consensus={} streams={} refused_connections={refused}",
            sh.group,
            sh.name(sh.id),
            st.ballot.number,
            sh.members.len(),
            sh.consensus.name(),
            sh.streams.len(),
        )
    }
}

/// A chosen slot on its way to the applier thread.
enum ToApply {
    /// A value this node proposed, on a stream.
    Own(usize, Slot, StreamValue),
    /// Another's value, encoded.
    Other(usize, Slot, Arc<[u8]>),
    /// A no-op (a hole a new leader filled, a raft blank entry).
    Noop(usize, Slot),
}

/// The applier thread's progress, shared with the streams' machines (a
/// new leader serves once it has caught up) and the node (which stops and
/// joins the thread).
#[derive(Default)]
pub(super) struct Applier {
    /// Per stream, the last slot applied.
    applied: Mutex<Vec<Slot>>,
    /// Set by `Node::close`: the thread applies what it was handed, then
    /// ends.
    stop: AtomicBool,
    /// The thread, once started.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Applier {
    /// Starts the applier thread, which applies what `rx` brings.
    fn start(
        self: &Arc<Self>,
        rx: std::sync::mpsc::Receiver<ToApply>,
        persist: Arc<Persist>,
        stop: Arc<dyn Fn(Stop) + Send + Sync>,
    ) {
        let applier = self.clone();
        let on_failure = stop.clone();
        match std::thread::Builder::new()
            .name("mako-apply".into())
            .spawn(move || applier.run(rx, persist, stop))
        {
            Ok(t) => *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the applier thread; stopping");
                on_failure(Stop::Failed);
            }
        }
    }

    /// The applier thread: applies what it is handed, per stream in slot
    /// order. A chosen value it cannot decode or apply stops the node:
    /// every replica has the same value, so this one's copy or code is
    /// broken, and applying later slots would diverge.
    fn run(
        self: Arc<Self>,
        rx: std::sync::mpsc::Receiver<ToApply>,
        persist: Arc<Persist>,
        stop: Arc<dyn Fn(Stop) + Send + Sync>,
    ) {
        loop {
            let item = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => item,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let (stream, slot, applied) = match item {
                ToApply::Own(k, slot, value) => {
                    (k, slot, persist.deliver(k, slot, Some(value), true))
                }
                ToApply::Other(k, slot, bytes) => (
                    k,
                    slot,
                    StreamValue::decode(&bytes)
                        .and_then(|value| persist.deliver(k, slot, Some(value), false)),
                ),
                ToApply::Noop(k, slot) => (k, slot, persist.deliver(k, slot, None, false)),
            };
            if let Err(e) = applied {
                tracing::error!(stream, slot, error = %e.message, "a chosen value cannot be applied; stopping");
                stop(Stop::Failed);
                return;
            }
            if let Some(a) = self
                .applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(stream)
            {
                *a = slot;
            }
        }
    }

    /// The last slot of `stream` applied.
    fn applied(&self, stream: usize) -> Slot {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied()
            .unwrap_or(0)
    }

    /// Stops the thread once it has applied what it was handed, and waits
    /// for it.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// One stream's machine: hands its chosen slots to the applier thread (so
/// that the stream's thread goes back to its disk and network at once)
/// and keeps the node's view of the stream up to date.
pub(super) struct NodeMachine {
    /// Which stream.
    stream: usize,
    shared: Arc<Shared>,
    db: Arc<Db>,
    on_deposed: Arc<dyn Fn(Stop) + Send + Sync>,
    to_apply: Sender<ToApply>,
    /// Stream 0: the close this node proposed as leader, as `(leader,
    /// ballot number)`; it serves once it has applied it.
    close: Option<(u64, u64)>,
}

impl NodeMachine {
    /// The machines of every stream, with the applier thread they feed.
    pub fn start(
        shared: &Arc<Shared>,
        db: &Arc<Db>,
        on_deposed: Arc<dyn Fn(Stop) + Send + Sync>,
    ) -> Vec<NodeMachine> {
        let (tx, rx) = std::sync::mpsc::channel::<ToApply>();
        shared
            .applier
            .start(rx, shared.persist.clone(), on_deposed.clone());
        (0..shared.streams.len())
            .map(|stream| NodeMachine {
                stream,
                shared: shared.clone(),
                db: db.clone(),
                on_deposed: on_deposed.clone(),
                to_apply: tx.clone(),
                close: None,
            })
            .collect()
    }

    fn deposed(&self) {
        if self.shared.served.load(Ordering::Acquire)
            && !self.shared.closing.load(Ordering::Acquire)
        {
            self.shared.serving.store(false, Ordering::Release);
            self.shared.deposed.store(true, Ordering::Release);
            tracing::error!(
                stream = self.stream,
                "this node was the leader and has been replaced: transactions it installed \
                 may never be chosen, so it stops; restart it to rejoin as a follower"
            );
            (self.on_deposed)(Stop::Deposed);
        }
    }

    /// A new leader serves once it has closed its predecessors' entries
    /// (see [`kv::log::Close`]): once every stream leads and has recovered
    /// its earlier slots, and the applier has applied them, it proposes
    /// its close on stream 0, and it serves once the close is applied, its
    /// transaction ids continuing after every id it has seen. Nothing here
    /// waits (this runs on stream 0's thread, whose heartbeats must go
    /// on): it is called with each status and lease, and moves on when it
    /// can.
    fn try_serve(&mut self) {
        let shared = &self.shared;
        if self.stream != 0 || shared.serving.load(Ordering::Acquire) {
            return;
        }
        let mut through = Vec::with_capacity(shared.streams.len());
        for (k, s) in shared.streams.iter().enumerate() {
            // `ready` first: a stream hands every slot of the earlier
            // leaders to the applier before it says it is ready, so
            // `handed` read after it covers them all.
            if !s.ready.load(Ordering::Acquire) {
                return;
            }
            let handed = s.handed.load(Ordering::Acquire);
            if shared.applier.applied(k) < handed {
                return;
            }
            through.push(handed + 1);
        }
        let mine = (u64::from(shared.id), shared.status().ballot.number);
        let persist = &shared.persist;
        // A node that has served in this life and was not deposed kept its
        // leadership throughout (standing again for a later ballot after a
        // rejection, say): its proposals in flight are its own, and a new
        // close would cut them off. Only a node that has not served yet
        // closes.
        let kept = shared.served.load(Ordering::Acquire) && !shared.deposed.load(Ordering::Acquire);
        if !kept && persist.last_close() != mine {
            if self.close == Some(mine) {
                return; // proposed; not applied yet
            }
            let close = match persist.close_for(mine.0, mine.1, through) {
                Ok(close) => StreamValue::Close(close),
                Err(e) => return self.failed(&e.message),
            };
            let proposed = match shared.proposers().first() {
                Some(p) => p.propose(close.encode(), close).is_ok(),
                None => return,
            };
            if proposed {
                tracing::info!(
                    ballot = mine.1,
                    "leading: closing earlier leaders' entries before serving"
                );
                self.close = Some(mine);
            }
            return;
        }
        // Entries of earlier leaders still held back by the replay (they
        // wait for another group's watermark) are transactions that may
        // have been acknowledged: a new leader serves only once they are
        // applied.
        // (A leader that kept its leadership installed its own.)
        if !kept && persist.replay_waiting() > 0 {
            return;
        }
        self.db.advance_txn_ids(persist.last_txn());
        shared.served.store(true, Ordering::Release);
        shared.serving.store(true, Ordering::Release);
    }
}

impl Machine<Token> for NodeMachine {
    fn check(&self, value: &[u8]) -> Result<(), String> {
        StreamValue::check(value).map_err(|e| e.message)
    }

    fn apply(&mut self, slot: Slot, value: Chosen<Token>) {
        let k = self.stream;
        let item = match value {
            Chosen::Own(value) => {
                if let StreamValue::Batch(_) = value {
                    // Chosen: the log may send another (the applier may
                    // be behind).
                    self.shared.persist.proposal_done(k);
                }
                ToApply::Own(k, slot, value)
            }
            Chosen::Other(bytes) => ToApply::Other(k, slot, bytes),
            Chosen::Noop => ToApply::Noop(k, slot),
        };
        self.shared.streams[k].handed.store(slot, Ordering::Release);
        let _ = self.to_apply.send(item);
    }

    fn lost(&mut self, token: Token, why: NotLeader) {
        match token {
            // Proposed again if this node leads again.
            StreamValue::Close(_) => self.close = None,
            StreamValue::Batch(_) => self.shared.persist.proposal_done(self.stream),
        }
        tracing::warn!(
            stream = self.stream,
            ?why,
            "a batch was not replicated: this node no longer leads"
        );
        self.deposed();
    }

    fn status(&mut self, status: &Status) {
        let mine = &self.shared.streams[self.stream];
        *mine.status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
        if status.deposed {
            self.deposed();
        }
        mine.ready.store(status.serving, Ordering::Release);
        if !status.serving {
            self.shared.serving.store(false, Ordering::Release);
        }
        self.shared.roles();
        self.try_serve();
    }

    fn durable(&mut self) -> Slot {
        self.shared.persist.checkpointed_slot_of(self.stream)
    }

    fn lease(&mut self, until: Option<std::time::Instant>) {
        let micros = until.map_or(0, |t| {
            t.saturating_duration_since(self.shared.started).as_micros() as u64
        });
        self.shared.streams[self.stream]
            .lease_until
            .store(micros, Ordering::Release);
        self.try_serve();
    }

    fn failed(&mut self, error: &str) {
        self.shared.serving.store(false, Ordering::Release);
        tracing::error!(
            stream = self.stream,
            error,
            "the replication stream failed; stopping"
        );
        (self.on_deposed)(Stop::Failed);
    }

    fn snapshot(&mut self) -> Option<Box<dyn SnapshotSource>> {
        match self
            .shared
            .persist
            .snapshot_of(self.stream, SNAPSHOT_PART_BYTES)
        {
            Ok(r) => Some(Box::new(Source(r))),
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read a snapshot");
                None
            }
        }
    }

    fn receive_snapshot(
        &mut self,
        slot: Slot,
        seq: u64,
        data: &[u8],
        last: bool,
    ) -> std::result::Result<Received, String> {
        let persist = &self.shared.persist;
        // One staging area per node: a stream whose snapshot arrives while
        // another stream's is being staged waits, unless that one has been
        // silent for longer than a transfer is kept. A Paxos stream's part
        // is refused (not acknowledged; its sender tries again). openraft
        // takes a refusal as fatal, and its staging runs off the async
        // runtime: it waits here (the other stream's install restarts the
        // node meanwhile, most likely).
        let asked = std::time::Instant::now();
        loop {
            let mut staging = self
                .shared
                .staging
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match *staging {
                Some((k, at)) if k != self.stream && at.elapsed() < STAGING_OWNED => {
                    drop(staging);
                    if self.shared.consensus == Consensus::Paxos || asked.elapsed() > STAGING_OWNED
                    {
                        return Err(format!(
                            "stream {k} is storing a snapshot; stream {}'s waits",
                            self.stream
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    *staging = Some((self.stream, std::time::Instant::now()));
                    break;
                }
            }
        }
        if seq == 0 {
            tracing::info!(
                stream = self.stream,
                slot,
                "this replica fell behind what the others keep of the log: receiving a snapshot"
            );
        }
        persist.stage_snapshot(seq, data).map_err(|e| e.message)?;
        if !last {
            return Ok(Received::Stored);
        }
        persist
            .snapshot_staged_of(self.stream, slot)
            .map_err(|e| e.message)?;
        tracing::info!(
            stream = self.stream,
            slot,
            parts = seq + 1,
            "snapshot received and stored; restarting to install it"
        );
        self.shared.serving.store(false, Ordering::Release);
        (self.on_deposed)(Stop::Reload);
        Ok(Received::Restart)
    }
}

/// Snapshots travel in parts of about this size.
const SNAPSHOT_PART_BYTES: usize = 1 << 20;

/// A stream storing a snapshot keeps the staging area for itself while
/// its parts keep coming (a transfer is abandoned after 15 s of silence).
const STAGING_OWNED: Duration = Duration::from_secs(20);

/// The data directory's snapshot reader, as the stream reads snapshots.
struct Source(kv::persist::SnapshotReader);

impl SnapshotSource for Source {
    fn slot(&self) -> Slot {
        self.0.slot()
    }

    fn next_part(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.0.next_part().map_err(|e| e.message)
    }
}
