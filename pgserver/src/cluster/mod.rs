//! A replicated node: the data directory, the replication stream and the
//! database handle of one member of a replica group.
//!
//! The node's commit log hands each batch of installed transactions to
//! the stream ([`kv::log::Replicate`]); the stream persists it as acceptor
//! state, replicates it with Multi-Paxos, and once the slot is chosen
//! (on a majority's disks) the log settles the batch's clock values, and
//! commit replies waiting for them go out. Followers install chosen
//! batches in slot order and refuse transactions (SQLSTATE 57P03, naming
//! the leader).
//!
//! A leader that loses its leadership (it was replaced while partitioned
//! or paused) may hold installed transactions that will never be chosen.
//! It does not try to undo them in place: it stops (see `on_deposed`), and
//! restarting it recovers from its disk and rejoins as a follower (`mako
//! start` restarts itself in place; failing that, it exits with status
//! 75, and `mako local-cluster` restarts it).
//!
//! A replica that fell behind what the others keep of the log (each keeps
//! `retain_slots` beyond what every replica has made durable, so a replica
//! that was down for long falls behind) is sent a snapshot of another's
//! checkpointed data. It stores the snapshot durably and restarts the same
//! way; opening the directory installs it, and the stream goes on from
//! the snapshot's slot.

pub mod config;
pub mod local;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kv::log::{LogEntry, Replicate, StreamValue, encode_batch};
use kv::persist::{Persist, SyncMode};
use kv::{Error, ErrorKind, Result};
use repl::net::{Deliver, Peer, Transport};
use repl::paxos::{self, Ballot, NodeId, NotLeader, Replica, Slot};
use repl::raft::{KeyValues, RaftDisk, RaftStream, RaftTiming};
use repl::snapshot::{Received, SnapshotSource};
use repl::stream::{Chosen, Event, Machine, Record, Status, Storage, Stream, Timing};
use txn::Db;

use config::ClusterConfig;

/// The exit status of a node that must be restarted (deposed, or holding
/// a snapshot to install) and could not restart itself in place
/// (EX_TEMPFAIL: start it again).
pub const DEPOSED_EXIT: i32 = 75;

/// Why a replicated node must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It led and was replaced: restart it, and it rejoins as a follower
    /// (`mako start` restarts itself in place, or exits with
    /// [`DEPOSED_EXIT`]).
    Deposed,
    /// Its disk or its data failed (a chosen batch it cannot decode, a
    /// stream that cannot persist): restarting alone will not help.
    Failed,
    /// It received a snapshot of another replica's data (it had fallen
    /// behind what the others keep of the log), stored durably: restart
    /// it, and opening the directory installs the snapshot.
    Reload,
}

/// What a stream carries back to its proposer: the value proposed (a
/// batch as installed, or a new leader's close).
type Token = StreamValue;

/// How to open a replicated node.
pub struct NodeOptions {
    /// The replica group's name (recorded in the data directory).
    pub group: String,
    /// This node's replica id.
    pub id: NodeId,
    /// The voting replicas (ids).
    pub voters: Vec<NodeId>,
    /// The learners (ids).
    pub learners: Vec<NodeId>,
    /// Every member's name and PostgreSQL address, by id (for messages
    /// that point clients to the leader).
    pub members: HashMap<NodeId, (String, SocketAddr)>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Partitions of the data.
    pub shards: usize,
    /// When commits are acknowledged relative to each replica's disk.
    pub sync: SyncMode,
    /// The leader's heartbeat interval.
    pub heartbeat: Duration,
    /// This node's election timeout (randomized up to twice this).
    pub election: Duration,
    /// The consensus protocol.
    pub consensus: Consensus,
    /// Applied slots kept for lagging replicas (beyond it they get a
    /// snapshot; raft builds one every this many entries).
    pub retain_slots: u64,
    /// How log entries are grouped into replicated batches.
    pub batching: kv::persist::Batching,
    /// Raft only: this node sets up the group's first membership (the
    /// preferred leader does).
    pub initialize: bool,
    /// A leader serves for this long after sending the messages a majority
    /// answered, then stops until it hears again (by then another may
    /// have been elected). Paxos replicas promise no other candidate
    /// until they have not heard their leader for a heartbeat longer; an
    /// openraft follower refuses votes for twice its election timeout
    /// after hearing its leader, which must not be shorter.
    pub lease: Duration,
    /// Called when this node, having served as leader, is deposed: its
    /// memory may hold transactions that will never be chosen, so it must
    /// stop (a restart recovers it as a follower).
    pub on_deposed: Box<dyn Fn(Stop) + Send + Sync>,
}

impl NodeOptions {
    /// The options of node `name` of a cluster configuration. The preferred
    /// leader stands for election first, then the voters in its datacenter,
    /// then the others.
    pub fn from_config(
        cfg: &ClusterConfig,
        name: &str,
        on_deposed: Box<dyn Fn(Stop) + Send + Sync>,
    ) -> std::result::Result<NodeOptions, String> {
        let node = cfg
            .node(name)
            .ok_or_else(|| format!("node {name:?} is not in the cluster config"))?;
        let group = cfg.group();
        let id_of = |n: &String| cfg.node_id(n).expect("checked by the config");
        let voters: Vec<NodeId> = std::iter::once(&group.leader)
            .chain(&group.followers)
            .map(id_of)
            .collect();
        let learners: Vec<NodeId> = group.learners.iter().map(id_of).collect();
        let id = id_of(&node.name);
        if !voters.contains(&id) && !learners.contains(&id) {
            return Err(format!(
                "node {name:?} is not a member of replica group {:?}",
                group.name
            ));
        }
        let leader_dc = &cfg.node(&group.leader).expect("checked").dc;
        let base = Duration::from_millis(cfg.election_timeout_ms);
        let election = if node.name == group.leader {
            base / 2
        } else if &node.dc == leader_dc {
            base
        } else {
            base * 2
        };
        let members = voters
            .iter()
            .chain(&learners)
            .map(|&i| {
                let n = cfg.node_by_id(i).expect("checked");
                (i, (n.name.clone(), n.listen))
            })
            .collect();
        Ok(NodeOptions {
            group: group.name.clone(),
            id,
            voters,
            learners,
            members,
            data_dir: cfg.data_dir(node),
            shards: usize::from(cfg.shards),
            sync: cfg.sync.parse()?,
            heartbeat: Duration::from_millis(cfg.heartbeat_ms),
            election,
            consensus: if cfg.consensus == "raft" {
                Consensus::Raft
            } else {
                Consensus::Paxos
            },
            initialize: node.name == group.leader,
            retain_slots: cfg.retain_slots,
            batching: kv::persist::Batching {
                max_entries: cfg.batch_max_entries,
                delay: Duration::from_millis(cfg.batch_delay_ms),
            },
            // The shortest stickiness is the preferred leader's openraft
            // follower lease (twice base/2); a heartbeat's margin.
            lease: base.saturating_sub(Duration::from_millis(cfg.heartbeat_ms)),
            on_deposed,
        })
    }
}

/// The peers of node `name`, with their replication addresses and the
/// one-way latency toward each.
pub fn peers(cfg: &ClusterConfig, name: &str) -> Vec<Peer> {
    let Some(me) = cfg.node(name) else {
        return Vec::new();
    };
    let group = cfg.group();
    std::iter::once(&group.leader)
        .chain(&group.followers)
        .chain(&group.learners)
        .filter(|n| *n != name)
        .filter_map(|n| {
            let node = cfg.node(n)?;
            Some(Peer {
                id: cfg.node_id(n)?,
                addr: node.repl,
                latency: cfg.latency(&me.dc, &node.dc),
            })
        })
        .collect()
}

/// State shared by the stream's machine, the log's [`Replicate`] handle
/// and `SHOW mako.replication`.
/// How a node proposes, whichever consensus runs its stream.
enum Proposer {
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
}

/// The consensus protocol of a replica group's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consensus {
    /// Our Multi-Paxos (`repl::paxos`).
    Paxos,
    /// openraft 0.9 (`repl::raft`).
    Raft,
}

impl Consensus {
    /// Its name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Consensus::Paxos => "multi-paxos",
            Consensus::Raft => "raft (openraft)",
        }
    }
}

struct Shared {
    consensus: Consensus,
    group: String,
    id: NodeId,
    voters: usize,
    sync: SyncMode,
    members: HashMap<NodeId, (String, SocketAddr)>,
    serving: AtomicBool,
    /// Microseconds after `epoch` until which the lease lets this node
    /// serve (0: it may not).
    lease_until: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    /// This node has served as leader in this life.
    served: AtomicBool,
    /// `Node::close` has begun: proposals lost now are the shutdown's,
    /// not a sign of deposition.
    closing: AtomicBool,
    status: Mutex<Status>,
    proposer: OnceLock<Proposer>,
    /// Where received messages go, once the stream runs.
    deliver: OnceLock<Deliver>,
    /// The applier thread.
    applier: Arc<Applier>,
    persist: Arc<Persist>,
}

impl Shared {
    fn name(&self, id: NodeId) -> String {
        self.members
            .get(&id)
            .map_or_else(|| format!("node {id}"), |(n, a)| format!("{n} ({a})"))
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serving, and within the lease (checked against the clock here: the
    /// stream's thread that clears `serving` may be held up).
    fn may_serve(&self) -> bool {
        self.serving.load(Ordering::Acquire)
            && (self.epoch.elapsed().as_micros() as u64) < self.lease_until.load(Ordering::Acquire)
    }
}

struct Handle(Arc<Shared>);

impl Replicate for Handle {
    fn propose(&self, batch: Vec<LogEntry>) -> std::result::Result<(), (Error, Vec<LogEntry>)> {
        let Some(proposer) = self.0.proposer.get() else {
            let e = Error::new(ErrorKind::NotServing, "replication is not running");
            return Err((e, batch));
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
        if self.0.may_serve() {
            return Ok(());
        }
        let st = self.0.status();
        let me = self.0.name(self.0.id);
        let message = match st.leader {
            Some(l) if l == self.0.id => format!(
                "node {me} leads replica group {} but cannot serve yet: it is recovering \
                 earlier leaders' entries or has not heard from a majority; retry shortly",
                self.0.group
            ),
            Some(l) => format!(
                "node {me} is a follower in replica group {} and does not serve transactions; \
                 the leader is {}",
                self.0.group,
                self.0.name(l)
            ),
            None => format!(
                "node {me} does not serve transactions: replica group {} has no leader right \
                 now (an election may be running); retry shortly",
                self.0.group
            ),
        };
        Err(Error::new(ErrorKind::NotServing, message))
    }

    fn durability(&self) -> String {
        format!(
            "replicated: a commit is acknowledged once a majority of the {} voting replicas of \
             group {} has it on disk ({}, sync={})",
            self.0.voters,
            self.0.group,
            self.0.consensus.name(),
            self.0.sync.name()
        )
    }

    fn status(&self) -> String {
        let st = self.0.status();
        let role = if st.serving {
            "leader"
        } else if st.leader == Some(self.0.id) {
            "leader (not serving)"
        } else if st.leader.is_some() {
            "follower"
        } else {
            "no leader"
        };
        let leader = st
            .leader
            .map_or_else(|| "unknown".into(), |l| self.0.name(l));
        format!(
            "group={} node={} role={role} leader={leader} epoch={} chosen={} checkpointed={} replicas={} consensus={}",
            self.0.group,
            self.0.name(self.0.id),
            st.ballot.epoch,
            st.chosen.saturating_sub(1),
            self.0.persist.checkpointed_slot().saturating_sub(1),
            self.0.members.len(),
            self.0.consensus.name(),
        )
    }
}

/// A chosen slot on its way to the applier thread.
enum ToApply {
    /// A value this node proposed.
    Own(Slot, StreamValue),
    /// Another's value, encoded.
    Other(Slot, Vec<u8>),
    /// A no-op (a hole a new leader filled, a raft blank entry).
    Noop(Slot),
}

/// The applier thread's progress, shared with the stream's machine (a new
/// leader serves once it has caught up) and the node (which stops and
/// joins the thread).
#[derive(Default)]
struct Applier {
    /// The last slot applied.
    applied: Mutex<Slot>,
    /// Set by `Node::close`: the thread applies what it was handed, then
    /// ends.
    stop: AtomicBool,
    /// The thread, once started.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Applier {
    /// The applier thread: applies what it is handed, in slot order. A
    /// chosen batch it cannot decode or apply stops the node: every
    /// replica has the same value, so this one's copy or code is broken,
    /// and applying later slots would diverge.
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
            let (slot, applied) = match item {
                ToApply::Own(slot, value) => (slot, persist.deliver(0, slot, Some(value), true)),
                ToApply::Other(slot, bytes) => (
                    slot,
                    StreamValue::decode(&bytes)
                        .and_then(|value| persist.deliver(0, slot, Some(value), false)),
                ),
                ToApply::Noop(slot) => (slot, persist.deliver(0, slot, None, false)),
            };
            if let Err(e) = applied {
                tracing::error!(slot, error = %e.message, "a chosen batch cannot be applied; stopping");
                stop(Stop::Failed);
                return;
            }
            *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = slot;
        }
    }

    /// The last slot applied.
    fn applied(&self) -> Slot {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the thread once it has applied what it was handed, and waits
    /// for it.
    fn close(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Applies chosen slots to the node's data, on a thread of its own so
/// that the stream's thread goes back to its disk and network at once.
struct NodeMachine {
    shared: Arc<Shared>,
    db: Arc<Db>,
    on_deposed: Arc<dyn Fn(Stop) + Send + Sync>,
    to_apply: Sender<ToApply>,
    /// The last slot handed to the applier.
    handed: Slot,
    /// The stream says this node may serve (once the applier caught up).
    want_serving: bool,
    /// The close this node proposed as leader, as `(leader, epoch)`: it
    /// serves once it has applied it.
    close: Option<(u64, u64)>,
}

impl NodeMachine {
    fn new(
        shared: Arc<Shared>,
        db: Arc<Db>,
        on_deposed: Arc<dyn Fn(Stop) + Send + Sync>,
    ) -> NodeMachine {
        let (tx, rx) = std::sync::mpsc::channel::<ToApply>();
        let applier = shared.applier.clone();
        let (persist, stop) = (shared.persist.clone(), on_deposed.clone());
        match std::thread::Builder::new()
            .name("mako-apply".into())
            .spawn(move || applier.run(rx, persist, stop))
        {
            Ok(t) => {
                *shared
                    .applier
                    .thread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(t)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the applier thread; stopping");
                on_deposed(Stop::Failed);
            }
        }
        NodeMachine {
            shared,
            db,
            on_deposed,
            to_apply: tx,
            handed: 0,
            want_serving: false,
            close: None,
        }
    }

    fn deposed(&self) {
        if self.shared.served.load(Ordering::Acquire)
            && !self.shared.closing.load(Ordering::Acquire)
        {
            self.shared.serving.store(false, Ordering::Release);
            tracing::error!(
                "this node was the leader and has been replaced: transactions it installed \
                 may never be chosen, so it stops; restart it to rejoin as a follower"
            );
            (self.on_deposed)(Stop::Deposed);
        }
    }

    /// A new leader serves once it has closed its predecessors' entries
    /// (see [`kv::log::Close`]): once the applier has applied everything
    /// chosen before, it proposes its close, and it serves once the
    /// close is applied, its transaction ids continuing after every id
    /// it has seen. Nothing here waits (this runs on the stream's thread,
    /// whose heartbeats must go on): it is called with each status and
    /// lease, and moves on when it can.
    fn try_serve(&mut self) {
        if !self.want_serving || self.shared.serving.load(Ordering::Acquire) {
            return;
        }
        if self.shared.applier.applied() < self.handed {
            return;
        }
        let mine = (u64::from(self.shared.id), self.shared.status().ballot.epoch);
        let persist = &self.shared.persist;
        if persist.last_close() != mine {
            if self.close == Some(mine) {
                return; // proposed; not applied yet
            }
            let close = match persist.close_for(mine.0, mine.1, vec![self.handed + 1]) {
                Ok(close) => StreamValue::Close(close),
                Err(e) => return self.failed(&e.message),
            };
            let Some(proposer) = self.shared.proposer.get() else {
                return;
            };
            if proposer.propose(close.encode(), close).is_ok() {
                tracing::info!(
                    epoch = mine.1,
                    "leading: closing earlier leaders' entries before serving"
                );
                self.close = Some(mine);
            }
            return;
        }
        self.db.advance_txn_ids(self.shared.persist.last_txn());
        self.shared.served.store(true, Ordering::Release);
        self.shared.serving.store(true, Ordering::Release);
    }
}

impl Machine<Token> for NodeMachine {
    fn apply(&mut self, slot: Slot, value: Chosen<Token>) {
        let item = match value {
            Chosen::Own(value) => ToApply::Own(slot, value),
            Chosen::Other(bytes) => ToApply::Other(slot, bytes),
            Chosen::Noop => ToApply::Noop(slot),
        };
        self.handed = slot;
        let _ = self.to_apply.send(item);
    }

    fn lost(&mut self, _token: Token, why: NotLeader) {
        tracing::warn!(
            ?why,
            "a batch was not replicated: this node no longer leads"
        );
        self.deposed();
    }

    fn status(&mut self, status: &Status) {
        *self.shared.status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
        if status.deposed {
            self.deposed();
        }
        self.want_serving = status.serving;
        if !status.serving {
            self.shared.serving.store(false, Ordering::Release);
        }
        self.try_serve();
    }

    fn durable(&mut self) -> Slot {
        self.shared.persist.checkpointed_slot()
    }

    fn lease(&mut self, until: Option<std::time::Instant>) {
        let micros = until.map_or(0, |t| {
            t.saturating_duration_since(self.shared.epoch).as_micros() as u64
        });
        self.shared.lease_until.store(micros, Ordering::Release);
        self.try_serve();
    }

    fn failed(&mut self, error: &str) {
        self.shared.serving.store(false, Ordering::Release);
        tracing::error!(error, "the replication stream failed; stopping");
        (self.on_deposed)(Stop::Failed);
    }

    fn snapshot(&mut self) -> Option<Box<dyn SnapshotSource>> {
        match self.shared.persist.snapshot(SNAPSHOT_PART_BYTES) {
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
        if seq == 0 {
            tracing::info!(
                slot,
                "this replica fell behind what the others keep of the log: receiving a snapshot"
            );
        }
        persist.stage_snapshot(seq, data).map_err(|e| e.message)?;
        if !last {
            return Ok(Received::Stored);
        }
        persist.snapshot_staged(slot).map_err(|e| e.message)?;
        tracing::info!(
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

/// Stream records in the data directory's `repl` column family: `p` holds
/// the promise, `s` + slot (big-endian) each slot's accepted or chosen
/// value.
struct PersistStorage(Arc<Persist>);

const PROMISE_KEY: &[u8] = b"p";

fn slot_key(slot: Slot) -> Vec<u8> {
    let mut k = b"s".to_vec();
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// `c` + slot: the slot is chosen with the value under its `s` key.
fn marker_key(slot: Slot) -> Vec<u8> {
    let mut k = b"c".to_vec();
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

impl Storage for PersistStorage {
    fn persist(&mut self, records: &[Record]) -> std::result::Result<(), String> {
        let mut puts = Vec::with_capacity(records.len());
        let mut sync = false;
        for r in records {
            sync |= r.needs_sync();
            let key = match r {
                Record::Promised(_) => PROMISE_KEY.to_vec(),
                Record::Accepted(slot, ..) | Record::Chosen(slot, _) => slot_key(*slot),
                Record::ChosenAsAccepted(slot) => marker_key(*slot),
            };
            let value = postcard::to_allocvec(r).map_err(|e| e.to_string())?;
            puts.push((key, value));
        }
        self.0.repl_write(&puts, sync).map_err(|e| e.message)
    }

    fn forget(&mut self, slot: Slot) -> std::result::Result<(), String> {
        self.0
            .repl_delete_range(&marker_key(0), &marker_key(slot))
            .and_then(|()| self.0.repl_delete_range(&slot_key(0), &slot_key(slot)))
            .map_err(|e| e.message)
    }
}

impl RaftDisk for PersistStorage {
    fn write(
        &self,
        puts: KeyValues,
        delete: Option<(Vec<u8>, Vec<u8>)>,
        sync: bool,
    ) -> std::result::Result<(), String> {
        if let Some((from, to)) = delete {
            self.0
                .repl_delete_range(&from, &to)
                .map_err(|e| e.message)?;
        }
        if puts.is_empty() {
            return Ok(());
        }
        self.0.repl_write(&puts, sync).map_err(|e| e.message)
    }

    fn scan(&self) -> std::result::Result<KeyValues, String> {
        self.0.repl_records().map_err(|e| e.message)
    }
}

fn load_state(persist: &Persist) -> Result<paxos::HardState> {
    let mut records = Vec::new();
    for (k, v) in persist.repl_records()? {
        // Only the Paxos stream's keys (`p`, `c…`, `s…`).
        if !matches!(k.first(), Some(b'p' | b'c' | b's')) {
            continue;
        }
        let r: Record = postcard::from_bytes(&v).map_err(|e| {
            kv::log::corrupt(format!("replication record {k:?} cannot be decoded: {e}"))
        })?;
        records.push(r);
    }
    Ok(Record::load(records))
}

/// A replicated node, opened but not yet connected to its peers.
pub struct Node {
    opts: NodeOptions,
    shared: Arc<Shared>,
    /// The database handle to serve.
    pub db: Arc<Db>,
    /// The data directory.
    pub persist: Arc<Persist>,
    /// What recovery found.
    pub recovered: kv::persist::Recovered,
    replica: Option<Replica>,
    stream: Option<Stream<Token>>,
    raft: Option<Arc<RaftStream<Token>>>,
}

impl Node {
    /// Opens (or creates) the node's data directory and recovers it.
    pub fn open(opts: NodeOptions) -> Result<Node> {
        let popts = kv::persist::Options {
            sync: opts.sync,
            shards: Some(opts.shards),
            // The consensus is part of what the directory holds: one
            // protocol's state means nothing to the other.
            replica_of: Some(match opts.consensus {
                Consensus::Paxos => opts.group.clone(),
                Consensus::Raft => format!("{} (raft)", opts.group),
            }),
            batching: opts.batching,
            ..kv::persist::Options::default()
        };
        let (persist, shards, recovered) = kv::persist::open(&opts.data_dir, popts)?;
        let state = load_state(&persist)?;
        let tick = (opts.heartbeat / 2).clamp(Duration::from_millis(1), Duration::from_millis(5));
        let ticks = |d: Duration| (d.as_micros() / tick.as_micros()).max(1) as u32;
        let cfg = paxos::Config {
            id: opts.id,
            voters: opts.voters.clone(),
            learners: opts.learners.clone(),
            election_ticks: ticks(opts.election),
            heartbeat_ticks: ticks(opts.heartbeat),
            max_batch: 64,
            // Replicas stick to their leader a heartbeat longer than its
            // lease.
            stick_ticks: ticks(opts.lease + opts.heartbeat),
            retain: opts.retain_slots,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        let replica = Replica::restore(cfg, state, recovered.applied_slot);
        let shared = Arc::new(Shared {
            group: opts.group.clone(),
            id: opts.id,
            voters: opts.voters.len(),
            sync: opts.sync,
            members: opts.members.clone(),
            serving: AtomicBool::new(false),
            lease_until: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            served: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            proposer: OnceLock::new(),
            deliver: OnceLock::new(),
            applier: Arc::default(),
            consensus: opts.consensus,
            persist: persist.clone(),
        });
        persist.start_replication(Arc::new(Handle(shared.clone())))?;
        let db = Db::logged(shards, persist.clone(), recovered.last_txn);
        Ok(Node {
            opts,
            shared,
            db,
            persist,
            recovered,
            replica: Some(replica),
            stream: None,
            raft: None,
        })
    }

    /// Where the transport delivers this node's messages.
    pub fn deliver(&self) -> Deliver {
        let shared = self.shared.clone();
        Arc::new(move |from, msg| {
            if let Some(d) = shared.deliver.get() {
                d(from, msg);
            }
        })
    }

    /// Starts the stream over `transport`; a raft stream runs its tasks on
    /// `runtime`.
    pub fn start(
        &mut self,
        transport: Arc<dyn Transport>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<()> {
        let Some(replica) = self.replica.take() else {
            return Ok(());
        };
        let on_deposed = std::mem::replace(&mut self.opts.on_deposed, Box::new(|_| {}));
        let machine = NodeMachine::new(self.shared.clone(), self.db.clone(), Arc::from(on_deposed));
        if self.opts.consensus == Consensus::Raft {
            let timing = RaftTiming {
                heartbeat: self.opts.heartbeat,
                election: self.opts.election,
                lease: self.opts.lease,
                snapshot_every: self.opts.retain_slots,
            };
            let stream = RaftStream::start(
                runtime,
                self.opts.id,
                &self.opts.voters,
                &self.opts.learners,
                Arc::new(PersistStorage(self.persist.clone())),
                Box::new(machine),
                transport,
                timing,
                self.recovered.applied_slot,
                self.opts.initialize,
            )
            .map_err(|e| Error::new(ErrorKind::Io, e))?;
            let _ = self.shared.deliver.set(stream.deliver());
            let _ = self.shared.proposer.set(Proposer::Raft(stream.clone()));
            self.raft = Some(stream);
            return Ok(());
        }
        let timing = Timing {
            tick: (self.opts.heartbeat / 2)
                .clamp(Duration::from_millis(1), Duration::from_millis(5)),
            lease: self.opts.lease,
        };
        let stream = Stream::start(
            replica,
            Box::new(PersistStorage(self.persist.clone())),
            Box::new(machine),
            transport,
            timing,
        );
        let tx = stream.sender();
        let _ = self.shared.deliver.set(Arc::new(move |from, msg| {
            let _ = tx.send(Event::Message(from, msg));
        }));
        let _ = self.shared.proposer.set(Proposer::Paxos(stream.sender()));
        self.stream = Some(stream);
        Ok(())
    }

    /// The stream's status.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// True while this node serves as leader.
    pub fn serving(&self) -> bool {
        self.shared.may_serve()
    }

    /// The ballot this node promised.
    pub fn ballot(&self) -> Ballot {
        self.status().ballot
    }

    /// Stops the stream, then closes the data directory (a final
    /// checkpoint).
    pub fn close(mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.serving.store(false, Ordering::Release);
        if let Some(mut s) = self.stream.take() {
            s.stop();
        }
        if let Some(r) = self.raft.take() {
            r.stop();
        }
        self.shared.applier.close();
        self.persist.close();
    }
}
