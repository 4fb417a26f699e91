//! Participant RPCs between nodes, and the driver that runs a commit's
//! coordinator over them (Mako §4.2).
//!
//! Calls and answers ([`txn::participant::Call`], [`Answer`]) travel as
//! [`repl::paxos::Message::Rpc`] frames on the replication transport (one
//! authenticated connection per pair of nodes, in order, with the
//! configured latency), each tagged with an id that its answer echoes.
//!
//! - A node that leads shards serves calls with its
//!   [`Participants`] on threads of its own ([`Rpc::start`]'s
//!   `workers`), never on the transport's tasks: a handler may wait (on
//!   the log, on a lock of its state), and two nodes whose sessions wait
//!   on each other's calls must not deadlock. A call to the node itself
//!   goes the same way without the network.
//! - A caller registers a channel for the answer ([`Rpc::send`]) and
//!   waits on it with a deadline of its own; an answer nobody waits for
//!   any more is dropped.
//! - [`commit`] drives a [`Coordinator`]: each round's requests go out at
//!   once, one per participant group, and the replies come back in any
//!   order; requests unanswered within `round_timeout` are overdue
//!   ([`Coordinator::timeout`]): before the commit point the transaction
//!   aborts, after it Install is sent again.
//! - A sweeper thread releases transactions whose coordinator locked and
//!   did not validate by the deadline ([`Participants::sweep`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use kv::{Error, ErrorKind, Result, VectorClock};
use repl::net::Transport;
use repl::paxos::{Envelope, Message, NodeId};
use serde::{Deserialize, Serialize};
use txn::coord::{Coordinator, Participant, Round};
use txn::participant::{Answer, Call, Participants, call_for, reply_of};

/// What one RPC frame carries.
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    /// A call, to be answered with the same id.
    Call { id: u64, call: Call },
    /// The answer to call `id`.
    Answer { id: u64, answer: Result<Answer> },
    /// The sender leads replica group `group`, whose shards are durable
    /// through these clock values (its part of the vector watermark).
    Watermarks {
        group: u32,
        marks: Vec<(usize, u64)>,
    },
}

/// What a node does with another group's watermarks: `(sender, group,
/// (shard, watermark) pairs)`.
pub type OnWatermarks = Box<dyn Fn(NodeId, u32, Vec<(usize, u64)>) + Send + Sync>;

/// Whether this node may serve participant calls now (it leads its
/// group); the error says why not.
pub type Serving = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// Where an answer goes: `(call id, answer)`.
pub type AnswerTx = Sender<(u64, Result<Answer>)>;

/// A call to serve: from whom, its id, the call.
type Work = (NodeId, u64, Call);

struct Inner {
    me: NodeId,
    transport: Arc<dyn Transport>,
    next: AtomicU64,
    /// Calls awaiting their answer, by id.
    pending: Mutex<HashMap<u64, AnswerTx>>,
    /// The handler threads' queue (none on a node that serves no shard).
    work: Mutex<Option<Sender<Work>>>,
    /// Frames that could not be decoded, or answered nothing awaited.
    refused: AtomicU64,
    /// Where other groups' watermarks go.
    on_watermarks: Option<OnWatermarks>,
}

/// One node's end of the participant RPCs.
pub struct Rpc {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn post(&self, to: NodeId, frame: &Frame) {
        match postcard::to_stdvec(frame) {
            Ok(bytes) => self.transport.send(Envelope {
                from: self.me,
                to,
                msg: Message::Rpc(bytes),
            }),
            Err(e) => tracing::error!(error = %e, "cannot encode an RPC frame"),
        }
    }

    /// Hands an answer to whoever waits for it.
    fn complete(&self, id: u64, answer: Result<Answer>) {
        let waiter = lock(&self.pending).remove(&id);
        match waiter {
            Some(tx) => {
                let _ = tx.send((id, answer));
            }
            None => {
                // Late (its caller gave up) or repeated: nobody waits.
            }
        }
    }

    /// Queues a call for the handler threads; without them, answers that
    /// this node serves no shard.
    fn serve(&self, from: NodeId, id: u64, call: Call) {
        let queued = lock(&self.work)
            .as_ref()
            .is_some_and(|w| w.send((from, id, call)).is_ok());
        if !queued {
            let e = Error::new(
                ErrorKind::Unavailable,
                format!("node {} serves no shard", self.me),
            );
            self.answer(from, id, Err(e));
        }
    }

    fn answer(&self, to: NodeId, id: u64, answer: Result<Answer>) {
        if to == self.me {
            self.complete(id, answer);
        } else {
            self.post(to, &Frame::Answer { id, answer });
        }
    }
}

impl Rpc {
    /// Node `me`'s RPC end over `transport`. With `participants`, it
    /// serves calls on `workers` threads (while `serving` allows) and
    /// sweeps abandoned locks every `sweep_every`; other groups'
    /// watermarks go to `on_watermarks`.
    pub fn start(
        me: NodeId,
        transport: Arc<dyn Transport>,
        participants: Option<(Arc<Participants>, Serving)>,
        workers: usize,
        sweep_every: Duration,
        on_watermarks: Option<OnWatermarks>,
    ) -> Rpc {
        let inner = Arc::new(Inner {
            me,
            transport,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            work: Mutex::new(None),
            refused: AtomicU64::new(0),
            on_watermarks,
        });
        if let Some((p, serving)) = participants {
            let (tx, rx) = mpsc::channel::<Work>();
            let rx = Arc::new(Mutex::new(rx));
            let serving = Arc::new(serving);
            for i in 0..workers.max(1) {
                let (rx, p, inner) = (rx.clone(), p.clone(), Arc::downgrade(&inner));
                let serving = serving.clone();
                std::thread::Builder::new()
                    .name(format!("participant-{i}"))
                    .spawn(move || handle_calls(&rx, &p, &**serving, &inner))
                    .expect("spawn a participant thread");
            }
            let weak = Arc::downgrade(&p);
            std::thread::Builder::new()
                .name("participant-sweep".into())
                .spawn(move || sweep_loop(&weak, sweep_every))
                .expect("spawn the participant sweeper");
            *lock(&inner.work) = Some(tx);
        }
        Rpc { inner }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.inner.me
    }

    /// Takes an RPC frame the transport delivered from `from`.
    pub fn deliver(&self, from: NodeId, bytes: &[u8]) {
        match postcard::from_bytes::<Frame>(bytes) {
            Ok(Frame::Call { id, call }) => self.inner.serve(from, id, call),
            Ok(Frame::Answer { id, answer }) => self.inner.complete(id, answer),
            Ok(Frame::Watermarks { group, marks }) => {
                if let Some(on) = &self.inner.on_watermarks {
                    on(from, group, marks);
                }
            }
            Err(e) => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(from, error = %e, "dropping an RPC frame that cannot be decoded");
            }
        }
    }

    /// Sends `call` to node `to`; its answer goes to `tx` with the id
    /// returned.
    pub fn send(&self, to: NodeId, call: Call, tx: &AnswerTx) -> u64 {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.pending).insert(id, tx.clone());
        if to == self.inner.me {
            self.inner.serve(to, id, call);
        } else {
            self.inner.post(to, &Frame::Call { id, call });
        }
        id
    }

    /// Tells node `to` that this node leads `group`, durable through
    /// `marks`.
    pub fn send_watermarks(&self, to: NodeId, group: u32, marks: Vec<(usize, u64)>) {
        self.inner.post(to, &Frame::Watermarks { group, marks });
    }

    /// The caller no longer waits for the answer to `id`.
    pub fn forget(&self, id: u64) {
        lock(&self.inner.pending).remove(&id);
    }

    /// Sends `call` to `to` and waits (blocking this thread) up to
    /// `timeout` for the answer.
    pub fn call(&self, to: NodeId, call: Call, timeout: Duration) -> Result<Answer> {
        let (tx, rx) = mpsc::channel();
        let id = self.send(to, call, &tx);
        match rx.recv_timeout(timeout) {
            Ok((_, answer)) => answer,
            Err(_) => {
                self.forget(id);
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("node {to} did not answer within {timeout:?}"),
                ))
            }
        }
    }

    /// Frames dropped because they could not be decoded.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        // The handler threads end once their queue closes.
        lock(&self.inner.work).take();
    }
}

fn handle_calls(
    rx: &Mutex<Receiver<Work>>,
    p: &Participants,
    serving: &(dyn Fn() -> Result<()> + Send + Sync),
    inner: &Weak<Inner>,
) {
    loop {
        let next = lock(rx).recv();
        let Ok((from, id, call)) = next else {
            return;
        };
        let answer = serving().and_then(|()| p.handle(from, call, Instant::now()));
        match inner.upgrade() {
            Some(inner) => inner.answer(from, id, answer),
            None => return,
        }
    }
}

fn sweep_loop(p: &Weak<Participants>, every: Duration) {
    loop {
        std::thread::sleep(every);
        match p.upgrade() {
            Some(p) => {
                p.sweep(Instant::now());
            }
            None => return,
        }
    }
}

/// How [`commit`] waits.
#[derive(Clone, Copy, Debug)]
pub struct CommitTiming {
    /// Replies of a round not in by then are overdue.
    pub round_timeout: Duration,
    /// After the decision, Install (or, aborting, Release) is repeated to
    /// a silent participant for this long; then the commit gives up.
    pub give_up: Duration,
}

/// Time a Validate round is given on top of the round timeout, per read
/// it checks (generous: a busy participant with a small CPU share checks
/// a read in a few microseconds).
const VALIDATE_PER_READ: Duration = Duration::from_micros(10);

/// Who answers for a participant group: its leader's node.
pub type NodeOf = Arc<dyn Fn(Participant) -> NodeId + Send + Sync>;

/// Runs `coord` over RPCs: participant `p` is node `node_of(p)` (the
/// leader of its group). Returns the commit's vector clock once every
/// participant installed, or why it aborted. A decided transaction whose
/// Install (or Release) a participant does not acknowledge within
/// `timing.give_up` is reported to the session (40003 for a commit), and
/// a thread of its own goes on sending it until every participant has
/// answered (a validated participant holds its locks and clock value
/// until then), for up to ten minutes or until the node stops.
pub fn commit(
    rpc: &Arc<Rpc>,
    coord: Coordinator,
    node_of: NodeOf,
    timing: CommitTiming,
) -> Result<VectorClock> {
    commit_with_decision_log(rpc, coord, node_of, timing, None)
}

/// Makes the coordinator's decision to commit durable before Install goes
/// out (for the two-phase-commit-over-Paxos baseline): given the
/// transaction and its epoch, returns once a record of it is replicated
/// in the coordinator's group.
pub type DecisionLog = Arc<dyn Fn(txn::TxnId, kv::Epoch) -> Result<()> + Send + Sync>;

/// [`commit`], calling `decision_log` (if any) between the commit point
/// and the first Install. Its failure is logged and the commit goes on:
/// the decision was taken already, and Install is idempotent.
pub fn commit_with_decision_log(
    rpc: &Arc<Rpc>,
    coord: Coordinator,
    node_of: NodeOf,
    timing: CommitTiming,
    decision_log: Option<DecisionLog>,
) -> Result<VectorClock> {
    let mut driver = Driver::new(coord);
    driver.decision_log = decision_log;
    match driver.run(rpc, &*node_of, timing.round_timeout, Some(timing.give_up)) {
        Ok(outcome) => outcome,
        Err(gave_up) => {
            let rpc = rpc.clone();
            let spawned = std::thread::Builder::new()
                .name("commit-resend".into())
                .spawn(move || {
                    let txn = driver.coord.txn();
                    let until = Instant::now() + Duration::from_secs(600);
                    match driver.finish(&rpc, &*node_of, timing.round_timeout, until) {
                        Some(_) => {
                            tracing::info!(txn, "a decided transaction was carried out late")
                        }
                        None => tracing::error!(
                            txn,
                            "a decided transaction could not be carried out on every participant"
                        ),
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a thread to finish a decided transaction");
            }
            Err(gave_up)
        }
    }
}

/// One commit's coordinator with the requests it awaits.
struct Driver {
    coord: Coordinator,
    tx: Sender<(u64, Result<Answer>)>,
    rx: Receiver<(u64, Result<Answer>)>,
    inflight: HashMap<u64, (Participant, Round)>,
    ready: txn::coord::Ready,
    decided: Option<(Round, Instant)>,
    started: bool,
    decision_log: Option<DecisionLog>,
}

impl Driver {
    fn new(coord: Coordinator) -> Driver {
        let (tx, rx) = mpsc::channel();
        Driver {
            coord,
            tx,
            rx,
            inflight: HashMap::new(),
            ready: txn::coord::Ready::default(),
            decided: None,
            started: false,
            decision_log: None,
        }
    }

    /// Runs to the outcome: `Ok(outcome)`, or `Err` once the decision has
    /// gone unacknowledged for `give_up` (the driver can go on).
    fn run(
        &mut self,
        rpc: &Rpc,
        node_of: &(dyn Fn(Participant) -> NodeId + Send + Sync),
        round_timeout: Duration,
        give_up: Option<Duration>,
    ) -> std::result::Result<Result<VectorClock>, Error> {
        if !self.started {
            self.started = true;
            self.ready = self.coord.start();
        }
        let mut deadline = Instant::now() + round_timeout;
        let result = loop {
            if let Some(outcome) = self.ready.outcome.take() {
                break Ok(outcome);
            }
            if !self.ready.requests.is_empty() {
                // A participant validating a large read set (a big scan's
                // rows are all checked again) is busy, not gone.
                let validating = self
                    .ready
                    .requests
                    .iter()
                    .any(|r| r.round == Round::Validate);
                let extra = if validating {
                    VALIDATE_PER_READ
                        * u32::try_from(self.coord.reads_to_validate()).unwrap_or(u32::MAX)
                } else {
                    Duration::ZERO
                };
                deadline = Instant::now() + round_timeout + extra;
            }
            let requests = std::mem::take(&mut self.ready.requests);
            let calls: Result<Vec<Call>> =
                requests.iter().map(|r| call_for(&self.coord, r)).collect();
            let calls = match calls {
                Ok(c) => c,
                Err(e) => break Ok(Err(e)), // a bug: the coordinator asked for the impossible
            };
            for (r, call) in requests.iter().zip(calls) {
                if matches!(r.round, Round::Install | Round::Release) && self.decided.is_none() {
                    if r.round == Round::Install
                        && let Some(log) = self.decision_log.take()
                        && let Err(e) = log(self.coord.txn(), self.coord.epoch())
                    {
                        tracing::warn!(txn = self.coord.txn(), error = %e, "cannot log the commit decision");
                    }
                    self.decided = Some((r.round, Instant::now()));
                }
                let id = rpc.send(node_of(r.to), call, &self.tx);
                self.inflight.insert(id, (r.to, r.round));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok((id, answer)) => {
                    if let Some((p, round)) = self.inflight.remove(&id) {
                        self.ready = self.coord.on_reply(p, round, answer.and_then(reply_of));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    for id in self.inflight.drain().map(|(id, _)| id) {
                        rpc.forget(id);
                    }
                    if let (Some((round, at)), Some(limit)) = (self.decided, give_up)
                        && at.elapsed() >= limit
                    {
                        break Err(gave_up(&self.coord, round, limit));
                    }
                    self.ready = self.coord.timeout();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    break Ok(Err(Error::internal("the commit's answer channel closed")));
                }
            }
        };
        for id in self.inflight.drain().map(|(id, _)| id) {
            rpc.forget(id);
        }
        result
    }

    /// Goes on after a give-up until the outcome, `until`, or the node
    /// stops (only this thread still holds its RPC end).
    fn finish(
        &mut self,
        rpc: &Arc<Rpc>,
        node_of: &(dyn Fn(Participant) -> NodeId + Send + Sync),
        round_timeout: Duration,
        until: Instant,
    ) -> Option<Result<VectorClock>> {
        while Instant::now() < until && Arc::strong_count(rpc) > 1 {
            self.ready = self.coord.timeout();
            self.decided = Some((Round::Install, Instant::now()));
            match self.run(rpc, node_of, round_timeout, Some(round_timeout * 4)) {
                Ok(outcome) => return Some(outcome),
                Err(_) => continue,
            }
        }
        None
    }
}

fn gave_up(coord: &Coordinator, round: Round, after: Duration) -> Error {
    match round {
        Round::Install => Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "transaction {} committed, but a participant did not confirm its installation within {after:?}; \
                 its outcome is not known to this session",
                coord.txn()
            ),
        ),
        _ => Error::new(
            ErrorKind::Unavailable,
            format!(
                "transaction {} was aborted, but a participant did not confirm the release of its locks within {after:?}",
                coord.txn()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kv::{ClockBuilder, Epoch, Shard};
    use repl::net::Local;
    use txn::ShardClient;
    use txn::client::Write;
    use txn::local::LocalShard;

    use super::*;

    const LOCK_TIMEOUT: Duration = Duration::from_millis(100);

    const TIMING: CommitTiming = CommitTiming {
        round_timeout: Duration::from_millis(500),
        give_up: Duration::from_secs(2),
    };

    /// Three shards on three nodes: node 1 leads shards 0 and 1, node 2
    /// shard 2, node 3 none (it only coordinates). 1 ms one way.
    pub(super) struct Net {
        local: Local,
        pub(super) stores: Vec<Arc<Shard>>,
        pub(super) rpcs: Vec<Arc<Rpc>>,
        _rt: tokio::runtime::Runtime,
    }

    pub(super) fn net() -> Net {
        net_with(None)
    }

    /// Shard 2's installs fail until `until` (a participant that cannot
    /// install for a while), the rest as they are.
    struct Refusing {
        inner: LocalShard,
        until: Instant,
    }

    impl ShardClient for Refusing {
        fn shard_id(&self) -> usize {
            self.inner.shard_id()
        }
        fn read(&self, key: &[u8]) -> Result<kv::ReadResult> {
            self.inner.read(key)
        }
        fn scan(
            &self,
            range: &txn::KeyRange,
            limit: Option<usize>,
            reverse: bool,
        ) -> Result<txn::client::ScanResult> {
            self.inner.scan(range, limit, reverse)
        }
        fn lock(&self, txn: u64, keys: &[Write]) -> Result<()> {
            self.inner.lock(txn, keys)
        }
        fn get_clock(&self, txn: u64) -> Result<u64> {
            self.inner.get_clock(txn)
        }
        fn validate(&self, txn: u64, v: &txn::client::Validation, held: &[Write]) -> Result<()> {
            self.inner.validate(txn, v, held)
        }
        fn install(&self, txn: u64, w: &[Write], vc: &VectorClock, e: Epoch) -> Result<()> {
            if Instant::now() < self.until {
                return Err(Error::new(ErrorKind::Io, "cannot install yet (test)"));
            }
            self.inner.install(txn, w, vc, e)
        }
        fn release(&self, txn: u64, writes: &[Write]) -> Result<()> {
            self.inner.release(txn, writes)
        }
        fn commit_local(&self, c: txn::client::LocalCommit<'_>) -> Result<VectorClock> {
            self.inner.commit_local(c)
        }
    }

    fn net_with(refuse_installs_on_2_until: Option<Instant>) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let local = Local::new();
        let stores: Vec<Arc<Shard>> = (0..3).map(|i| Arc::new(Shard::new(i))).collect();
        let client =
            |s: usize| Arc::new(LocalShard::new(stores[s].clone(), 3)) as Arc<dyn ShardClient>;
        let two = match refuse_installs_on_2_until {
            None => client(2),
            Some(until) => Arc::new(Refusing {
                inner: LocalShard::new(stores[2].clone(), 3),
                until,
            }),
        };
        let serves = [Some(vec![client(0), client(1)]), Some(vec![two]), None];
        let mut rpcs = Vec::new();
        for (i, shards) in serves.into_iter().enumerate() {
            let id = i as NodeId + 1;
            let peers: Vec<(NodeId, Duration)> = (1..=3)
                .filter(|&p| p != id)
                .map(|p| (p, Duration::from_millis(1)))
                .collect();
            let transport = Arc::new(local.endpoint(id, &peers));
            let participants = shards.map(|s| {
                let serving: Serving = Box::new(|| Ok(()));
                (Arc::new(Participants::new(s, LOCK_TIMEOUT)), serving)
            });
            let rpc = Arc::new(Rpc::start(
                id,
                transport,
                participants,
                2,
                Duration::from_millis(10),
                None,
            ));
            let weak = Arc::downgrade(&rpc);
            local.register(
                id,
                Arc::new(move |from, msg| {
                    if let (Message::Rpc(bytes), Some(rpc)) = (msg, weak.upgrade()) {
                        rpc.deliver(from, &bytes);
                    }
                }),
            );
            rpcs.push(rpc);
        }
        Net {
            local,
            stores,
            rpcs,
            _rt: rt,
        }
    }

    fn write(key: &str) -> Write {
        Write {
            key: key.as_bytes().to_vec(),
            value: Some(Arc::from(key.as_bytes())),
        }
    }

    /// A transaction writing `keys[s]` on each shard `s`.
    fn coordinator(txn: u64, keys: [&[&str]; 3]) -> Coordinator {
        let writes = keys
            .iter()
            .map(|ks| ks.iter().map(|k| write(k)).collect())
            .collect();
        let checks = vec![Default::default(); 3];
        Coordinator::new(txn, Epoch(1), writes, checks, ClockBuilder::new(3), |s| {
            u32::from(s == 2)
        })
    }

    /// Participant 0 is node 1, participant 1 node 2.
    fn node_of() -> NodeOf {
        Arc::new(|p| p + 1)
    }

    impl Net {
        fn rpc(&self, node: NodeId) -> &Arc<Rpc> {
            &self.rpcs[node as usize - 1]
        }
        fn present(&self, shard: usize, key: &str) -> bool {
            self.stores[shard].read(key.as_bytes()).value.is_some()
        }
        fn locked(&self, shard: usize, key: &str) -> bool {
            self.stores[shard].is_locked(key.as_bytes())
        }
    }

    #[test]
    fn a_commit_across_groups_installs_on_every_one() {
        let n = net();
        let vc = commit(
            n.rpc(3),
            coordinator(1, [&["a"], &[], &["c"]]),
            node_of(),
            TIMING,
        )
        .unwrap();
        assert!(
            vc.entries()[0] > 0 && vc.entries()[2] > 0,
            "{:?}",
            vc.entries()
        );
        assert!(n.present(0, "a") && n.present(2, "c"));
        assert!(!n.locked(0, "a") && !n.locked(2, "c"));
    }

    /// A participant out of reach: the Lock round times out, the
    /// transaction aborts, and the reachable participant's locks go.
    #[test]
    fn an_unreachable_participant_aborts_and_the_others_release() {
        let n = net();
        n.local.cut(3, 2);
        let e = commit(
            n.rpc(3),
            coordinator(2, [&["a"], &[], &["c"]]),
            node_of(),
            TIMING,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(!n.locked(0, "a") && !n.present(0, "a"));
        n.local.heal();
        commit(
            n.rpc(3),
            coordinator(3, [&["a"], &[], &["c"]]),
            node_of(),
            TIMING,
        )
        .unwrap();
        assert!(n.present(0, "a") && n.present(2, "c"));
    }

    /// A coordinator that locked and vanished: the participant's sweeper
    /// releases the locks once the deadline passes.
    #[test]
    fn locks_of_a_vanished_coordinator_are_released_by_the_sweeper() {
        let n = net();
        let lock = Call::Lock {
            txn: 4,
            epoch: Epoch(1),
            writes: vec![(2, vec![write("c")])],
        };
        n.rpc(3).call(2, lock, Duration::from_secs(2)).unwrap();
        assert!(n.locked(2, "c"));
        let until = Instant::now() + 20 * LOCK_TIMEOUT;
        while n.locked(2, "c") {
            assert!(
                Instant::now() < until,
                "the abandoned lock was never released"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Nodes 1 and 2 each coordinate transactions on both at once (a
    /// call to itself included): handlers run on their own threads, so
    /// neither waits on the other for good.
    #[test]
    fn two_coordinating_nodes_calling_each_other_do_not_deadlock() {
        let n = Arc::new(net());
        let threads: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|node| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        let (k0, k2) = (format!("{node}-a{i}"), format!("{node}-c{i}"));
                        let txn = (u64::from(node) << 32) | i;
                        let c = coordinator(txn, [&[&k0], &[], &[&k2]]);
                        commit(n.rpc(node), c, node_of(), TIMING).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for node in 1..=2 {
            for i in 0..100 {
                assert!(n.present(0, &format!("{node}-a{i}")));
                assert!(n.present(2, &format!("{node}-c{i}")));
            }
        }
    }

    /// A participant that cannot install for longer than the commit
    /// waits: the session hears 40003, and the decided transaction is
    /// still carried out by a thread of its own once the participant
    /// can (its locks and clock value are not left behind).
    #[test]
    fn a_decided_commit_is_carried_out_after_the_session_gave_up() {
        let n = net_with(Some(
            Instant::now() + TIMING.give_up + Duration::from_secs(1),
        ));
        let e = commit(
            n.rpc(3),
            coordinator(5, [&["a"], &[], &["c"]]),
            node_of(),
            TIMING,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutcomeUnknown, "{e}");
        assert!(n.present(0, "a"), "the other participant installed");
        let until = Instant::now() + Duration::from_secs(20);
        while !n.present(2, "c") || n.locked(2, "c") {
            assert!(
                Instant::now() < until,
                "the decided commit was never carried out"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn garbage_frames_are_counted_and_dropped() {
        let n = net();
        n.rpc(1).deliver(3, &[0xff, 0x00, 0x17]);
        assert_eq!(n.rpc(1).refused(), 1);
        // A stray answer is dropped too, without harm.
        let stray = postcard::to_stdvec(&Frame::Answer {
            id: 999,
            answer: Ok(Answer::Done),
        })
        .unwrap();
        n.rpc(1).deliver(3, &stray);
        let got = n.rpc(3).call(
            1,
            Call::Read {
                shard: 0,
                key: b"x".to_vec(),
            },
            TIMING.give_up,
        );
        assert!(matches!(got, Ok(Answer::Read(r)) if r.value.is_none()));
    }
}

#[cfg(test)]
mod remote_scans {
    use std::ops::Bound;
    use std::sync::Arc;

    use kv::{ClockBuilder, Epoch};
    use txn::ShardClient;
    use txn::client::KeyRange;

    use crate::groups::{GroupInfo, Layout, RemoteShard, Router, SCAN_PAGE};

    /// A scan of another group's shard larger than a page comes back
    /// whole, in key order, forward and reverse, with and without a
    /// limit, and says which part of the range it covered.
    #[test]
    fn remote_scans_are_read_in_pages_and_come_back_whole() {
        let net = super::tests::net();
        let rows = 2 * SCAN_PAGE + 500;
        let key = |i: usize| format!("k{i:08}").into_bytes();
        let mut vc = ClockBuilder::new(3);
        vc.observe(2, 1);
        for i in 0..rows {
            let value = (i % 7 != 3).then(|| Arc::from(&b"v"[..]));
            assert!(net.stores[2].try_lock(&key(i)).is_some());
            net.stores[2].install(&key(i), value, vc.build(), Epoch(1));
        }
        let present = (0..rows).filter(|i| i % 7 != 3).count();
        let layout = Layout {
            mine: 2,
            groups: [(vec![0, 1], 1), (vec![2], 2), (vec![], 3)]
                .into_iter()
                .enumerate()
                .map(|(g, (shards, node))| GroupInfo {
                    name: format!("g{g}"),
                    shards,
                    members: vec![node],
                })
                .collect(),
            gossip: std::time::Duration::from_millis(1),
            lock_timeout: std::time::Duration::from_secs(1),
            protocol: txn::coord::CommitProtocol::Speculative,
        };
        let router = Arc::new(Router::new(layout, 3));
        router.set_rpc(net.rpcs[2].clone());
        let remote = RemoteShard::new(router, 2);
        let all = KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        };
        let sorted = |r: &txn::client::ScanResult| r.records.windows(2).all(|w| w[0].0 < w[1].0);
        for reverse in [false, true] {
            let whole = remote.scan(&all, None, reverse).unwrap();
            let seen = whole
                .records
                .iter()
                .filter(|(_, r)| r.value.is_some())
                .count();
            assert_eq!(seen, present, "reverse {reverse}");
            assert!(sorted(&whole));
            assert_eq!(whole.covered, Some(all.clone()));
            let limit = SCAN_PAGE + 1234;
            let part = remote.scan(&all, Some(limit), reverse).unwrap();
            assert!(sorted(&part));
            let seen = part
                .records
                .iter()
                .filter(|(_, r)| r.value.is_some())
                .count();
            assert_eq!(seen, limit, "reverse {reverse}");
            let covered = part.covered.unwrap();
            if reverse {
                // The smallest key read, up to the end.
                assert_eq!(covered.start, Bound::Included(part.records[0].0.clone()));
                assert_eq!(covered.end, Bound::Unbounded);
                assert_eq!(part.records.last().unwrap().0, key(rows - 1));
            } else {
                assert_eq!(covered.start, Bound::Unbounded);
                assert_eq!(
                    covered.end,
                    Bound::Included(part.records.last().unwrap().0.clone())
                );
                assert_eq!(part.records[0].0, key(0));
            }
        }
        // A limit larger than what is there reads everything.
        let more = remote.scan(&all, Some(present + 10), false).unwrap();
        let seen = more
            .records
            .iter()
            .filter(|(_, r)| r.value.is_some())
            .count();
        assert_eq!(seen, present);
        assert_eq!(more.covered, Some(all));
    }
}
