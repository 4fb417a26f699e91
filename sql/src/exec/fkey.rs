//! FOREIGN KEY constraints, kept by the writing transaction.
//!
//! A row written to a referencing table reads the row it references (a
//! point read on the referenced table's primary key, or a probe of its
//! unique index). That read is in the transaction's read set, so a
//! concurrent delete of the referenced row fails certification instead of
//! leaving an orphan, whatever shards or replica groups hold the two rows.
//! A primary-key read validates only that the row still exists
//! (`txn`'s `Seen::Present`), as PostgreSQL's `KEY SHARE` lock lets other
//! transactions update the row's other columns meanwhile.
//! A referenced row that is deleted or rekeyed scans the referencing table
//! for rows that still point at it (through its primary key or an index on
//! those columns when one leads with them, else the whole table); that
//! scan is validated at commit too, so a concurrent insert of a new
//! reference conflicts with it.
//!
//! As PostgreSQL's `NO ACTION`, the checks run once the statement has
//! written all its rows: one statement may insert a parent after its
//! children, or delete a whole self-referencing tree. `RESTRICT` fails
//! whenever references remain (there are no deferred constraints).

use std::sync::Arc;

use kv::{Error, ErrorKind, Result, bail};

use super::{ExecCtx, Row};
use crate::catalog::{self, FkAction, ForeignKey, Table};
use crate::expr::{CmpOp, Expr};
use crate::plan::Scan;
use crate::types::cast::cast;
use crate::types::text::format_value;
use crate::types::{DataType, Value};

/// A foreign key of a table with the table it references.
type Parent = (ForeignKey, Arc<Table>);

/// A foreign key that references a table, with the referencing table.
type Child = (Arc<Table>, ForeignKey);

/// Rows of a table deleted (`(old, None)`) or changed (`(old, new)`).
type Changes = Vec<(Row, Option<Row>)>;

/// A `NO ACTION` check left for the end of the statement: (referenced
/// table, referencing table, foreign key, the key that went).
type Deferred = (Arc<Table>, Arc<Table>, ForeignKey, Vec<Value>);

/// A row an action rewrote, to check against its parent at the end:
/// (table, foreign key, referenced table, row).
type Recheck = (Arc<Table>, ForeignKey, Arc<Table>, Row);

/// 23503 for a key of `table` that rows of `child` still reference.
fn still_referenced(table: &Table, child: &Table, fk: &ForeignKey, key: &[Value]) -> Error {
    Error::new(
        ErrorKind::ForeignKeyViolation,
        format!(
            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\" ({} is still referenced from table \"{}\".)",
            table.name,
            fk.name,
            child.name,
            key_text(table, &fk.parent_columns, key),
            child.name
        ),
    )
}

/// `v` (of type `from`) as a value of type `to`, when that is exactly the
/// same value: a reference compares as PostgreSQL compares the two types,
/// so 1.5 in a numeric column matches no integer key, and a bigint beyond
/// the integer range matches nothing instead of failing.
fn exact_cast(v: &Value, from: DataType, to: DataType) -> Option<Value> {
    let w = cast(v.clone(), from, to, false).ok()?;
    if from == to || (from.is_string() && to.is_string()) {
        return Some(w);
    }
    let back = cast(w.clone(), to, from, false).ok()?;
    (back.cmp_non_null(v) == std::cmp::Ordering::Equal).then_some(w)
}

/// What a row's foreign-key columns refer to.
enum Refers {
    /// Nothing: a column is NULL (MATCH SIMPLE).
    Nothing,
    /// The referenced row with these values (of the referenced types).
    Key(Vec<Value>),
    /// A value no referenced row can hold.
    Unmatchable(Vec<Value>),
}

/// `Key (a, b)=(1, 2)` for an error's detail.
fn key_text(table: &Table, columns: &[usize], values: &[Value]) -> String {
    let names: Vec<&str> = columns
        .iter()
        .map(|&c| table.columns[c].name.as_str())
        .collect();
    let vals: Vec<String> = columns
        .iter()
        .zip(values)
        .map(|(&c, v)| format_value(v, table.columns[c].ty).unwrap_or_else(|| "null".into()))
        .collect();
    format!("Key ({})=({})", names.join(", "), vals.join(", "))
}

/// True when `columns` are the same set as `key`.
fn same_columns(columns: &[usize], key: &[usize]) -> bool {
    columns.len() == key.len() && key.iter().all(|k| columns.contains(k))
}

impl ExecCtx<'_> {
    /// The tables `table`'s foreign keys reference, read once per
    /// statement (and so in its read set: a concurrent change of their
    /// definitions conflicts with it).
    fn fk_parents(&self, table: &Table) -> Result<Vec<Parent>> {
        table
            .foreign_keys
            .iter()
            .map(|fk| {
                let parent = self.with_txn(|t| catalog::require_table(t, &fk.parent))?;
                Ok((fk.clone(), parent))
            })
            .collect()
    }

    /// The foreign keys that reference `table`, with their tables.
    fn fk_children(&self, table: &Table) -> Result<Vec<Child>> {
        let mut out = Vec::new();
        for name in &table.referenced_by {
            let child = self.with_txn(|t| catalog::require_table(t, name))?;
            for fk in child.foreign_keys.iter().filter(|f| f.parent == table.name) {
                out.push((child.clone(), fk.clone()));
            }
        }
        Ok(out)
    }

    /// True when `parent` has a row whose `columns` hold `values` (of the
    /// columns' types): a read of its primary key or unique index.
    fn referenced_row_exists(
        &self,
        parent: &Table,
        columns: &[usize],
        values: &[Value],
    ) -> Result<bool> {
        if same_columns(columns, &parent.primary_key) {
            let key: Vec<Value> = parent
                .primary_key
                .iter()
                .map(|p| {
                    let j = columns.iter().position(|c| c == p).expect("same columns");
                    values[j].clone()
                })
                .collect();
            let (key, placement) = parent.key_for(&key);
            // Only the row's existence is validated at commit: updates of
            // its other columns by concurrent transactions do not conflict.
            return self.with_txn(|t| t.exists(&key, placement));
        }
        let Some(index) = parent
            .indexes
            .iter()
            .find(|i| i.unique && same_columns(columns, &i.columns))
        else {
            bail!(
                InvalidForeignKey,
                "there is no unique constraint matching given keys for referenced table \"{}\"",
                parent.name
            );
        };
        let mut row = vec![Value::Null; parent.columns.len()];
        for (&c, v) in columns.iter().zip(values) {
            row[c] = v.clone();
        }
        Ok(self.unique_holder(parent, index, &row, None)?.is_some())
    }

    /// The values `row` of `table` references through `fk`, converted to
    /// the referenced columns' types; `None` when one is NULL (MATCH
    /// SIMPLE: such a row references nothing).
    fn referenced_values(table: &Table, fk: &ForeignKey, parent: &Table, row: &[Value]) -> Refers {
        let mut values = Vec::with_capacity(fk.columns.len());
        let mut exact = true;
        for (&c, &p) in fk.columns.iter().zip(&fk.parent_columns) {
            let v = row.get(c).cloned().unwrap_or(Value::Null);
            if v.is_null() {
                return Refers::Nothing;
            }
            match exact_cast(&v, table.columns[c].ty, parent.columns[p].ty) {
                Some(w) => values.push(w),
                None => {
                    exact = false;
                    values.push(v);
                }
            }
        }
        if exact {
            Refers::Key(values)
        } else {
            Refers::Unmatchable(values)
        }
    }

    /// Fails with 23503 unless `row` (written to `table`) references an
    /// existing row through `fk`.
    fn check_reference(
        &self,
        table: &Table,
        fk: &ForeignKey,
        parent: &Table,
        row: &Row,
    ) -> Result<()> {
        let values = match Self::referenced_values(table, fk, parent, row) {
            Refers::Nothing => return Ok(()),
            Refers::Key(values) => {
                if self.referenced_row_exists(parent, &fk.parent_columns, &values)? {
                    return Ok(());
                }
                values
            }
            Refers::Unmatchable(values) => values,
        };
        Err(Error::new(
            ErrorKind::ForeignKeyViolation,
            format!(
                "insert or update on table \"{}\" violates foreign key constraint \"{}\" ({} is not present in table \"{}\".)",
                table.name,
                fk.name,
                key_text(table, &fk.columns, &values),
                parent.name
            ),
        ))
    }

    /// Fails with 23503 unless every row of `rows` (new rows of `table`)
    /// references existing rows.
    pub(super) fn check_references<'r>(
        &self,
        table: &Table,
        rows: impl IntoIterator<Item = &'r Row>,
    ) -> Result<()> {
        if table.foreign_keys.is_empty() {
            return Ok(());
        }
        let parents = self.fk_parents(table)?;
        for (i, row) in rows.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            for (fk, parent) in &parents {
                self.check_reference(table, fk, parent, row)?;
            }
        }
        Ok(())
    }

    /// The rows of `child` whose `fk` columns hold `values` (of the
    /// referenced columns' types).
    fn referencing_rows(
        &self,
        child: &Arc<Table>,
        fk: &ForeignKey,
        parent: &Table,
        values: &[Value],
    ) -> Result<Vec<(Vec<u8>, Row)>> {
        let mut parts = Vec::with_capacity(values.len());
        for ((&c, &p), v) in fk.columns.iter().zip(&fk.parent_columns).zip(values) {
            let Some(v) = exact_cast(v, parent.columns[p].ty, child.columns[c].ty) else {
                // No row of the child's type can hold this key.
                return Ok(Vec::new());
            };
            parts.push(Expr::Cmp(
                CmpOp::Eq,
                Box::new(Expr::Column(c)),
                Box::new(Expr::Const(v)),
            ));
        }
        let predicate = Expr::and_all(parts);
        let scan = Scan {
            table: child.clone(),
            access: crate::planner::choose_access(child, predicate.as_ref()),
            reverse: false,
        };
        self.matching(&scan, &predicate)
    }

    /// Deletes rows of `table` and their index entries, then applies the
    /// actions of the foreign keys that reference them.
    pub(super) fn delete_rows(&self, table: &Arc<Table>, rows: &[(Vec<u8>, Row)]) -> Result<()> {
        self.remove_rows(table, rows)?;
        if table.referenced_by.is_empty() {
            return Ok(());
        }
        let gone = rows.iter().map(|(_, r)| (r.clone(), None)).collect();
        self.settle_references(vec![(table.clone(), gone)], Vec::new())
    }

    fn remove_rows(&self, table: &Table, rows: &[(Vec<u8>, Row)]) -> Result<()> {
        for (i, (key, row)) in rows.iter().enumerate() {
            self.check_interrupt_at(i)?;
            let placement = table.placement_of_key(key)?;
            self.with_txn(|t| t.delete(key.clone(), placement));
            self.delete_index_entries(table, row, key)?;
        }
        Ok(())
    }

    /// Replaces rows of `table` (`(key, old, new)`), then checks the
    /// foreign keys whose columns changed and applies the actions of
    /// those that reference changed keys.
    pub(super) fn update_rows(
        &self,
        table: &Arc<Table>,
        changes: &[(Vec<u8>, Row, Row)],
    ) -> Result<()> {
        for (i, (key, old, new)) in changes.iter().enumerate() {
            self.check_interrupt_at(i)?;
            self.replace_row(table, key, old, new)?;
        }
        let pairs: Vec<(&Row, Option<&Row>)> =
            changes.iter().map(|(_, o, n)| (o, Some(n))).collect();
        self.after_updates(table, &pairs)
    }

    /// The foreign-key half of an update of `table`'s rows (`(old, new)`,
    /// already written).
    pub(super) fn after_updates(
        &self,
        table: &Table,
        pairs: &[(&Row, Option<&Row>)],
    ) -> Result<()> {
        if !table.foreign_keys.is_empty() {
            let parents = self.fk_parents(table)?;
            for (i, (old, new)) in pairs.iter().enumerate() {
                self.check_interrupt_at(i)?;
                let Some(new) = new else { continue };
                for (fk, parent) in &parents {
                    // As PostgreSQL: an unchanged reference is not checked again.
                    if fk.columns.iter().any(|&c| old[c] != new[c]) {
                        self.check_reference(table, fk, parent, new)?;
                    }
                }
            }
        }
        if !table.referenced_by.is_empty() {
            let changed = pairs
                .iter()
                .filter(|(_, new)| new.is_some())
                .map(|(old, new)| ((*old).clone(), new.cloned()))
                .collect();
            let me = self.with_txn(|t| catalog::require_table(t, &table.name))?;
            self.settle_references(vec![(me, changed)], Vec::new())?;
        }
        Ok(())
    }

    /// Applies the foreign-key actions of a statement's changes, as a
    /// worklist rather than by recursion (a cascade down a long chain of
    /// rows must not exhaust the stack): `queue` holds rows of a table
    /// deleted (`(old, None)`) or changed (`(old, Some(new))`); each
    /// referencing foreign key's action runs on the rows that referenced
    /// a key that is gone, and what it changes joins the queue. `NO
    /// ACTION` is checked once every cascade has run, as PostgreSQL checks
    /// it at the end of the statement; `RESTRICT` at once. Rows a `SET
    /// NULL`/`SET DEFAULT`/`ON UPDATE CASCADE` rewrote are checked against
    /// their parents at the end too.
    fn settle_references(
        &self,
        mut queue: Vec<(Arc<Table>, Changes)>,
        mut recheck: Vec<Recheck>,
    ) -> Result<()> {
        let mut deferred: Vec<Deferred> = Vec::new();
        let mut steps = 0usize;
        while let Some((table, changes)) = queue.pop() {
            if table.referenced_by.is_empty() {
                continue;
            }
            let children = self.fk_children(&table)?;
            for (child, fk) in &children {
                for (old, new) in &changes {
                    steps += 1;
                    self.check_interrupt_at(steps)?;
                    let key: Vec<Value> =
                        fk.parent_columns.iter().map(|&p| old[p].clone()).collect();
                    if key.iter().any(Value::is_null) {
                        continue;
                    }
                    if let Some(new) = new
                        && fk.parent_columns.iter().all(|&p| old[p] == new[p])
                    {
                        continue;
                    }
                    let action = if new.is_some() {
                        fk.on_update
                    } else {
                        fk.on_delete
                    };
                    if action == FkAction::NoAction {
                        deferred.push((table.clone(), child.clone(), fk.clone(), key));
                        continue;
                    }
                    let refs = self.referencing_rows(child, fk, &table, &key)?;
                    if refs.is_empty() {
                        continue;
                    }
                    match action {
                        FkAction::NoAction | FkAction::Restrict => {
                            return Err(still_referenced(&table, child, fk, &key));
                        }
                        FkAction::Cascade if new.is_none() => {
                            self.remove_rows(child, &refs)?;
                            let gone = refs.into_iter().map(|(_, r)| (r, None)).collect();
                            queue.push((child.clone(), gone));
                        }
                        action => {
                            let replacement: Vec<Value> = match (action, new) {
                                (FkAction::Cascade, Some(new)) => fk
                                    .columns
                                    .iter()
                                    .zip(&fk.parent_columns)
                                    .map(|(&c, &p)| {
                                        cast(
                                            new[p].clone(),
                                            table.columns[p].ty,
                                            child.columns[c].ty,
                                            false,
                                        )
                                    })
                                    .collect::<Result<_>>()?,
                                (FkAction::SetNull, _) => vec![Value::Null; fk.columns.len()],
                                _ => fk
                                    .columns
                                    .iter()
                                    .map(|&c| self.column_default(child, c))
                                    .collect::<Result<_>>()?,
                            };
                            let mut changed = Vec::with_capacity(refs.len());
                            for (k, row) in refs {
                                let mut new_row = row.clone();
                                for (&c, v) in fk.columns.iter().zip(&replacement) {
                                    new_row[c] = v.clone();
                                }
                                let typed = new_row
                                    .into_iter()
                                    .zip(child.columns.iter().map(|c| c.ty))
                                    .collect();
                                let new_row = self.conform(child, typed)?;
                                self.replace_row(child, &k, &row, &new_row)?;
                                recheck.push((
                                    child.clone(),
                                    fk.clone(),
                                    table.clone(),
                                    new_row.clone(),
                                ));
                                changed.push((row, Some(new_row)));
                            }
                            queue.push((child.clone(), changed));
                        }
                    }
                }
            }
        }
        // NO ACTION: a key still referenced at the end of the statement
        // fails it, unless another row holds that key by now.
        for (table, child, fk, key) in deferred {
            if self.referenced_row_exists(&table, &fk.parent_columns, &key)? {
                continue;
            }
            if !self.referencing_rows(&child, &fk, &table, &key)?.is_empty() {
                return Err(still_referenced(&table, &child, &fk, &key));
            }
        }
        for (i, (child, fk, parent, row)) in recheck.iter().enumerate() {
            self.check_interrupt_at(i)?;
            self.check_reference(child, fk, parent, row)?;
        }
        Ok(())
    }

    /// The value of column `c`'s default for a new row of `table`.
    fn column_default(&self, table: &Table, c: usize) -> Result<Value> {
        let column = &table.columns[c];
        let (expr, ty) = self.with_txn(|t| crate::bind::bind_default(t, column))?;
        let v = self.eval_const(&expr, &[])?;
        cast(v, ty, column.ty, false)
    }
}
