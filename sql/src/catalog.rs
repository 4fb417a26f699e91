//! The catalog: table definitions stored in the KV keyspace.
//!
//! Each table's definition (with its indexes) is one replicated key under
//! `kv::keys::CATALOG_TABLE` index 1 keyed by the table's name (JSON value);
//! views are under index 2, and index names (mapped to their table) under
//! index 3. The next table id is a replicated sequence key. Because the catalog is read and written through the same
//! transactions as rows, DDL is transactional: a `CREATE TABLE` inside
//! `BEGIN … ROLLBACK` never existed, and a statement that used a definition
//! conflicts (40001) with a concurrent DDL change of it.
//!
//! Decoded definitions are cached per thread by their stored bytes, so a hot
//! statement pays one point read per table, not a JSON parse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kv::keys::{self, IndexId, TableId};
use kv::{Error, ErrorKind, Result, keycode};
use serde::{Deserialize, Serialize};
use txn::{Placement, ScanPlacement, Txn, prefix_range};

use crate::types::{DataType, Value};

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The column name (case-folded unless it was quoted).
    pub name: String,
    /// Its type, with modifiers.
    pub ty: DataType,
    /// False for `NOT NULL` and primary-key columns.
    pub nullable: bool,
    /// The `DEFAULT` expression as SQL text, evaluated at each insert.
    pub default: Option<String>,
    /// `GENERATED ALWAYS AS IDENTITY`: an INSERT may not give a value.
    #[serde(default)]
    pub identity_always: bool,
}

/// A table definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The table's id in the keyspace; never reused.
    pub id: TableId,
    /// The table name.
    pub name: String,
    /// The columns, in definition order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order. Empty when
    /// the table has no primary key: rows are then keyed by a hidden,
    /// generated row id.
    pub primary_key: Vec<usize>,
    /// Secondary indexes.
    #[serde(default)]
    pub indexes: Vec<Index>,
    /// The id the next secondary index gets.
    #[serde(default = "first_secondary_index")]
    pub next_index_id: IndexId,
    /// `WITH (replicated = true)`: a copy of every row on every shard
    /// (small, read-mostly tables such as TPC-C's `item`), so reading it
    /// never adds a shard to a transaction.
    #[serde(default)]
    pub replicated: bool,
    /// `CHECK` constraints, checked on every row written.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// `FOREIGN KEY` constraints of this (referencing) table.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    /// The tables whose foreign keys reference this one (by name, each
    /// once; this table itself when it references itself).
    #[serde(default)]
    pub referenced_by: Vec<String>,
    /// Bumped by every change of the definition, so that a statement bound
    /// against an older one is bound again.
    #[serde(default)]
    pub version: u64,
}

/// What a foreign key does to the referencing rows when the row they
/// reference is deleted or its key changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FkAction {
    /// Fail at the end of the statement if references remain (the default).
    NoAction,
    /// Fail at once if references remain.
    Restrict,
    /// Delete the referencing rows, or give them the new key.
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
    /// Set the referencing columns to their defaults.
    SetDefault,
}

impl FkAction {
    /// The SQL words.
    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A `FOREIGN KEY` constraint, stored with the referencing table: a row
/// whose key columns are all non-NULL must match a row of `parent` on
/// `parent_columns` (its primary key or a unique constraint). Checked in
/// the writing transaction, so the referenced row is in its read set and
/// certification keeps the constraint across shards and replica groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The constraint name (PostgreSQL's default: `t_a_b_fkey`).
    pub name: String,
    /// The referencing columns of this table.
    pub columns: Vec<usize>,
    /// The referenced table.
    pub parent: String,
    /// The referenced columns, one per referencing column.
    pub parent_columns: Vec<usize>,
    /// `ON DELETE`.
    pub on_delete: FkAction,
    /// `ON UPDATE`.
    pub on_update: FkAction,
}

/// A `CHECK` constraint: a row passes unless the expression is false.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The constraint name (PostgreSQL's: `t_col_check`, `t_check`).
    pub name: String,
    /// The condition as SQL text over the table's columns.
    pub sql: String,
}

impl Table {
    /// A name for a new CHECK constraint not taken by another: `t_col_check`
    /// for one column, `t_check` otherwise, numbered when taken.
    pub fn check_name(&self, column: Option<&str>) -> String {
        let base = match column {
            Some(c) => format!("{}_{c}_check", self.name),
            None => format!("{}_check", self.name),
        };
        free_name(base, |n| self.checks.iter().any(|c| c.name == n))
    }
}

/// `base`, or `base1`, `base2`… : the first that `taken` does not claim
/// (how PostgreSQL numbers the names it makes up for constraints).
pub fn free_name(base: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken(n))
        .expect("a free name")
}

fn first_secondary_index() -> IndexId {
    keys::PRIMARY_INDEX + 1
}

/// A secondary index. Its entries live in the same shard as their row:
/// key `<table><index id><indexed columns><primary key>`, empty value, so
/// an entry leads to its row by key and a prefix of the indexed columns is
/// a key range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// The index id within its table's keyspace (≥ 2).
    pub id: IndexId,
    /// The index name (unique among all relations and indexes).
    pub name: String,
    /// Indexes into the table's columns, in index order.
    pub columns: Vec<usize>,
    /// `UNIQUE`: no two rows with equal, non-NULL indexed values.
    pub unique: bool,
}

/// A sequence (`CREATE SEQUENCE`, or behind a `SERIAL` / identity column).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// An id from the same counter as tables; its value counter is keyed
    /// by it, so a sequence dropped and created again starts afresh.
    pub id: TableId,
    /// The sequence name.
    pub name: String,
    /// The first value.
    pub start: i64,
    /// The step (not zero; negative counts down).
    pub increment: i64,
    /// The smallest value.
    pub min: i64,
    /// The largest value.
    pub max: i64,
    /// Wrap around at the end instead of failing.
    pub cycle: bool,
    /// How many values a node takes at a time (`CACHE`).
    pub cache: i64,
    /// The column whose `DEFAULT` uses it (`SERIAL`, identity, `OWNED
    /// BY`): dropped with that table.
    #[serde(default)]
    pub owned_by: Option<(String, String)>,
}

/// A view: a stored query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// An id from the same sequence as tables, so a cached plan notices a
    /// view that was dropped and created again.
    pub id: TableId,
    /// The view name.
    pub name: String,
    /// The defining query, as SQL text.
    pub sql: String,
    /// The view's column names.
    pub columns: Vec<String>,
}

impl Table {
    /// The position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The name of the primary-key constraint, as PostgreSQL names it.
    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// The key prefix of every row of the table.
    pub fn row_prefix(&self) -> Vec<u8> {
        keys::index_prefix(self.id, keys::PRIMARY_INDEX)
    }

    /// The key and placement of a row, from its primary-key values in key
    /// order. Partitioned by the hash of the first key column.
    pub fn key_for(&self, pk_values: &[Value]) -> (Vec<u8>, Placement) {
        let mut key = self.row_prefix();
        let mut hash = 0;
        for (i, v) in pk_values.iter().enumerate() {
            let start = key.len();
            encode_key_value(&mut key, v);
            if i == 0 {
                hash = keys::partition_hash(&key[start..]);
            }
        }
        (key, self.placement_for_hash(hash))
    }

    fn placement_for_hash(&self, hash: u64) -> Placement {
        if self.replicated {
            Placement::Replicated
        } else {
            Placement::Partitioned(hash)
        }
    }

    /// Where a stored row key (or any key whose first component after the
    /// prefix is the row's first key column) lives.
    pub fn placement_of_key(&self, key: &[u8]) -> Result<Placement> {
        if self.replicated {
            return Ok(Placement::Replicated);
        }
        let rest = &key[keys::INDEX_PREFIX_LEN..];
        let n = keycode::component_len(rest)?;
        Ok(Placement::Partitioned(keys::partition_hash(&rest[..n])))
    }

    /// Which shards a scan of this table's keys visits, given the partition
    /// hash when the first key column is fixed.
    pub fn scan_placement(&self, hash: Option<u64>) -> ScanPlacement {
        match (self.replicated, hash) {
            (true, _) => ScanPlacement::Replicated,
            (false, Some(h)) => ScanPlacement::Partitioned(h),
            (false, None) => ScanPlacement::AllShards,
        }
    }

    /// The key and placement of a full row (primary-key tables only).
    pub fn key_of_row(&self, row: &[Value]) -> (Vec<u8>, Placement) {
        let pk: Vec<Value> = self.primary_key.iter().map(|&i| row[i].clone()).collect();
        self.key_for(&pk)
    }

    /// The key prefix of an index's entries.
    pub fn index_prefix(&self, index: &Index) -> Vec<u8> {
        keys::index_prefix(self.id, index.id)
    }

    /// The key of a row's entry in `index`, given the row and its stored
    /// key; also the length of the indexed-values part of the key (the
    /// prefix that must be unique) and whether an indexed value is NULL
    /// (NULLs never conflict).
    pub fn index_entry(
        &self,
        index: &Index,
        row: &[Value],
        row_key: &[u8],
    ) -> (Vec<u8>, usize, bool) {
        let mut key = self.index_prefix(index);
        let mut has_null = false;
        for &c in &index.columns {
            has_null |= row[c].is_null();
            encode_key_value(&mut key, &row[c]);
        }
        let values_len = key.len();
        key.extend_from_slice(&row_key[keys::INDEX_PREFIX_LEN..]);
        (key, values_len, has_null)
    }

    /// The index named `name`.
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// A fresh key for a row of a table without a primary key.
    pub fn generated_key(&self) -> (Vec<u8>, Placement) {
        self.key_for(&[Value::Int(next_row_id())])
    }
}

/// Appends the key encoding of a value.
pub fn encode_key_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => keycode::encode_null(out),
        Value::Bool(b) => keycode::encode_bool(out, *b),
        Value::Int(i) => keycode::encode_int(out, *i),
        Value::Numeric(d) => keycode::encode_numeric(out, *d),
        Value::Float(f) => keycode::encode_float(out, *f),
        Value::Text(s) => keycode::encode_text(out, s),
        Value::Timestamp(t) => keycode::encode_timestamp(out, *t),
        // Intervals order (and are equal) by their span, as in PostgreSQL.
        Value::Interval(iv) => keycode::encode_numeric(
            out,
            rust_decimal::Decimal::from_i128_with_scale(iv.span(), 0),
        ),
    }
}

/// Row ids for tables without a primary key: unique within this process
/// and, because they start from the wall clock in microseconds, across
/// restarts unless a process inserted faster than one row per microsecond
/// on average over its lifetime. An insert that meets an existing key
/// simply takes the next id.
pub fn next_row_id() -> i64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let _ = NEXT.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT.fetch_add(1, Ordering::Relaxed) as i64
}

fn catalog_key(name: &str) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::CATALOG_TABLE, 1);
    keycode::encode_text(&mut k, name);
    k
}

fn view_key(name: &str) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::CATALOG_TABLE, 2);
    keycode::encode_text(&mut k, name);
    k
}

/// Index name → name of its table.
fn index_name_key(name: &str) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::CATALOG_TABLE, 3);
    keycode::encode_text(&mut k, name);
    k
}

fn sequence_def_key(name: &str) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::CATALOG_TABLE, 4);
    keycode::encode_text(&mut k, name);
    k
}

/// The key holding a sequence's next unallocated value.
pub fn sequence_counter_key(id: TableId) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::SEQUENCE_TABLE, 2);
    keycode::encode_int(&mut k, id as i64);
    k
}

fn sequence_key(name: &str) -> Vec<u8> {
    let mut k = keys::index_prefix(keys::SEQUENCE_TABLE, 1);
    keycode::encode_text(&mut k, name);
    k
}

thread_local! {
    static DECODED: RefCell<HashMap<Arc<[u8]>, Arc<Table>>> = RefCell::new(HashMap::new());
}

fn decode_table(bytes: Arc<[u8]>) -> Result<Arc<Table>> {
    if let Some(t) = DECODED.with(|c| c.borrow().get(&bytes).cloned()) {
        return Ok(t);
    }
    let table: Table = serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("corrupt catalog entry: {e}")))?;
    let table = Arc::new(table);
    DECODED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 4096 {
            c.clear();
        }
        c.insert(bytes, table.clone());
    });
    Ok(table)
}

/// Looks a table up by name within `txn`.
pub fn get_table(txn: &mut Txn, name: &str) -> Result<Option<Arc<Table>>> {
    match txn.get(&catalog_key(name), Placement::Replicated)? {
        Some(bytes) => decode_table(bytes).map(Some),
        None => Ok(None),
    }
}

/// Looks a table up, failing with 42P01 when it does not exist.
pub fn require_table(txn: &mut Txn, name: &str) -> Result<Arc<Table>> {
    get_table(txn, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::UndefinedTable,
            format!("relation \"{name}\" does not exist"),
        )
    })
}

/// Every table, by name.
pub fn list_tables(txn: &mut Txn) -> Result<Vec<Arc<Table>>> {
    let range = prefix_range(&keys::index_prefix(keys::CATALOG_TABLE, 1));
    txn.scan(&range, ScanPlacement::Replicated, None)?
        .into_iter()
        .map(|(_, v)| decode_table(v))
        .collect()
}

/// Fails with 42P07 when a table, view or index already has `name`.
fn check_name_free(txn: &mut Txn, name: &str) -> Result<()> {
    let taken = get_table(txn, name)?.is_some()
        || get_view(txn, name)?.is_some()
        || get_sequence(txn, name)?.is_some()
        || txn
            .get(&index_name_key(name), Placement::Replicated)?
            .is_some();
    if taken {
        return Err(Error::new(
            ErrorKind::DuplicateTable,
            format!("relation \"{name}\" already exists"),
        ));
    }
    Ok(())
}

/// The next id from the table-id sequence.
fn next_id(txn: &mut Txn) -> Result<TableId> {
    let seq = sequence_key("table_id");
    let next = match txn.get(&seq, Placement::Replicated)? {
        Some(b) => u32::from_be_bytes(
            b[..]
                .try_into()
                .map_err(|_| Error::internal("corrupt table id sequence"))?,
        ),
        None => keys::FIRST_USER_TABLE,
    };
    txn.put(
        seq,
        Arc::from(&(next + 1).to_be_bytes()[..]),
        Placement::Replicated,
    );
    Ok(next)
}

fn put_json<T: Serialize>(txn: &mut Txn, key: Vec<u8>, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::internal(e.to_string()))?;
    txn.put(key, Arc::from(bytes), Placement::Replicated);
    Ok(())
}

/// Creates a table, assigning its id. Fails with 42P07 if the name is taken.
pub fn create_table(txn: &mut Txn, mut table: Table) -> Result<Arc<Table>> {
    check_name_free(txn, &table.name)?;
    table.id = next_id(txn)?;
    put_json(txn, catalog_key(&table.name), &table)?;
    Ok(Arc::new(table))
}

/// Stores a changed definition of an existing table, with a version newer
/// than the stored one's.
pub fn update_table(txn: &mut Txn, table: &Table) -> Result<()> {
    let mut t = table.clone();
    t.version = fresh_version();
    put_json(txn, catalog_key(&table.name), &t)
}

/// A definition version no other definition has had: not from a
/// transactional counter, whose values a rolled-back change would hand
/// out again (and a statement bound against the rolled-back definition
/// would then pass for current).
fn fresh_version() -> u64 {
    // SplitMix64 over a process-unique, time-seeded counter.
    let mut z = (next_row_id() as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A name for a new foreign key of `table` on `columns` not taken by
/// another constraint: PostgreSQL's `t_a_b_fkey`, numbered when taken.
pub fn foreign_key_name(table: &Table, columns: &[usize]) -> String {
    let cols: Vec<&str> = columns
        .iter()
        .map(|&c| table.columns[c].name.as_str())
        .collect();
    let base = format!("{}_{}_fkey", table.name, cols.join("_"));
    free_name(base, |n| {
        table.foreign_keys.iter().any(|f| f.name == n)
            || table.checks.iter().any(|c| c.name == n)
            || table.indexes.iter().any(|i| i.name == n)
    })
}

/// Fails (2BP01) when a foreign key references `table`'s `columns`
/// through the unique constraint or index `name` about to be dropped.
pub fn refuse_if_referenced(
    txn: &mut Txn,
    table: &Table,
    columns: &[usize],
    name: &str,
) -> Result<()> {
    let same =
        |cols: &[usize]| cols.len() == columns.len() && columns.iter().all(|k| cols.contains(k));
    if same(&table.primary_key) {
        return Ok(());
    }
    for child in &table.referenced_by {
        let stored;
        let fks = if *child == table.name {
            &table.foreign_keys
        } else {
            stored = require_table(txn, child)?;
            &stored.foreign_keys
        };
        if let Some(fk) = fks
            .iter()
            .find(|f| f.parent == table.name && same(&f.parent_columns))
        {
            return Err(Error::new(
                ErrorKind::DependentObjectsStillExist,
                format!(
                    "cannot drop index {name} because constraint {} on table {child} requires it (drop that constraint first)",
                    fk.name
                ),
            ));
        }
    }
    Ok(())
}

/// Records that `child` references `parent` (the caller stores `child`'s
/// own definition with its new foreign key).
pub fn add_reference(txn: &mut Txn, parent: &str, child: &str) -> Result<()> {
    let mut p = (*require_table(txn, parent)?).clone();
    if !p.referenced_by.iter().any(|c| c == child) {
        p.referenced_by.push(child.to_string());
        update_table(txn, &p)?;
    }
    Ok(())
}

/// Forgets that `child` references `parent`, unless another of `child`'s
/// foreign keys (`remaining`) still does.
pub fn remove_reference(
    txn: &mut Txn,
    parent: &str,
    child: &str,
    remaining: &[ForeignKey],
) -> Result<()> {
    if remaining.iter().any(|f| f.parent == parent) {
        return Ok(());
    }
    if let Some(p) = get_table(txn, parent)? {
        let mut p = (*p).clone();
        p.referenced_by.retain(|c| c != child);
        update_table(txn, &p)?;
    }
    Ok(())
}

/// Removes an index's name from the catalog (its table's definition is
/// written by the caller).
pub fn forget_index_name(txn: &mut Txn, name: &str) {
    txn.delete(index_name_key(name), Placement::Replicated);
}

/// Moves a table's definition to a new name (its id, rows and indexes
/// stay); its indexes and owned sequences follow. Fails with 42P07 when the
/// name is taken.
pub fn rename_table(txn: &mut Txn, from: &str, to: &str) -> Result<()> {
    check_name_free(txn, to)?;
    let mut t = (*require_table(txn, from)?).clone();
    t.name = to.to_string();
    t.version = fresh_version();
    // References from and to the table follow the new name.
    for fk in &mut t.foreign_keys {
        if fk.parent == from {
            fk.parent = to.to_string();
        }
    }
    for c in &mut t.referenced_by {
        if c == from {
            *c = to.to_string();
        }
    }
    txn.delete(catalog_key(from), Placement::Replicated);
    put_json(txn, catalog_key(to), &t)?;
    for child in t.referenced_by.iter().filter(|c| *c != to) {
        let mut c = (*require_table(txn, child)?).clone();
        for fk in &mut c.foreign_keys {
            if fk.parent == from {
                fk.parent = to.to_string();
            }
        }
        update_table(txn, &c)?;
    }
    let parents: std::collections::BTreeSet<&String> = t
        .foreign_keys
        .iter()
        .map(|f| &f.parent)
        .filter(|p| *p != to)
        .collect();
    for parent in parents {
        let mut p = (*require_table(txn, parent)?).clone();
        for c in &mut p.referenced_by {
            if c == from {
                *c = to.to_string();
            }
        }
        update_table(txn, &p)?;
    }
    for index in &t.indexes {
        txn.put(
            index_name_key(&index.name),
            Arc::from(to.as_bytes()),
            Placement::Replicated,
        );
    }
    for mut seq in sequences_owned_by(txn, from)? {
        if let Some((_, col)) = seq.owned_by.take() {
            seq.owned_by = Some((to.to_string(), col));
        }
        put_json(txn, sequence_def_key(&seq.name), &seq)?;
    }
    Ok(())
}

/// Follows a column rename in the sequences the column owns.
pub fn rename_owned_column(txn: &mut Txn, table: &str, from: &str, to: &str) -> Result<()> {
    for mut seq in sequences_owned_by(txn, table)? {
        if seq.owned_by.as_ref().is_some_and(|(_, c)| c == from) {
            seq.owned_by = Some((table.to_string(), to.to_string()));
            put_json(txn, sequence_def_key(&seq.name), &seq)?;
        }
    }
    Ok(())
}

/// Empties a table by giving it a new id (and so a new, empty keyspace for
/// its rows and index entries), transactionally: the old rows become
/// unreachable, as a dropped table's do.
pub fn truncate_table(txn: &mut Txn, name: &str) -> Result<()> {
    let mut t = (*require_table(txn, name)?).clone();
    t.id = next_id(txn)?;
    update_table(txn, &t)
}

/// Drops a table's definition and its indexes' names. Its rows become
/// unreachable (table ids are never reused); their space is reclaimed by
/// future version GC.
pub fn drop_table(txn: &mut Txn, name: &str) -> Result<()> {
    let table = require_table(txn, name)?;
    for index in &table.indexes {
        txn.delete(index_name_key(&index.name), Placement::Replicated);
    }
    txn.delete(catalog_key(name), Placement::Replicated);
    Ok(())
}

/// Looks a sequence up by name.
pub fn get_sequence(txn: &mut Txn, name: &str) -> Result<Option<Sequence>> {
    match txn.get(&sequence_def_key(name), Placement::Replicated)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("corrupt catalog entry: {e}"))),
        None => Ok(None),
    }
}

/// Looks a sequence up, failing with 42P01 when there is none.
pub fn require_sequence(txn: &mut Txn, name: &str) -> Result<Sequence> {
    get_sequence(txn, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::UndefinedTable,
            format!("relation \"{name}\" does not exist"),
        )
    })
}

/// Creates a sequence, assigning its id. Fails with 42P07 if the name is
/// taken.
pub fn create_sequence(txn: &mut Txn, mut seq: Sequence) -> Result<Sequence> {
    check_name_free(txn, &seq.name)?;
    seq.id = next_id(txn)?;
    put_json(txn, sequence_def_key(&seq.name), &seq)?;
    Ok(seq)
}

/// Drops a sequence; `false` when there is none.
pub fn drop_sequence(txn: &mut Txn, name: &str) -> Result<bool> {
    if get_sequence(txn, name)?.is_none() {
        return Ok(false);
    }
    txn.delete(sequence_def_key(name), Placement::Replicated);
    Ok(true)
}

/// Every sequence, by name.
pub fn list_sequences(txn: &mut Txn) -> Result<Vec<Sequence>> {
    list_json(txn, 4)
}

/// Every view, by name.
pub fn list_views(txn: &mut Txn) -> Result<Vec<View>> {
    list_json(txn, 2)
}

/// The definitions stored as JSON under the catalog's index `index`.
fn list_json<T: serde::de::DeserializeOwned>(
    txn: &mut Txn,
    index: keys::IndexId,
) -> Result<Vec<T>> {
    let range = prefix_range(&keys::index_prefix(keys::CATALOG_TABLE, index));
    txn.scan(&range, ScanPlacement::Replicated, None)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| Error::internal(format!("corrupt catalog entry: {e}")))
        })
        .collect()
}

/// The sequences owned by a table's columns.
pub fn sequences_owned_by(txn: &mut Txn, table: &str) -> Result<Vec<Sequence>> {
    Ok(list_sequences(txn)?
        .into_iter()
        .filter(|seq| seq.owned_by.as_ref().is_some_and(|(t, _)| t == table))
        .collect())
}

/// Looks a view up by name.
pub fn get_view(txn: &mut Txn, name: &str) -> Result<Option<View>> {
    match txn.get(&view_key(name), Placement::Replicated)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("corrupt catalog entry: {e}"))),
        None => Ok(None),
    }
}

/// The id and definition version of the table or view called `name`:
/// what a bound statement depends on.
pub fn relation_version(txn: &mut Txn, name: &str) -> Result<Option<(TableId, u64)>> {
    if let Some(t) = get_table(txn, name)? {
        return Ok(Some((t.id, t.version)));
    }
    Ok(get_view(txn, name)?.map(|v| (v.id, 0)))
}

/// Creates (or replaces) a view.
pub fn create_view(txn: &mut Txn, mut view: View, or_replace: bool) -> Result<()> {
    match get_view(txn, &view.name)? {
        Some(old) if or_replace => {
            // As in PostgreSQL, a replacement may only add columns.
            if view.columns.len() < old.columns.len() {
                return Err(Error::new(
                    ErrorKind::InvalidDefinition,
                    "cannot drop columns from view",
                ));
            }
            if let Some((o, n)) = old.columns.iter().zip(&view.columns).find(|(o, n)| o != n) {
                return Err(Error::new(
                    ErrorKind::InvalidDefinition,
                    format!("cannot change name of view column \"{o}\" to \"{n}\""),
                ));
            }
        }
        _ => check_name_free(txn, &view.name)?,
    }
    view.id = next_id(txn)?;
    put_json(txn, view_key(&view.name), &view)
}

/// Drops a view; `false` when there is none.
pub fn drop_view(txn: &mut Txn, name: &str) -> Result<bool> {
    if get_view(txn, name)?.is_none() {
        return Ok(false);
    }
    txn.delete(view_key(name), Placement::Replicated);
    Ok(true)
}

/// Registers a new index of `table` (the caller fills its entries).
pub fn create_index(txn: &mut Txn, table: &Table, mut index: Index) -> Result<(Arc<Table>, Index)> {
    check_name_free(txn, &index.name)?;
    let mut t = table.clone();
    index.id = t.next_index_id;
    t.next_index_id += 1;
    t.indexes.push(index.clone());
    update_table(txn, &t)?;
    txn.put(
        index_name_key(&index.name),
        Arc::from(t.name.as_bytes()),
        Placement::Replicated,
    );
    Ok((Arc::new(t), index))
}

/// Drops an index by name; `false` when there is none. Its entries become
/// unreachable (index ids are not reused).
pub fn drop_index(txn: &mut Txn, name: &str) -> Result<bool> {
    let Some(owner) = txn.get(&index_name_key(name), Placement::Replicated)? else {
        return Ok(false);
    };
    let owner = String::from_utf8_lossy(&owner).to_string();
    if let Some(table) = get_table(txn, &owner)? {
        if let Some(ix) = table.index(name)
            && ix.unique
        {
            refuse_if_referenced(txn, &table, &ix.columns, name)?;
        }
        let mut t = (*table).clone();
        t.indexes.retain(|i| i.name != name);
        update_table(txn, &t)?;
    }
    txn.delete(index_name_key(name), Placement::Replicated);
    Ok(true)
}
