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
//! Caveats: the store is in memory only; persistence to RocksDB will live in
//! this crate behind an interface the layers above use without naming RocksDB.
//! Deleted keys stay in the index as tombstones until version GC exists.

pub mod clock;
pub mod error;
pub mod keycode;
pub mod keys;
pub mod record;
pub mod shard;

pub use clock::{ClockBuilder, VectorClock};
pub use error::{Error, ErrorKind, Result};
pub use record::ReadResult;
pub use shard::{Shard, ShardId};
