//! The keyspace, in sort order.
//!
//! Every key in a shard is an order-preserving byte string:
//!
//! ```text
//! <table id: u32 BE> <index id: u32 BE> <key columns, each encoded by keycode>
//! ```
//!
//! | table id | what lives there | placement |
//! |---|---|---|
//! | 1 | the catalog: one entry per table, keyed by its name (`index 1`, name as text) | replicated to every shard |
//! | 2 | catalog sequences, e.g. the next table id (`index 1`, sequence name as text) | replicated to every shard |
//! | 3..=999 | reserved for future system tables | |
//! | ≥ 1000 | user tables: index 1 is the primary key (value = the row); higher ids are secondary indexes | partitioned by the hash of the first primary-key column |
//!
//! Partitioned rows go to shard `partition_hash(first pk column) % shards`.
//! Replicated keys have a copy on every shard: a write goes to all of them in
//! one transaction, a read may use any one (see `txn`'s `Placement`).

/// Identifies a table in the keyspace.
pub type TableId = u32;
/// Identifies an index of a table; [`PRIMARY_INDEX`] holds the rows.
pub type IndexId = u32;

/// The catalog table: table definitions keyed by name.
pub const CATALOG_TABLE: TableId = 1;
/// Catalog sequences (next table id).
pub const SEQUENCE_TABLE: TableId = 2;
/// The first id handed to a user table.
pub const FIRST_USER_TABLE: TableId = 1000;
/// The index id of a table's primary key, whose entries are the rows.
pub const PRIMARY_INDEX: IndexId = 1;

/// Returns the key prefix shared by every entry of `(table, index)`.
pub fn index_prefix(table: TableId, index: IndexId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(&table.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The length of [`index_prefix`].
pub const INDEX_PREFIX_LEN: usize = 8;

/// Hashes the encoded first primary-key column of a row to choose its shard.
///
/// FNV-1a followed by a 64-bit finalizer (from SplitMix64) so that similar
/// keys (consecutive integers) spread evenly over `hash % shards`.
pub fn partition_hash(encoded_first_column: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in encoded_first_column {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keycode::encode_int;

    #[test]
    fn prefixes_sort_by_table_then_index() {
        assert!(index_prefix(1, 1) < index_prefix(1, 2));
        assert!(index_prefix(1, 9) < index_prefix(2, 1));
        assert!(index_prefix(999, 1) < index_prefix(FIRST_USER_TABLE, 1));
        assert_eq!(index_prefix(7, 7).len(), INDEX_PREFIX_LEN);
    }

    #[test]
    fn consecutive_ints_spread_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let mut k = Vec::new();
            encode_int(&mut k, i);
            counts[(partition_hash(&k) % 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
