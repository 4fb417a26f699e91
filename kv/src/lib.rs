//! `kv` — one shard's in-memory, multi-version store (the bottom layer).
//!
//! What this layer owns:
//! - [`keycode`]: the order-preserving encoding of SQL values into key bytes,
//!   and [`keys`]: the layout of the keyspace (tables, indexes, catalog).
//! - [`shard::Shard`]: an ordered concurrent index of [`record::Record`]s. A
//!   record has an atomic lock/version word (Silo's TID word) and a chain of
//!   versions, each tagged with the writer's [`clock::VectorClock`] and epoch.
//! - [`error`]: the error type every layer shares.
//!
//! The life of a write, as the transaction layer drives it:
//! 1. `try_lock(key)` (no-wait) creates the record if needed and locks it;
//! 2. `next_clock()` hands out the shard's next clock value (GetClock);
//! 3. `check(key, version, held)` validates each read (Validate);
//! 4. `install(key, value, vc, epoch)` pushes a new version and releases the
//!    lock, pruning versions the watermark no longer needs (Install).
//!
//! Durability: a participant appends each transaction it installs to a
//! [`log::CommitLog`] (with the keys still locked), and a logged shard
//! ([`Shard::logged`]) tracks which clock values are durable, giving its
//! watermark. A version whose vector clock all shards' watermarks cover
//! ([`shard::Watermarks`]) is *stable*: commit replies wait for that, only
//! stable versions let older ones be freed, and if the log fails, the
//! versions that can never become stable are rolled back
//! ([`Shard::rollback`]). With the `rocksdb` feature, [`persist`]
//! implements the log on RocksDB: group commit, checkpoints of the stable
//! state, and recovery of exactly the stable transactions. Nothing above
//! this crate names RocksDB.

pub mod clock;
pub mod error;
pub mod keycode;
pub mod keys;
pub mod log;
#[cfg(feature = "rocksdb")]
pub mod persist;
pub mod record;
pub mod shard;

pub use clock::{ClockBuilder, Epoch, VectorClock};
pub use error::{Error, ErrorKind, Result};
pub use record::ReadResult;
pub use shard::{Shard, ShardId};
