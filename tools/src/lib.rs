//! `tools` — clients that drive a PostgreSQL-wire server from outside, for
//! Mako or PostgreSQL alike; the `mako` binary's `tpcc` and `slt`
//! commands.
//!
//! - [`tpcc`]: the TPC-C driver (load, run, check), whose SQL is in
//!   `testdata/tpcc/`.
//! - [`slt`]: the sqllogictest runner (sqllogictest-rs and SQLite formats).
//!
//! Nothing here depends on the server's crates: it speaks the wire
//! protocol through `tokio-postgres` only (and so it builds alongside
//! them).

pub mod slt;
pub mod tpcc;
