//! `sql` — the SQL layer: parse, bind, plan as key ranges, execute over
//! `txn`.
//!
//! The life of a statement (see [`session`] for the transaction side):
//! 1. **Parse** with `sqlparser`'s PostgreSQL dialect ([`session::parse`]).
//! 2. **Bind** ([`bind`]): resolve tables through the catalog ([`catalog`],
//!    stored in the KV keyspace and read through the statement's own
//!    transaction) and columns through the FROM scope; type every expression
//!    with PostgreSQL's rules ([`types`]), infer `$n` parameter types from
//!    context, and build the operator tree ([`plan`]).
//! 3. **Plan access** ([`planner`]): predicates on the primary key become a
//!    point get, a range scan, or a full scan — the key-range plan `EXPLAIN`
//!    shows.
//! 4. **Execute** ([`exec`]): evaluate key bounds, read through `txn::Txn`
//!    (so every read is recorded for OCC validation), run the operators and
//!    buffer writes; the session commits.
//!
//! Only [`session::Session`] (execute, prepare, describe) is meant for
//! `pgserver`; the rest is public for tests and tools.
//!
//! Caveats today: no joins, subqueries, set operations or secondary indexes
//! (the SQL-breadth work); operators are row-at-a-time over materialized
//! vectors (vectorized execution over Arrow comes with that work).

pub mod bind;
pub mod catalog;
pub mod copy;
pub mod exec;
pub mod expr;
pub mod interrupt;
pub mod plan;
pub mod planner;
pub mod rowcodec;
pub mod sequence;
pub mod session;
pub mod syscat;
pub mod types;

pub use session::{Outcome, Prepared, Session, TxnStatus};
pub use types::{DataType, Value};

/// The version reported as `server_version`.
pub const SERVER_VERSION: &str = "15.0 (Mako)";

/// What `SELECT version()` returns.
pub const VERSION_STRING: &str = concat!(
    "PostgreSQL 15.0 (Mako ",
    env!("CARGO_PKG_VERSION"),
    "), a distributed serializable SQL database"
);
