//! `Db`: a node's handle on the shards of a cluster.
//!
//! It owns the participant clients (one per shard), routes partitioned keys
//! to shards, hands out transaction ids and the current epoch, and holds the
//! durability gate every commit passes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kv::log::CommitLog;
use kv::{Epoch, Shard, ShardId};

use crate::client::{ShardClient, TxnId};
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
    /// The next transaction id.
    next_txn: AtomicU64,
    /// What an acknowledged commit survives, for people.
    durability: String,
    /// The log, when commits are logged (for its replication status).
    log: Option<Arc<dyn CommitLog>>,
    /// Counters.
    pub stats: Stats,
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
            durability: "off (in memory only: everything is lost when the process stops)".into(),
            log: None,
            stats: Stats::default(),
        })
    }

    /// In-process shards whose commits are appended to `log` and
    /// acknowledged once durable (`shards` must be logged shards, see
    /// [`Shard::logged`]). Transaction ids continue after `last_txn`.
    pub fn logged(shards: Vec<Arc<Shard>>, log: Arc<dyn CommitLog>, last_txn: TxnId) -> Arc<Db> {
        assert!(!shards.is_empty(), "a cluster has at least one shard");
        let n = shards.len();
        let clients = shards
            .iter()
            .map(|s| {
                Arc::new(LocalShard::logged(s.clone(), n, log.clone())) as Arc<dyn ShardClient>
            })
            .collect();
        Arc::new(Db {
            shards: clients,
            stores: shards.clone(),
            epoch: AtomicU64::new(1),
            gate: Arc::new(WatermarkGate::new(shards)),
            next_txn: AtomicU64::new(last_txn + 1),
            durability: log.durability(),
            log: Some(log.clone()),
            stats: Stats::default(),
        })
    }

    /// What an acknowledged commit survives (`SHOW mako.durability`).
    pub fn durability(&self) -> &str {
        &self.durability
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
        let id = self.next_txn.fetch_add(1, Ordering::Relaxed);
        Txn::new(self.clone(), id)
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
        self.next_txn.fetch_max(last + 1, Ordering::AcqRel);
    }

    /// A transaction id (exposed for callers that log them).
    pub fn peek_next_txn_id(&self) -> TxnId {
        self.next_txn.load(Ordering::Relaxed)
    }
}
