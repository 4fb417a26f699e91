//! INSERT, UPDATE and DELETE: row-at-a-time writes through the
//! transaction, keeping secondary indexes in step with rows.
//!
//! Every write first reads what it depends on (the key it inserts, the
//! unique index range it checks), so concurrent conflicting writers fail
//! certification instead of both succeeding.

use std::sync::Arc;

use kv::{Error, ErrorKind, Result, bail};
use txn::{Placement, prefix_range};

use super::{ExecCtx, Row};
use crate::bind::OutputColumn;
use crate::catalog::{Index, Table};
use crate::expr::Expr;
use crate::plan::{Plan, Scan};
use crate::rowcodec::encode_row;
use crate::types::cast::cast;
use crate::types::text::format_value;
use crate::types::{DataType, Value};

/// `RETURNING`: expressions over the written row.
#[derive(Clone, Debug)]
pub struct Returning {
    /// One per result column, over the table's columns.
    pub exprs: Vec<Expr>,
    /// The result columns.
    pub columns: Vec<OutputColumn>,
}

/// `ON CONFLICT`.
#[derive(Clone, Debug)]
pub enum Conflict {
    /// `DO NOTHING`: skip rows that would violate the primary key or a
    /// unique index (`target`, when given, names which).
    Nothing {
        /// The conflict target: a unique index, or `None` for the primary key
        /// and any unique index.
        target: Option<ConflictTarget>,
    },
    /// `DO UPDATE SET ... [WHERE ...]`: update the existing row instead.
    Update {
        /// Which constraint detects the conflict.
        target: ConflictTarget,
        /// New values: column, expression over `existing ++ excluded`, type.
        sets: Vec<(usize, Expr, DataType)>,
        /// Only update when this holds (over `existing ++ excluded`).
        filter: Option<Expr>,
    },
}

/// The constraint an ON CONFLICT clause is about.
#[derive(Clone, Debug, PartialEq)]
pub enum ConflictTarget {
    /// The primary key.
    PrimaryKey,
    /// A unique index.
    Unique(Index),
}

/// Where INSERT's rows come from.
#[derive(Clone, Debug)]
pub enum InsertSource {
    /// `VALUES`: one expression per table column per row, with its type.
    Rows(Vec<Vec<(Expr, DataType)>>),
    /// `INSERT ... SELECT`: the query, the table column each of its
    /// columns goes to, and every column's default.
    Query {
        /// The query.
        plan: Box<Plan>,
        /// Target column of each query column.
        targets: Vec<usize>,
        /// Defaults of the table's columns (used where not targeted).
        defaults: Vec<(Expr, DataType)>,
    },
}

fn unique_violation(name: &str, table: &Table, columns: &[usize], row: &[Value]) -> Error {
    let cols: Vec<&str> = columns
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = columns
        .iter()
        .map(|&i| format_value(&row[i], table.columns[i].ty).unwrap_or_else(|| "null".into()))
        .collect();
    Error::new(
        ErrorKind::UniqueViolation,
        format!(
            "duplicate key value violates unique constraint \"{name}\" (Key ({})=({}) already exists.)",
            cols.join(", "),
            vals.join(", ")
        ),
    )
}

impl ExecCtx<'_> {
    /// Converts computed values to the columns' types and checks NOT NULL.
    pub(super) fn conform(&self, table: &Table, values: Vec<(Value, DataType)>) -> Result<Row> {
        let mut row = Vec::with_capacity(values.len());
        for ((v, ty), col) in values.into_iter().zip(&table.columns) {
            let v = cast(v, ty, col.ty, false)?;
            if v.is_null() && !col.nullable {
                bail!(
                    NotNullViolation,
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name,
                    table.name
                );
            }
            row.push(v);
        }
        Ok(row)
    }

    /// The key of the row a unique index entry points to, if any row other
    /// than `except` has these indexed values.
    pub(super) fn unique_holder(
        &self,
        table: &Table,
        index: &Index,
        row: &[Value],
        except: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let probe_key = table.generated_key().0; // any well-formed row key
        let (entry, values_len, has_null) =
            table.index_entry(index, row, except.unwrap_or(&probe_key));
        if has_null {
            return Ok(None);
        }
        let range = prefix_range(&entry[..values_len]);
        let found = self.with_txn(|t| t.scan(&range, table.scan_placement(None), None))?;
        for (k, _) in found {
            let mut row_key = table.row_prefix();
            row_key.extend_from_slice(&k[values_len..]);
            if Some(row_key.as_slice()) != except {
                return Ok(Some(row_key));
            }
        }
        Ok(None)
    }

    /// Writes the index entries of a row.
    fn put_index_entries(&self, table: &Table, row: &[Value], key: &[u8]) -> Result<()> {
        let placement = table.placement_of_key(key)?;
        for index in &table.indexes {
            let (entry, _, _) = table.index_entry(index, row, key);
            self.with_txn(|t| t.put(entry, Arc::from(&[][..]), placement));
        }
        Ok(())
    }

    pub(super) fn delete_index_entries(
        &self,
        table: &Table,
        row: &[Value],
        key: &[u8],
    ) -> Result<()> {
        let placement = table.placement_of_key(key)?;
        for index in &table.indexes {
            let (entry, _, _) = table.index_entry(index, row, key);
            self.with_txn(|t| t.delete(entry, placement));
        }
        Ok(())
    }

    /// Checks the unique indexes for a row about to be stored at `key`.
    fn check_unique_indexes(&self, table: &Table, row: &[Value], key: &[u8]) -> Result<()> {
        for index in table.indexes.iter().filter(|i| i.unique) {
            if self.unique_holder(table, index, row, Some(key))?.is_some() {
                return Err(unique_violation(&index.name, table, &index.columns, row));
            }
        }
        Ok(())
    }

    /// Fails with 23514 when `row` makes one of `table`'s CHECK
    /// constraints false. Each constraint is bound once per thread and
    /// table definition.
    pub(super) fn check_constraints(&self, table: &Table, row: &[Value]) -> Result<()> {
        use std::cell::RefCell;
        use std::collections::HashMap;
        type Bound = (Vec<(String, DataType)>, Expr);
        thread_local! {
            static BOUND: RefCell<HashMap<(kv::keys::TableId, String), Bound>> =
                RefCell::new(HashMap::new());
        }
        for check in &table.checks {
            let key = (table.id, check.sql.clone());
            let cached = BOUND.with(|b| {
                b.borrow().get(&key).and_then(|(names, e)| {
                    (names.len() == table.columns.len()
                        && names
                            .iter()
                            .zip(&table.columns)
                            .all(|((n, t), c)| *n == c.name && *t == c.ty))
                    .then(|| e.clone())
                })
            });
            let expr = match cached {
                Some(e) => e,
                None => {
                    let parsed = crate::bind::parse_expr(&check.sql)?;
                    let scope = crate::bind::Scope::of_table(table, None);
                    let e = self.with_txn(|t| {
                        crate::bind::Binder::new(t, &[]).predicate(&parsed, &scope, "CHECK")
                    })?;
                    BOUND.with(|b| {
                        let mut b = b.borrow_mut();
                        if b.len() > 1024 {
                            b.clear();
                        }
                        let names = table
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.ty))
                            .collect();
                        b.insert(key, (names, e.clone()));
                    });
                    e
                }
            };
            if expr.eval(&self.env(row, &[]))? == Value::Bool(false) {
                bail!(
                    CheckViolation,
                    "new row for relation \"{}\" violates check constraint \"{}\"",
                    table.name,
                    check.name
                );
            }
        }
        Ok(())
    }

    /// Stores a new row; fails on a primary-key or unique-index conflict.
    pub(super) fn insert_row(&self, table: &Table, row: &Row) -> Result<Vec<u8>> {
        self.check_constraints(table, row)?;
        let bytes: Arc<[u8]> = Arc::from(encode_row(row));
        let (key, placement) = if table.primary_key.is_empty() {
            // A row without a primary key goes to the shard the
            // transaction already uses (a row id is drawn until its hash
            // lands there), so inserting it does not add a participant.
            let home = self.with_txn(|t| t.home_shard().map(|s| (s, t.db().clone())));
            let mut tries = 0;
            loop {
                let (key, placement) = table.generated_key();
                tries += 1;
                let elsewhere = match (&home, placement) {
                    (Some((s, db)), Placement::Partitioned(h)) => db.shard_for(h) != *s,
                    _ => false,
                };
                if elsewhere && tries < 256 {
                    continue;
                }
                if self.with_txn(|t| t.get(&key, placement))?.is_none() {
                    break (key, placement);
                }
            }
        } else {
            let (key, placement) = table.key_of_row(row);
            if self.with_txn(|t| t.get(&key, placement))?.is_some() {
                return Err(unique_violation(
                    &table.pkey_name(),
                    table,
                    &table.primary_key,
                    row,
                ));
            }
            (key, placement)
        };
        self.check_unique_indexes(table, row, &key)?;
        self.with_txn(|t| t.put(key.clone(), bytes, placement));
        self.put_index_entries(table, row, &key)?;
        Ok(key)
    }

    /// Replaces the row at `key` (`old`) with `new`, moving it if its
    /// primary key changed.
    pub(super) fn replace_row(
        &self,
        table: &Table,
        key: &[u8],
        old: &Row,
        new: &Row,
    ) -> Result<()> {
        self.check_constraints(table, new)?;
        let placement = table.placement_of_key(key)?;
        let bytes: Arc<[u8]> = Arc::from(encode_row(new));
        let new_key = if table.primary_key.is_empty() {
            key.to_vec()
        } else {
            table.key_of_row(new).0
        };
        // Only the index entries that change are rewritten: an update of
        // columns no index has leaves the indexes (and whoever scanned
        // them) alone. The old ones go first, so that the unique checks
        // below do not find the row's own old entry.
        let mut moved = Vec::new();
        for index in &table.indexes {
            let (old_entry, _, _) = table.index_entry(index, old, key);
            let (new_entry, _, _) = table.index_entry(index, new, &new_key);
            if old_entry != new_entry {
                self.with_txn(|t| t.delete(old_entry, placement));
                moved.push(new_entry);
            }
        }
        if new_key != key {
            self.with_txn(|t| t.delete(key.to_vec(), placement));
            let new_placement = table.placement_of_key(&new_key)?;
            if self.with_txn(|t| t.get(&new_key, new_placement))?.is_some() {
                return Err(unique_violation(
                    &table.pkey_name(),
                    table,
                    &table.primary_key,
                    new,
                ));
            }
        }
        self.check_unique_indexes(table, new, &new_key)?;
        let new_placement = table.placement_of_key(&new_key)?;
        self.with_txn(|t| t.put(new_key.clone(), bytes, new_placement));
        for entry in moved {
            self.with_txn(|t| t.put(entry, Arc::from(&[][..]), new_placement));
        }
        Ok(())
    }

    fn returning_row(
        &self,
        returning: &Option<Returning>,
        row: &Row,
        out: &mut Vec<Row>,
    ) -> Result<()> {
        if let Some(r) = returning {
            let env = self.env(row, &[]);
            out.push(
                r.exprs
                    .iter()
                    .map(|e| e.eval(&env))
                    .collect::<Result<Row>>()?,
            );
        }
        Ok(())
    }

    /// The existing row an ON CONFLICT clause is about, if any.
    fn conflicting_row(
        &self,
        table: &Table,
        target: &Option<ConflictTarget>,
        row: &Row,
    ) -> Result<Option<(Vec<u8>, Row)>> {
        let mut keys = Vec::new();
        let check_pk = matches!(target, None | Some(ConflictTarget::PrimaryKey))
            && !table.primary_key.is_empty();
        if check_pk {
            keys.push(table.key_of_row(row).0);
        }
        for index in table.indexes.iter().filter(|i| i.unique) {
            let wanted = match target {
                None => true,
                Some(ConflictTarget::Unique(t)) => t.name == index.name,
                Some(ConflictTarget::PrimaryKey) => false,
            };
            if wanted && let Some(k) = self.unique_holder(table, index, row, None)? {
                keys.push(k);
            }
        }
        for key in keys {
            let placement = table.placement_of_key(&key)?;
            if let Some(bytes) = self.with_txn(|t| t.get(&key, placement))? {
                return Ok(Some((
                    key,
                    crate::rowcodec::decode_row_of(&bytes, table.columns.len())?,
                )));
            }
        }
        Ok(None)
    }

    /// INSERT: returns the number of rows inserted (or updated by ON
    /// CONFLICT DO UPDATE) and the RETURNING rows.
    pub fn insert(
        &self,
        table: &Table,
        source: &InsertSource,
        conflict: &Option<Conflict>,
        returning: &Option<Returning>,
    ) -> Result<(u64, Vec<Row>)> {
        let candidates: Vec<Vec<(Value, DataType)>> = match source {
            InsertSource::Rows(rows) => {
                let env = self.env(&[], &[]);
                rows.iter()
                    .map(|r| {
                        r.iter()
                            .map(|(e, ty)| Ok((e.eval(&env)?, *ty)))
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<_>>()?
            }
            InsertSource::Query {
                plan,
                targets,
                defaults,
            } => {
                let types = plan.output_types();
                let rows = self.query(plan, &[])?;
                let env = self.env(&[], &[]);
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut full: Vec<(Value, DataType)> = defaults
                        .iter()
                        .map(|(e, ty)| Ok((e.eval(&env)?, *ty)))
                        .collect::<Result<_>>()?;
                    for ((v, ty), &col) in r.into_iter().zip(&types).zip(targets) {
                        full[col] = (v, *ty);
                    }
                    out.push(full);
                }
                out
            }
        };
        let mut count = 0;
        let mut returned = Vec::new();
        // Rows this statement inserted or updated: DO UPDATE may not touch
        // one of them again (PostgreSQL's 21000).
        let mut touched: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        // For the foreign keys, checked once every row is written: the new
        // rows, and the rows DO UPDATE changed (old, new).
        let keeps_references = !table.foreign_keys.is_empty() || !table.referenced_by.is_empty();
        let mut inserted: Vec<Row> = Vec::new();
        let mut upserted: Vec<(Row, Row)> = Vec::new();
        // The rows as they will be stored, up to the first that does not
        // conform (its error comes in its turn, after the rows before it).
        let mut rows: Vec<Result<Row>> = Vec::with_capacity(candidates.len());
        for (i, values) in candidates.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let row = self.conform(table, values);
            let failed = row.is_err();
            rows.push(row);
            if failed {
                break;
            }
        }
        if rows.len() > 1 && !table.primary_key.is_empty() {
            // Each row's key is read to check it is new: fetch those that
            // other replica groups hold at once, not a round trip a row.
            let keys: Vec<_> = rows
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|r| table.key_of_row(r))
                .collect();
            self.with_txn(|t| t.prefetch(&keys))?;
        }
        for (i, row) in rows.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let row = row?;
            if let Some(c) = conflict {
                let target = match c {
                    Conflict::Nothing { target } => target.clone(),
                    Conflict::Update { target, .. } => Some(target.clone()),
                };
                if let Some((key, existing)) = self.conflicting_row(table, &target, &row)? {
                    if let Conflict::Update { sets, filter, .. } = c {
                        if touched.contains(&key) {
                            return Err(Error::new(
                                ErrorKind::CardinalityViolation,
                                "ON CONFLICT DO UPDATE command cannot affect row a second time",
                            ));
                        }
                        let mut both = existing.clone();
                        both.extend(row.iter().cloned());
                        let env = self.env(&both, &[]);
                        if let Some(f) = filter
                            && !f.is_true(&env)?
                        {
                            continue;
                        }
                        let mut values: Vec<(Value, DataType)> = existing
                            .iter()
                            .cloned()
                            .zip(table.columns.iter().map(|c| c.ty))
                            .collect();
                        for (col, e, ty) in sets {
                            values[*col] = (e.eval(&env)?, *ty);
                        }
                        let new = self.conform(table, values)?;
                        self.replace_row(table, &key, &existing, &new)?;
                        touched.insert(if table.primary_key.is_empty() {
                            key.clone()
                        } else {
                            table.key_of_row(&new).0
                        });
                        self.returning_row(returning, &new, &mut returned)?;
                        if keeps_references {
                            upserted.push((existing, new));
                        }
                        count += 1;
                    }
                    continue;
                }
            }
            let key = self.insert_row(table, &row)?;
            touched.insert(key);
            self.returning_row(returning, &row, &mut returned)?;
            if keeps_references {
                inserted.push(row);
            }
            count += 1;
        }
        if keeps_references {
            self.check_references(table, &inserted)?;
            let pairs: Vec<(&Row, Option<&Row>)> =
                upserted.iter().map(|(o, n)| (o, Some(n))).collect();
            self.after_updates(table, &pairs)?;
        }
        Ok((count, returned))
    }

    pub(super) fn matching(
        &self,
        scan: &Scan,
        filter: &Option<Expr>,
    ) -> Result<Vec<(Vec<u8>, Row)>> {
        let rows = self.scan(scan, &[])?;
        let Some(f) = filter else {
            return Ok(rows);
        };
        let mut out = Vec::new();
        for (k, r) in rows {
            if f.is_true(&self.env(&r, &[]))? {
                out.push((k, r));
            }
        }
        Ok(out)
    }

    /// UPDATE: returns the number of rows updated and the RETURNING rows.
    pub fn update(
        &self,
        scan: &Scan,
        filter: &Option<Expr>,
        sets: &[(usize, Expr, DataType)],
        returning: &Option<Returning>,
    ) -> Result<(u64, Vec<Row>)> {
        let table = scan.table.clone();
        let rows = self.matching(scan, filter)?;
        // Compute every new row before writing any, so that subqueries in
        // SET see the table as it was when the statement started.
        let mut changes = Vec::with_capacity(rows.len());
        let count = rows.len() as u64;
        for (i, (key, old)) in rows.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let mut values: Vec<(Value, DataType)> = old
                .iter()
                .cloned()
                .zip(table.columns.iter().map(|c| c.ty))
                .collect();
            let env = self.env(&old, &[]);
            for (c, e, ty) in sets {
                values[*c] = (e.eval(&env)?, *ty);
            }
            let new = self.conform(&table, values)?;
            changes.push((key, old, new));
        }
        self.update_rows(&table, &changes)?;
        let mut returned = Vec::new();
        for (_, _, new) in &changes {
            self.returning_row(returning, new, &mut returned)?;
        }
        Ok((count, returned))
    }

    /// The target rows of a joined UPDATE/DELETE: each target row once
    /// (the first joined row that has it), with its key and the joined row.
    fn joined_targets(&self, table: &Table, plan: &Plan) -> Result<Vec<(Vec<u8>, Row)>> {
        let width = table.columns.len();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, row) in self.query(plan, &[])?.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let pk: Vec<Value> = table
                .primary_key
                .iter()
                .map(|&c| row[..width][c].clone())
                .collect();
            let (key, _) = table.key_for(&pk);
            if seen.insert(key.clone()) {
                out.push((key, row));
            }
        }
        Ok(out)
    }

    /// `UPDATE … FROM`: `plan` joins the target (its columns first) with
    /// the FROM items under WHERE; SET and RETURNING see the joined row
    /// (RETURNING with the new target values).
    pub fn update_joined(
        &self,
        table: &Arc<Table>,
        plan: &Plan,
        sets: &[(usize, Expr, DataType)],
        returning: &Option<Returning>,
    ) -> Result<(u64, Vec<Row>)> {
        let width = table.columns.len();
        let targets = self.joined_targets(table, plan)?;
        let mut changes = Vec::with_capacity(targets.len());
        let mut returned = Vec::new();
        for (i, (key, joined)) in targets.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let old: Row = joined[..width].to_vec();
            let mut values: Vec<(Value, DataType)> = old
                .iter()
                .cloned()
                .zip(table.columns.iter().map(|c| c.ty))
                .collect();
            let env = self.env(&joined, &[]);
            for (c, e, ty) in sets {
                values[*c] = (e.eval(&env)?, *ty);
            }
            let new = self.conform(table, values)?;
            let mut out_row = new.clone();
            out_row.extend_from_slice(&joined[width..]);
            self.returning_row(returning, &out_row, &mut returned)?;
            changes.push((key, old, new));
        }
        let count = changes.len() as u64;
        self.update_rows(table, &changes)?;
        Ok((count, returned))
    }

    /// `DELETE … USING`: `plan` joins the target (its columns first) with
    /// the USING items under WHERE; RETURNING sees the joined row.
    pub fn delete_joined(
        &self,
        table: &Arc<Table>,
        plan: &Plan,
        returning: &Option<Returning>,
    ) -> Result<(u64, Vec<Row>)> {
        let width = table.columns.len();
        let targets = self.joined_targets(table, plan)?;
        let mut returned = Vec::new();
        let mut rows = Vec::with_capacity(targets.len());
        for (key, joined) in targets {
            self.returning_row(returning, &joined, &mut returned)?;
            rows.push((key, joined[..width].to_vec()));
        }
        self.delete_rows(table, &rows)?;
        Ok((rows.len() as u64, returned))
    }

    /// DELETE: returns the number of rows deleted and the RETURNING rows.
    pub fn delete(
        &self,
        scan: &Scan,
        filter: &Option<Expr>,
        returning: &Option<Returning>,
    ) -> Result<(u64, Vec<Row>)> {
        let rows = self.matching(scan, filter)?;
        self.delete_rows(&scan.table, &rows)?;
        let mut returned = Vec::new();
        for (_, row) in &rows {
            self.returning_row(returning, row, &mut returned)?;
        }
        Ok((rows.len() as u64, returned))
    }

    /// Fills a new index from the table's rows, checking uniqueness.
    pub fn build_index(&self, table: &Table, index: &Index) -> Result<()> {
        let all = Scan {
            table: Arc::new(table.clone()),
            access: crate::plan::Access::Full,
            reverse: false,
        };
        let rows = self.scan(&all, &[])?;
        let mut seen = std::collections::HashSet::new();
        for (key, row) in &rows {
            let (entry, values_len, has_null) = table.index_entry(index, row, key);
            if index.unique && !has_null && !seen.insert(entry[..values_len].to_vec()) {
                let mut e = unique_violation(&index.name, table, &index.columns, row);
                e.message = format!(
                    "could not create unique index \"{}\": {}",
                    index.name, e.message
                );
                return Err(e);
            }
            let placement = table.placement_of_key(key)?;
            self.with_txn(|t| t.put(entry, Arc::from(&[][..]), placement));
        }
        Ok(())
    }
}
