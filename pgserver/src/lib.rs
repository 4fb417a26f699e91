//! `pgserver` — the `mako` binary's library: the PostgreSQL wire-protocol
//! front end and the command line's pieces (replica groups are the `node`
//! crate's).
//!
//! - [`server`]: accepts TCP connections and runs one [`handler::Connection`]
//!   per client over the node's shards ([`txn::Db`]).
//! - [`handler`]: pgwire's simple and extended query handlers over a
//!   `sql::Session`, run on the blocking pool.
//! - `protocol`: a client connection's loop, which checks every message
//!   before pgwire decodes it.
//! - [`sessions`]: live sessions by pid and secret key, for cancel
//!   requests and shutdown.
//! - [`wire`]: type OIDs and the text/binary encodings of values.
//! - [`sqlstate`]: the one place error kinds become SQLSTATE codes.
//! - [`local_cluster`]: `mako local-cluster`, every node of a cluster file
//!   as a process of its own.
//!
//! The sqllogictest runner and the TPC-C driver behind `mako slt` and
//! `mako tpcc` are in the `tools` crate: they are clients.
//!
//! Nothing of `sql` but `Session` (execute, prepare, describe) is used here.

mod buffered;
pub mod handler;
pub mod local_cluster;
mod protocol;
#[doc(hidden)]
pub use protocol::decode_client_bytes;
pub mod server;
pub mod sessions;
pub mod sqlstate;
pub mod wire;
