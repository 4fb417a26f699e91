//! TPC-C's random inputs (clauses 2.1.6 and 4.3.2): the SQL driver's own
//! generator (`mako tpcc`), so both draw their inputs the same way.

pub use tools::tpcc::random::{Random, last_name};
