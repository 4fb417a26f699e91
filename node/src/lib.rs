//! `node` — the replica-group layer: the data directory, the replication
//! streams and the database handle of one member of a replica group, and
//! the cluster file that describes the groups ([`config`]).
//!
//! The node's commit log hands each batch of installed transactions to a
//! stream ([`kv::log::Replicate`]; with several streams, each committing
//! thread's to its own); the stream persists it as acceptor state, replicates it with
//! Multi-Paxos, and once the slot is chosen (on a majority's disks) the
//! log settles the batch's clock values, and commit replies waiting for
//! them go out. Every replica applies chosen entries through the data
//! directory's replay (per shard in clock order, stable ones only); a new
//! leader closes its predecessors' entries before it serves (see
//! `machine`). Followers refuse transactions (SQLSTATE 57P03, naming
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
pub mod groups;
mod machine;
pub mod rpc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kv::persist::{Persist, SyncMode};
use kv::{Error, ErrorKind, Result};
use repl::net::{Deliver, Peer, Transport};
use repl::paxos::{self, Ballot, Envelope, NodeId, Replica, Slot};
use repl::raft::{KeyValues, RaftDisk, RaftStream, RaftTiming};
use repl::stream::{Event, Record, Status, Storage, Stream, Timing};
use txn::Db;

use config::ClusterConfig;
use machine::{Handle, NodeMachine, Proposer, Shared, Token};

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
    /// This node, a learner, may lead (Paxos only; see
    /// [`repl::paxos::Config::standby`]): the learners in the preferred
    /// leader's datacenter are.
    pub standby: bool,
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
    /// Streams (replicated logs) the leader spreads its batches over.
    pub streams: usize,
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
    /// With several replica groups: the groups and this node's place
    /// among them (`shards` is then the cluster's shard count).
    pub layout: Option<groups::Layout>,
    /// Called when this node, having served as leader, is deposed: its
    /// memory may hold transactions that will never be chosen, so it must
    /// stop (a restart recovers it as a follower).
    pub on_deposed: Box<dyn Fn(Stop) + Send + Sync>,
}

impl NodeOptions {
    /// The options of node `name` of a cluster configuration. The preferred
    /// leader stands for election first, then (once it has failed) the
    /// learners in its datacenter, which may lead with Paxos, then the
    /// voters in its datacenter, then the others.
    pub fn from_config(
        cfg: &ClusterConfig,
        name: &str,
        on_deposed: Box<dyn Fn(Stop) + Send + Sync>,
    ) -> std::result::Result<NodeOptions, String> {
        let node = cfg
            .node(name)
            .ok_or_else(|| format!("node {name:?} is not in the cluster config"))?;
        let group = cfg
            .group_of(name)
            .ok_or_else(|| format!("node {name:?} is not a member of any replica group"))?;
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
        // A learner in the leader's datacenter takes over first: the
        // leadership stays near the clients. (An openraft learner cannot
        // stand: it would have to be made a voter first.)
        let standby = group.standby_learners
            && learners.contains(&id)
            && &node.dc == leader_dc
            && cfg.consensus != "raft";
        let election = if node.name == group.leader || standby {
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
        let protocol = cfg.commit_protocol()?;
        Ok(NodeOptions {
            group: group.name.clone(),
            id,
            voters,
            learners,
            standby,
            members,
            data_dir: cfg.data_dir(node),
            shards: cfg.shard_count(),
            layout: (cfg.groups.len() > 1).then(|| groups::Layout {
                mine: cfg
                    .groups
                    .iter()
                    .position(|g| g.name == group.name)
                    .expect("its own group"),
                groups: cfg
                    .groups
                    .iter()
                    .map(|g| groups::GroupInfo {
                        name: g.name.clone(),
                        shards: cfg.group_shards(g),
                        members: g.members().map(id_of).collect(),
                    })
                    .collect(),
                gossip: Duration::from_millis(cfg.watermark_gossip_ms),
                lock_timeout: Duration::from_millis(cfg.lock_timeout_ms),
                protocol,
            }),
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
            streams: usize::from(cfg.streams),
            batching: kv::persist::Batching {
                max_entries: cfg.batch_max_entries,
                delay: Duration::from_millis(cfg.batch_delay_ms),
                max_in_flight: cfg.batch_max_in_flight,
                ..Default::default()
            },
            // The shortest stickiness is the preferred leader's openraft
            // follower lease (twice base/2); a heartbeat's margin.
            lease: base.saturating_sub(Duration::from_millis(cfg.heartbeat_ms)),
            on_deposed,
        })
    }
}

/// The peers of node `name`, with their replication addresses and the
/// one-way latency toward each: its group's members, and with several
/// groups every other node too (participant calls and watermarks).
pub fn peers(cfg: &ClusterConfig, name: &str) -> Vec<Peer> {
    let Some(me) = cfg.node(name) else {
        return Vec::new();
    };
    let Some(group) = cfg.group_of(name) else {
        return Vec::new();
    };
    cfg.nodes
        .iter()
        .filter(|n| n.name != name)
        .filter(|n| cfg.groups.len() > 1 || group.has_member(&n.name))
        .filter_map(|node| {
            Some(Peer {
                id: cfg.node_id(&node.name)?,
                addr: node.repl,
                latency: cfg.latency(&me.dc, &node.dc),
            })
        })
        .collect()
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

/// Stream records in the data directory's `repl` column family, under
/// the stream's prefix (none for stream 0; `x` and the stream number,
/// big-endian, for the others): `p` holds the promise, `s` + slot
/// (big-endian) each slot's accepted or chosen value, and `c` + slot
/// marks a slot chosen with its accepted value.
struct PersistStorage {
    persist: Arc<Persist>,
    prefix: Vec<u8>,
}

impl PersistStorage {
    fn new(persist: &Arc<Persist>, stream: usize) -> PersistStorage {
        let prefix = match stream {
            0 => Vec::new(),
            k => [&b"x"[..], &(k as u16).to_be_bytes()].concat(),
        };
        PersistStorage {
            persist: persist.clone(),
            prefix,
        }
    }

    fn key(&self, kind: u8, slot: Option<Slot>) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(kind);
        if let Some(slot) = slot {
            k.extend_from_slice(&slot.to_be_bytes());
        }
        k
    }

    /// The stream's records.
    fn load(&self) -> Result<paxos::HardState> {
        let mut records = Vec::new();
        for (k, v) in self.persist.repl_records()? {
            let Some(rest) = k.strip_prefix(self.prefix.as_slice()) else {
                continue;
            };
            // Only this Paxos stream's keys (`p`, `c…`, `s…`).
            if !matches!(rest.first(), Some(b'p' | b'c' | b's')) {
                continue;
            }
            let r: Record = postcard::from_bytes(&v).map_err(|e| {
                kv::log::corrupt(format!("replication record {k:?} cannot be decoded: {e}"))
            })?;
            records.push(r);
        }
        Ok(Record::load(records))
    }
}

impl Storage for PersistStorage {
    fn persist(&mut self, records: &[Record]) -> std::result::Result<(), String> {
        let mut puts = Vec::with_capacity(records.len());
        let mut sync = false;
        for r in records {
            sync |= r.needs_sync();
            let key = match r {
                Record::Promised(_) => self.key(b'p', None),
                Record::Accepted(slot, ..) | Record::Chosen(slot, _) => self.key(b's', Some(*slot)),
                Record::ChosenAsAccepted(slot) => self.key(b'c', Some(*slot)),
            };
            let value = postcard::to_allocvec(r).map_err(|e| e.to_string())?;
            puts.push((key, value));
        }
        self.persist.repl_write(&puts, sync).map_err(|e| e.message)
    }

    fn forget(&mut self, slot: Slot) -> std::result::Result<(), String> {
        let p = &self.persist;
        p.repl_delete_range(&self.key(b'c', Some(0)), &self.key(b'c', Some(slot)))
            .and_then(|()| {
                p.repl_delete_range(&self.key(b's', Some(0)), &self.key(b's', Some(slot)))
            })
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
        let p = &self.prefix;
        if let Some((from, to)) = delete {
            self.persist
                .repl_delete_range(&[p, &from[..]].concat(), &[p, &to[..]].concat())
                .map_err(|e| e.message)?;
        }
        if puts.is_empty() {
            return Ok(());
        }
        let puts: KeyValues = puts
            .into_iter()
            .map(|(k, v)| ([p, &k[..]].concat(), v))
            .collect();
        self.persist.repl_write(&puts, sync).map_err(|e| e.message)
    }

    /// This stream's records, without the stream's prefix.
    fn scan(&self) -> std::result::Result<KeyValues, String> {
        let records = self.persist.repl_records().map_err(|e| e.message)?;
        Ok(records
            .into_iter()
            .filter_map(|(k, v)| {
                if self.prefix.is_empty() && k.first() == Some(&b'x') {
                    return None; // another stream's
                }
                Some((k.strip_prefix(self.prefix.as_slice())?.to_vec(), v))
            })
            .collect())
    }
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
    /// The streams' replicas, until the streams start.
    replicas: Vec<Replica>,
    streams: Vec<Stream<Token>>,
    raft: Vec<Arc<RaftStream<Token>>>,
    /// With several groups: the routes to the others.
    router: Option<Arc<groups::Router>>,
}

impl Node {
    /// Opens (or creates) the node's data directory and recovers it.
    pub fn open(opts: NodeOptions) -> Result<Node> {
        let streams = opts.streams.max(1);
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
            streams,
            ..kv::persist::Options::default()
        };
        let (persist, shards, recovered) = kv::persist::open(&opts.data_dir, popts)?;
        let tick = (opts.heartbeat / 2).clamp(Duration::from_millis(1), Duration::from_millis(5));
        let ticks = |d: Duration| (d.as_micros() / tick.as_micros()).max(1) as u32;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut replicas = Vec::with_capacity(streams);
        for k in 0..streams {
            let cfg = paxos::Config {
                id: opts.id,
                voters: opts.voters.clone(),
                learners: opts.learners.clone(),
                standby: opts.standby,
                election_ticks: ticks(opts.election),
                heartbeat_ticks: ticks(opts.heartbeat),
                max_batch: 64,
                // Replicas stick to their leader a heartbeat longer than
                // its lease.
                stick_ticks: ticks(opts.lease + opts.heartbeat),
                retain: opts.retain_slots,
                seed: seed.wrapping_add(k as u64),
            };
            let state = PersistStorage::new(&persist, k).load()?;
            let mut replica = Replica::restore(cfg, state, recovered.applied_slots[k]);
            // Stream 0 leads the way (see `machine`); it stands on its own.
            if k > 0 {
                replica.set_candidacy(false);
            }
            replicas.push(replica);
        }
        let shared = Arc::new(Shared::new(
            opts.consensus,
            opts.group.clone(),
            opts.id,
            opts.voters.len(),
            opts.sync,
            opts.members.clone(),
            streams,
            opts.election,
            persist.clone(),
            opts.layout.as_ref().map(|l| l.protocol),
        ));
        persist.start_replication(Arc::new(Handle(Arc::downgrade(&shared))))?;
        let (db, router) = match &opts.layout {
            None => (
                Db::logged(shards, persist.clone(), recovered.last_txn),
                None,
            ),
            Some(layout) => {
                let remote = layout.remote_shards(shards.len());
                persist.set_remote_shards(&remote)?;
                let router = Arc::new(groups::Router::new(layout.clone(), shards.len()));
                let remote_clients = remote
                    .iter()
                    .enumerate()
                    .map(|(s, &r)| {
                        r.then(|| {
                            Arc::new(groups::RemoteShard::new(router.clone(), s))
                                as Arc<dyn txn::ShardClient>
                        })
                    })
                    .collect();
                let db = Db::grouped(
                    shards,
                    persist.clone(),
                    recovered.last_txn,
                    txn::Groups {
                        remote_clients,
                        remote: router.clone(),
                        node: opts.id,
                    },
                );
                (db, Some(router))
            }
        };
        Ok(Node {
            opts,
            shared,
            db,
            persist,
            recovered,
            replicas,
            streams: Vec::new(),
            raft: Vec::new(),
            router,
        })
    }

    /// Where the transport delivers this node's messages.
    pub fn deliver(&self) -> Deliver {
        // Weak: a transport outliving the node must not keep its data
        // directory open.
        let shared = Arc::downgrade(&self.shared);
        Arc::new(move |from, msg| {
            if let Some(d) = shared.upgrade().as_ref().and_then(|s| s.deliver.get()) {
                d(from, msg);
            }
        })
    }

    /// Starts the streams over `transport`; a raft stream runs its tasks
    /// on `runtime`.
    pub fn start(
        &mut self,
        transport: Arc<dyn Transport>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<()> {
        let replicas = std::mem::take(&mut self.replicas);
        if replicas.is_empty() {
            return Ok(());
        }
        let _ = self.shared.transport.set(transport.clone());
        let on_deposed = std::mem::replace(&mut self.opts.on_deposed, Box::new(|_| {}));
        let machines = NodeMachine::start(&self.shared, &self.db, Arc::from(on_deposed));
        // Stream 0's messages go untagged, the others' tagged with their
        // stream.
        let tagged = |k: usize| -> Arc<dyn Transport> {
            match k {
                0 => transport.clone(),
                k => Arc::new(Tagged {
                    inner: transport.clone(),
                    stream: k as u16,
                }),
            }
        };
        let mut delivers: Vec<Deliver> = Vec::with_capacity(replicas.len());
        let mut proposers = Vec::with_capacity(replicas.len());
        if self.opts.consensus == Consensus::Raft {
            for (k, machine) in machines.into_iter().enumerate() {
                let timing = RaftTiming {
                    heartbeat: self.opts.heartbeat,
                    election: self.opts.election,
                    lease: self.opts.lease,
                    snapshot_every: self.opts.retain_slots,
                    // Stream 0 leads the way (see `machine`).
                    candidacy: k == 0,
                };
                let stream = RaftStream::start(
                    runtime,
                    self.opts.id,
                    &self.opts.voters,
                    &self.opts.learners,
                    Arc::new(PersistStorage::new(&self.persist, k)),
                    Box::new(machine),
                    tagged(k),
                    timing,
                    self.recovered.applied_slots[k],
                    self.opts.initialize,
                )
                .map_err(|e| Error::new(ErrorKind::Io, e))?;
                delivers.push(stream.deliver());
                proposers.push(Proposer::Raft(stream.clone()));
                self.raft.push(stream);
            }
        } else {
            let timing = Timing {
                tick: (self.opts.heartbeat / 2)
                    .clamp(Duration::from_millis(1), Duration::from_millis(5)),
                lease: self.opts.lease,
            };
            for (k, (replica, machine)) in replicas.into_iter().zip(machines).enumerate() {
                let stream = Stream::start(
                    replica,
                    Box::new(PersistStorage::new(&self.persist, k)),
                    Box::new(machine),
                    tagged(k),
                    timing.clone(),
                );
                let tx = stream.sender();
                delivers.push(Arc::new(move |from, msg| {
                    let _ = tx.send(Event::Message(from, msg));
                }));
                proposers.push(Proposer::Paxos(stream.sender()));
                self.streams.push(stream);
            }
        }
        // Proposers first: a stream that elects as soon as messages flow
        // finds them (to let the other streams stand).
        *self.shared.proposers() = proposers;
        let rpc = self
            .router
            .clone()
            .map(|r| self.start_groups(&r, transport.clone()));
        let me = self.opts.id;
        let _ = self.shared.deliver.set(Arc::new(move |from, msg| {
            if from == me {
                return; // a frame of this node's own (two nodes on one address)
            }
            if let paxos::Message::Rpc(bytes) = &msg {
                if let Some(rpc) = &rpc {
                    rpc.deliver(from, bytes);
                }
                return;
            }
            let (k, msg) = match msg {
                paxos::Message::Stream { stream, msg } => (usize::from(stream), *msg),
                msg => (0, msg),
            };
            if let Some(d) = delivers.get(k) {
                d(from, msg);
            }
        }));
        self.shared.roles();
        if self.opts.consensus == Consensus::Raft && self.shared.streams.len() > 1 {
            // openraft calls the machine only on changes: the check for a
            // stream left without a leader runs on a timer (holding the
            // node weakly, so that a closed node goes away).
            let shared = Arc::downgrade(&self.shared);
            let every = self.opts.election / 2;
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match shared.upgrade() {
                        Some(s) if !s.closing.load(Ordering::Acquire) => s.roles(),
                        _ => return,
                    }
                }
            });
        }
        Ok(())
    }

    /// With several groups: starts the participant service, the
    /// reports of this group's watermarks to the other groups, and the
    /// thread that takes theirs.
    fn start_groups(
        &self,
        router: &Arc<groups::Router>,
        transport: Arc<dyn Transport>,
    ) -> Arc<rpc::Rpc> {
        let layout = router.layout().clone();
        let mine = layout.groups[layout.mine].clone();
        let participants = Arc::new(
            txn::participant::Participants::new(
                mine.shards
                    .iter()
                    .map(|&s| self.db.client(s).clone())
                    .collect(),
                layout.lock_timeout,
            )
            .with_protocol(layout.protocol),
        );
        if let Some(&first) = mine.shards.first() {
            router.set_decision_log(self.db.client(first).clone());
        }
        // A handler thread waits for nothing in Mako's protocol; in the
        // two-phase-commit baseline it waits for a replication round in
        // Validate and Install, so that one needs a thread per call in
        // flight (about one per client).
        let workers = match layout.protocol {
            txn::coord::CommitProtocol::Speculative => 4,
            txn::coord::CommitProtocol::TwoPhaseOverPaxos => 128,
        };
        let me = self.opts.id;
        let weak = Arc::downgrade(&self.shared);
        let serving: rpc::Serving = Box::new(move || match weak.upgrade() {
            Some(s) if s.may_serve() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Unavailable,
                format!("node {me} does not lead its replica group now"),
            )),
        });
        // Other groups' watermarks are applied on a thread of their own
        // (raising them takes the replay's lock), not on the transport's.
        let (tx, rx) = std::sync::mpsc::channel::<(NodeId, u32, Vec<(usize, u64)>)>();
        let on_watermarks: rpc::OnWatermarks = Box::new(move |from, group, marks| {
            let _ = tx.send((from, group, marks));
        });
        let rpc = Arc::new(rpc::Rpc::start(
            me,
            transport,
            Some((participants, serving)),
            workers,
            (layout.lock_timeout / 4).max(Duration::from_millis(1)),
            Some(on_watermarks),
        ));
        router.set_rpc(rpc.clone());
        let (r, persist) = (router.clone(), Arc::downgrade(&self.persist));
        std::thread::Builder::new()
            .name("watermarks-in".into())
            .spawn(move || {
                for (from, group, marks) in rx {
                    let Some(persist) = persist.upgrade() else {
                        return;
                    };
                    let g = group as usize;
                    if r.layout().groups.get(g).is_none_or(|i| !i.members.contains(&from)) || g == r.layout().mine {
                        continue;
                    }
                    r.learned_leader(g, from);
                    for (s, w) in marks {
                        // Only the sender's group's shards, as it leads them.
                        if r.holder(s) == Some(g)
                            && let Err(e) = persist.remote_watermark(s, w)
                        {
                            tracing::error!(shard = s, error = %e, "cannot take another group's watermark");
                        }
                    }
                }
            })
            .expect("spawn the watermark thread");
        let others: Vec<NodeId> = layout
            .groups
            .iter()
            .enumerate()
            .filter(|&(g, _)| g != layout.mine)
            .flat_map(|(_, info)| info.members.iter().copied())
            .collect();
        let (weak, rpc2) = (Arc::downgrade(&self.shared), Arc::downgrade(&rpc));
        let stores: Vec<(usize, Arc<kv::Shard>)> = mine
            .shards
            .iter()
            .filter_map(|&s| Some((s, self.db.store(s)?.clone())))
            .collect();
        let (every, group) = (
            layout.gossip.max(Duration::from_micros(100)),
            layout.mine as u32,
        );
        std::thread::Builder::new()
            .name("watermarks-out".into())
            .spawn(move || {
                let mut last: Vec<(usize, u64)> = Vec::new();
                let mut sent = std::time::Instant::now();
                loop {
                    std::thread::sleep(every);
                    let (Some(shared), Some(rpc)) = (weak.upgrade(), rpc2.upgrade()) else {
                        return;
                    };
                    if shared.closing.load(Ordering::Acquire) {
                        return;
                    }
                    // An elected leader that does not serve yet reports too:
                    // its watermarks come from chosen entries, and other
                    // groups' new leaders may wait for them before they
                    // serve (after a restart of the whole cluster, say).
                    if !shared.may_serve() && shared.status().leader != Some(me) {
                        continue;
                    }
                    let marks: Vec<(usize, u64)> =
                        stores.iter().map(|(s, st)| (*s, st.watermark())).collect();
                    // Unchanged marks still go out now and then: they say
                    // who leads.
                    if marks == last && sent.elapsed() < Duration::from_millis(100) {
                        continue;
                    }
                    for &n in &others {
                        rpc.send_watermarks(n, group, marks.clone());
                    }
                    last = marks;
                    sent = std::time::Instant::now();
                }
            })
            .expect("spawn the watermark thread");
        rpc
    }

    /// Stream 0's status (the group's leadership).
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Every stream's status, stream 0 first.
    pub fn statuses(&self) -> Vec<Status> {
        self.shared
            .streams
            .iter()
            .map(|s| s.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// True while this node serves as leader.
    pub fn serving(&self) -> bool {
        self.shared.may_serve()
    }

    /// The ballot this node promised (on stream 0).
    pub fn ballot(&self) -> Ballot {
        self.status().ballot
    }

    /// Stops the streams, then closes the data directory (a final
    /// checkpoint).
    pub fn close(mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.serving.store(false, Ordering::Release);
        for mut s in std::mem::take(&mut self.streams) {
            s.stop();
        }
        for r in std::mem::take(&mut self.raft) {
            r.stop();
        }
        self.shared.proposers().clear();
        self.shared.applier.close();
        self.persist.close();
    }
}

/// A transport for stream `stream` (not 0) of a node running several:
/// its messages travel tagged with the stream, and the receiving node
/// routes them to its own replica of that stream.
struct Tagged {
    inner: Arc<dyn Transport>,
    stream: u16,
}

impl Transport for Tagged {
    fn send(&self, env: Envelope) {
        self.inner.send(Envelope {
            msg: paxos::Message::Stream {
                stream: self.stream,
                msg: Box::new(env.msg),
            },
            ..env
        });
    }
}

/// A present row of a shard: (shard, key, value).
pub type ShardRow = (usize, Vec<u8>, Vec<u8>);

/// Every row of every shard of a stopped replica's data directory
/// (`group` as the directory records it: `g1`, or `g1 (raft)`), in
/// order: replicas that agree give equal lists. Tests compare replicas
/// with it.
pub fn replica_rows(dir: &std::path::Path, group: &str, streams: usize) -> Result<Vec<ShardRow>> {
    let opts = kv::persist::Options {
        streams,
        replica_of: Some(group.into()),
        ..kv::persist::Options::default()
    };
    let (persist, shards, _) = kv::persist::open(dir, opts)?;
    let mut rows = Vec::new();
    for (s, shard) in shards.iter().enumerate() {
        shard.scan(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            |k, r| {
                if let Some(v) = r.value {
                    rows.push((s, k.to_vec(), v.to_vec()));
                }
                std::ops::ControlFlow::Continue(())
            },
        );
    }
    persist.close();
    Ok(rows)
}
