//! `Db`: a node's handle on the shards of a cluster.
//!
//! It owns the participant clients (one per shard), routes partitioned keys
//! to shards, hands out transaction ids and the current epoch, and holds the
//! durability gate every commit passes through.
//!
//! With several replica groups ([`Db::grouped`]), the shards other groups
//! hold are reached through clients that call their leaders, and a
//! transaction that touches any of them is certified by a [`Remote`]
//! (the node layer's RPC driver of [`crate::coord::Coordinator`]).
//! Transaction ids are then unique across the cluster: node `n` hands out
//! ids `k * ID_STRIDE + n`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kv::log::CommitLog;
use kv::{Epoch, Shard, ShardId};

use kv::{Result, VectorClock};

use crate::client::{ShardClient, TxnId};
use crate::coord::{Coordinator, Participant};
use crate::gate::{CommitGate, InstalledIsDurable, WatermarkGate};
use crate::local::LocalShard;
use crate::txn::Txn;

/// Commit and abort counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions committed through the single-shard short path.
    pub single_shard_commits: AtomicU64,
    /// Transactions committed through the four cross-shard rounds.
    pub cross_shard_commits: AtomicU64,
    /// Transactions aborted by certification.
    pub aborts: AtomicU64,
    /// Committed transactions that touched shards of other replica
    /// groups.
    pub cross_group_commits: AtomicU64,
}

/// With several replica groups, node `n` hands out transaction ids
/// `k * ID_STRIDE + n` (so node ids stay below it).
pub const ID_STRIDE: u64 = 1024;

/// Certifies transactions that touch shards of other replica groups.
pub trait Remote: Send + Sync {
    /// Who answers for `shard`: its group.
    fn participant(&self, shard: ShardId) -> Participant;
    /// Runs the coordinator to its outcome (blocking the calling thread).
    fn commit(&self, coord: Coordinator) -> Result<VectorClock>;
}

/// The other replica groups, as [`Db::grouped`] takes them.
pub struct Groups {
    /// Per shard: the client of a shard another group holds (`None`: a
    /// shard of this node).
    pub remote_clients: Vec<Option<Arc<dyn ShardClient>>>,
    /// The certification of transactions that touch them.
    pub remote: Arc<dyn Remote>,
    /// This node's id (below [`ID_STRIDE`]).
    pub node: u32,
}

/// A node's view of the cluster's shards.
pub struct Db {
    /// One participant client per shard, indexed by shard id.
    shards: Vec<Arc<dyn ShardClient>>,
    /// The in-process stores, when the shards live in this process.
    stores: Vec<Arc<Shard>>,
    /// The current epoch (Mako §5); constant until failover exists.
    epoch: AtomicU64,
    /// Where commit replies wait for durability.
    gate: Arc<dyn CommitGate>,
    /// The next transaction id's counter (ids are `k * id_stride +
    /// id_offset`).
    next_txn: AtomicU64,
    id_stride: u64,
    id_offset: u64,
    /// Per shard: held by this node (not another replica group).
    local: Vec<bool>,
    /// Certification with other replica groups, if there are any.
    remote: Option<Arc<dyn Remote>>,
    /// What an acknowledged commit survives, for people.
    durability: String,
    /// The log, when commits are logged (for its replication status).
    log: Option<Arc<dyn CommitLog>>,
    /// Counters.
    pub stats: Stats,
    /// Ranges of counter values this node took (durably) and has not
    /// handed out yet, by counter: the next value and how many are left.
    /// SQL sequences draw from here so that a sequence is not a hot key.
    pub counter_blocks: std::sync::Mutex<HashMap<u64, (i64, i64)>>,
}

impl Db {
    /// `shards` in-process shards, acknowledged once installed.
    pub fn in_process(shards: usize) -> Arc<Db> {
        assert!(shards > 0, "a cluster has at least one shard");
        let stores: Vec<Arc<Shard>> = (0..shards).map(|i| Arc::new(Shard::new(i))).collect();
        let clients = stores
            .iter()
            .map(|s| Arc::new(LocalShard::new(s.clone(), shards)) as Arc<dyn ShardClient>)
            .collect();
        Arc::new(Db {
            shards: clients,
            stores,
            epoch: AtomicU64::new(1),
            gate: Arc::new(InstalledIsDurable),
            next_txn: AtomicU64::new(1),
            id_stride: 1,
            id_offset: 0,
            local: vec![true; shards],
            remote: None,
            durability: "off (in memory only: everything is lost when the process stops)".into(),
            log: None,
            stats: Stats::default(),
            counter_blocks: Default::default(),
        })
    }

    /// In-process shards whose commits are appended to `log` and
    /// acknowledged once durable (`shards` must be logged shards, see
    /// [`Shard::logged`]). Transaction ids continue after `last_txn`.
    pub fn logged(shards: Vec<Arc<Shard>>, log: Arc<dyn CommitLog>, last_txn: TxnId) -> Arc<Db> {
        Db::with_log(shards, log, last_txn, None)
    }

    /// A node of one replica group among several: `shards` are every
    /// shard of the cluster as this node's data directory has them
    /// (logged; another group's are empty copies whose watermark follows
    /// that group's), the node's own commits go to `log`, and `groups`
    /// reaches the others.
    pub fn grouped(
        shards: Vec<Arc<Shard>>,
        log: Arc<dyn CommitLog>,
        last_txn: TxnId,
        groups: Groups,
    ) -> Arc<Db> {
        Db::with_log(shards, log, last_txn, Some(groups))
    }

    fn with_log(
        shards: Vec<Arc<Shard>>,
        log: Arc<dyn CommitLog>,
        last_txn: TxnId,
        groups: Option<Groups>,
    ) -> Arc<Db> {
        assert!(!shards.is_empty(), "a cluster has at least one shard");
        let n = shards.len();
        let remote_client = |i: usize| {
            groups
                .as_ref()
                .and_then(|g| g.remote_clients.get(i).cloned().flatten())
        };
        let local: Vec<bool> = (0..n).map(|i| remote_client(i).is_none()).collect();
        let clients = shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                remote_client(i).unwrap_or_else(|| {
                    Arc::new(LocalShard::logged(s.clone(), n, log.clone())) as Arc<dyn ShardClient>
                })
            })
            .collect();
        let (id_stride, id_offset, first) = match &groups {
            None => (1, 0, last_txn + 1),
            Some(g) => {
                assert!(
                    u64::from(g.node) < ID_STRIDE,
                    "node ids stay below ID_STRIDE"
                );
                // Past every id this node's group logged, and past what
                // it may have used before a restart for transactions that
                // left nothing in its own log (writes on other groups
                // only, aborted ones): a thousand ids per millisecond of
                // the clock.
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
                    .saturating_mul(1000);
                (
                    ID_STRIDE,
                    u64::from(g.node),
                    (last_txn / ID_STRIDE + 1).max(clock),
                )
            }
        };
        Arc::new(Db {
            shards: clients,
            stores: shards.clone(),
            epoch: AtomicU64::new(1),
            gate: Arc::new(WatermarkGate::new(shards)),
            next_txn: AtomicU64::new(first),
            id_stride,
            id_offset,
            local,
            remote: groups.map(|g| g.remote),
            durability: log.durability(),
            log: Some(log.clone()),
            stats: Stats::default(),
            counter_blocks: Default::default(),
        })
    }

    /// True when this node holds `shard` (not another replica group).
    pub fn is_local(&self, shard: ShardId) -> bool {
        self.local.get(shard).copied().unwrap_or(false)
    }

    /// The first shard this node holds: where replicated data (the
    /// catalog) is read when a transaction has no home shard yet.
    pub fn first_local(&self) -> ShardId {
        self.local.iter().position(|&l| l).unwrap_or(0)
    }

    /// The certification with other replica groups, when the transaction
    /// touches `shards` and some are theirs.
    pub(crate) fn remote_for(&self, shards: &[ShardId]) -> Option<&Arc<dyn Remote>> {
        self.remote
            .as_ref()
            .filter(|_| shards.iter().any(|&s| !self.is_local(s)))
    }

    /// What an acknowledged commit survives (`SHOW mako.durability`).
    pub fn durability(&self) -> &str {
        &self.durability
    }

    /// This node's commit counters since it started (`SHOW
    /// mako.commits`): `single_shard=… cross_shard=… cross_group=…
    /// aborts=…` (cross_group counts the commits, among the others, that
    /// touched another replica group's shards).
    pub fn commit_counts(&self) -> String {
        let s = &self.stats;
        format!(
            "single_shard={} cross_shard={} cross_group={} aborts={}",
            s.single_shard_commits.load(Ordering::Relaxed),
            s.cross_shard_commits.load(Ordering::Relaxed),
            s.cross_group_commits.load(Ordering::Relaxed),
            s.aborts.load(Ordering::Relaxed),
        )
    }

    /// This node's replication status (`SHOW mako.replication`).
    pub fn replication_status(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| l.status())
            .unwrap_or_else(|| "not replicated (a single node)".into())
    }

    /// Starts a transaction.
    pub fn begin(self: &Arc<Self>) -> Txn {
        let k = self.next_txn.fetch_add(1, Ordering::Relaxed);
        Txn::new(self.clone(), k * self.id_stride + self.id_offset)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard a partitioned key with this partition hash lives on.
    pub fn shard_for(&self, hash: u64) -> ShardId {
        (hash % self.shards.len() as u64) as ShardId
    }

    /// The participant client of `shard`.
    pub fn client(&self, shard: ShardId) -> &Arc<dyn ShardClient> {
        &self.shards[shard]
    }

    /// The in-process store of `shard`, if it lives in this process.
    pub fn store(&self, shard: ShardId) -> Option<&Arc<Shard>> {
        self.stores.get(shard)
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// The durability gate.
    pub fn gate(&self) -> &dyn CommitGate {
        &*self.gate
    }

    /// Transaction ids continue after `last` (a replica taking over the
    /// leadership continues after the ids it has applied).
    pub fn advance_txn_ids(&self, last: TxnId) {
        self.next_txn
            .fetch_max(last / self.id_stride + 1, Ordering::AcqRel);
    }

    /// A transaction id (exposed for callers that log them).
    pub fn peek_next_txn_id(&self) -> TxnId {
        self.next_txn.load(Ordering::Relaxed) * self.id_stride + self.id_offset
    }
}
