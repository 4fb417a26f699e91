//! `txn` — transactions: Silo-style OCC with Mako's certification path.
//!
//! What this layer owns:
//! - [`Txn`] (get, scan, put, delete, commit, rollback): the coordinator of
//!   one interactive transaction, run on the session's node. See [`txn`] for
//!   the life of a transaction.
//! - [`coord::Coordinator`]: the certification rounds of a transaction
//!   with several participants, as a state machine without I/O (each
//!   round goes to every participant at once); [`Txn`] drives it in
//!   process.
//! - [`ShardClient`]: the participant RPCs (Lock, GetClock, Validate,
//!   Install, Read) a coordinator sends to each shard; a direct call in one
//!   process ([`local::LocalShard`]), an RPC across nodes later.
//! - [`participant::Participants`]: the participant side across nodes,
//!   with state per transaction (locks, clock values, coordinator, epoch,
//!   deadline), answering [`participant::Call`]s by transaction id;
//!   locks abandoned before Validate are released by a deadline.
//! - [`Db`]: the shards of the cluster as seen from one node, routing of
//!   partitioned keys by hash, epochs, and the durability gate.
//! - [`gate::CommitGate`]: where a commit waits until `VC ≤ watermark` before
//!   it is acknowledged (Mako §4.3). Without replication or persistence the
//!   gate opens immediately ([`gate::InstalledIsDurable`]).
//!
//! Caveats today: all shards live in one process, where [`Txn`] calls
//! each shard's [`ShardClient`] directly (no participant state is needed:
//! the coordinator cannot vanish without its shards); the RPC driver that
//! runs a coordinator against [`participant::Participants`] on other
//! nodes is not written yet. Epochs never change (failover and FVW
//! rollback come later).

pub mod client;
pub mod coord;
pub mod db;
pub mod gate;
pub mod local;
pub mod participant;
pub mod txn;

pub use client::{KeyRange, ShardClient, TxnId};
pub use db::{Db, Groups, ID_STRIDE, Remote};
pub use kv::{Error, ErrorKind, Result};
pub use txn::{
    CommitInfo, Durable, Entry, Installed, Placement, Savepoint, ScanPlacement, Txn, prefix_range,
};
