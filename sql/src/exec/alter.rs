//! Executing `ALTER TABLE` (see `bind::alter` for what rewrites rows).

use std::sync::Arc;

use kv::{Result, bail};

use super::ExecCtx;
use super::Row;
use crate::bind::AlterOp;
use crate::catalog::{self, Index, Table};
use crate::expr::Expr;
use crate::plan::{Access, Scan};
use crate::types::{DataType, Value};

/// A CHECK constraint's SQL with column `from` renamed to `to` (`to:
/// None`: whether it mentions `from` at all, as `Err(())`).
fn rename_in_check(sql: &str, from: &str, to: Option<&str>) -> std::result::Result<String, ()> {
    use sqlparser::ast::{Expr as A, visit_expressions_mut};
    use std::ops::ControlFlow;
    let Ok(mut e) = crate::bind::parse_expr(sql) else {
        return Ok(sql.to_string());
    };
    let mut mentioned = false;
    let _ = visit_expressions_mut(&mut e, |x| {
        if let A::Identifier(i) = x
            && crate::bind::expr::ident(i) == from
        {
            mentioned = true;
            if let Some(to) = to {
                *i = sqlparser::ast::Ident::with_quote('"', to);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    match to {
        None if mentioned => Err(()),
        _ => Ok(e.to_string()),
    }
}

impl ExecCtx<'_> {
    /// Rewrites every row of `old` as a row of `new` (the same table, its
    /// definition changed): `map` gives each new row's values with their
    /// types, which are converted to `new`'s columns and checked
    /// (NOT NULL, keys, unique indexes) as an INSERT's would be.
    fn rewrite_rows(
        &self,
        old: &Table,
        new: &Table,
        map: &dyn Fn(Row) -> Result<Vec<(Value, DataType)>>,
    ) -> Result<()> {
        let all = Scan {
            table: Arc::new(old.clone()),
            access: Access::Full,
            reverse: false,
        };
        let rows = self.scan(&all, &[])?;
        for (i, (key, row)) in rows.iter().enumerate() {
            self.check_interrupt_at(i)?;
            let placement = old.placement_of_key(key)?;
            self.with_txn(|t| t.delete(key.clone(), placement));
            self.delete_index_entries(old, row, key)?;
        }
        for (i, (_, row)) in rows.into_iter().enumerate() {
            self.check_interrupt_at(i)?;
            let values = map(row)?;
            let row = self.conform(new, values)?;
            self.insert_row(new, &row)?;
        }
        Ok(())
    }

    /// The values of a stored row with the types of `table`'s columns.
    fn typed(table: &Table, row: Row) -> Vec<(Value, DataType)> {
        row.into_iter()
            .zip(table.columns.iter().map(|c| c.ty))
            .collect()
    }

    /// True when some row of `table` has NULL in column `col`.
    fn has_null(&self, table: &Table, col: usize) -> Result<bool> {
        let all = Scan {
            table: Arc::new(table.clone()),
            access: Access::Full,
            reverse: false,
        };
        Ok(self
            .scan(&all, &[])?
            .iter()
            .any(|(_, r)| r.get(col).is_none_or(Value::is_null)))
    }

    /// Applies `ALTER TABLE`'s changes in order.
    pub fn alter_table(&self, bound: &Table, ops: &[AlterOp]) -> Result<()> {
        let mut t = (*self.with_txn(|x| catalog::require_table(x, &bound.name))?).clone();
        let column_of = |t: &Table, name: &str| -> Result<usize> {
            match t.column_index(name) {
                Some(i) => Ok(i),
                None => bail!(
                    UndefinedColumn,
                    "column \"{name}\" of relation \"{}\" does not exist",
                    t.name
                ),
            }
        };
        let contains_null = |t: &Table, c: &str| {
            kv::Error::new(
                kv::ErrorKind::NotNullViolation,
                format!(
                    "column \"{c}\" of relation \"{}\" contains null values",
                    t.name
                ),
            )
        };
        for op in ops {
            match op {
                AlterOp::AddColumn {
                    column,
                    if_not_exists,
                    fill,
                    sequence,
                } => {
                    if t.column_index(&column.name).is_some() {
                        if *if_not_exists {
                            continue;
                        }
                        bail!(
                            DuplicateColumn,
                            "column \"{}\" of relation \"{}\" already exists",
                            column.name,
                            t.name
                        );
                    }
                    if let Some(seq) = sequence {
                        self.with_txn(|x| catalog::create_sequence(x, seq.clone()))?;
                    }
                    let mut new = t.clone();
                    new.columns.push(column.clone());
                    match fill {
                        // Existing rows read the new column as NULL (a
                        // stored row shorter than its table is padded).
                        None => {
                            if !column.nullable && self.has_rows(&t)? {
                                return Err(contains_null(&t, &column.name));
                            }
                        }
                        Some(e) => {
                            let ty = column.ty;
                            let fill: &Expr = e;
                            self.rewrite_rows(&t, &new, &|row| {
                                let v = self.eval_const(fill, &[])?;
                                let mut values = Self::typed(&t, row);
                                values.push((v, ty));
                                Ok(values)
                            })?;
                        }
                    }
                    t = new;
                }
                AlterOp::DropColumn { name, if_exists } => {
                    let Some(i) = t.column_index(name) else {
                        if *if_exists {
                            continue;
                        }
                        return Err(column_of(&t, name).unwrap_err());
                    };
                    if t.primary_key.contains(&i) {
                        bail!(
                            FeatureNotSupported,
                            "cannot drop column \"{name}\": it is part of the primary key"
                        );
                    }
                    if t.columns.len() == 1 {
                        bail!(
                            FeatureNotSupported,
                            "cannot drop the last column of \"{}\" (tables without columns are not supported)",
                            t.name
                        );
                    }
                    let mut new = t.clone();
                    new.columns.remove(i);
                    // As in PostgreSQL, CHECK constraints on the column go.
                    new.checks
                        .retain(|c| rename_in_check(&c.sql, name, None).is_ok());
                    let shift = |c: &usize| if *c > i { c - 1 } else { *c };
                    new.primary_key = new.primary_key.iter().map(shift).collect();
                    self.drop_column_references(&t, &mut new, i, &shift)?;
                    let (gone, kept): (Vec<Index>, Vec<Index>) = new
                        .indexes
                        .into_iter()
                        .partition(|ix| ix.columns.contains(&i));
                    new.indexes = kept
                        .into_iter()
                        .map(|mut ix| {
                            ix.columns = ix.columns.iter().map(shift).collect();
                            ix
                        })
                        .collect();
                    for ix in &gone {
                        self.with_txn(|x| catalog::forget_index_name(x, &ix.name));
                    }
                    for seq in self.with_txn(|x| catalog::sequences_owned_by(x, &t.name))? {
                        if seq.owned_by.as_ref().is_some_and(|(_, c)| c == name) {
                            self.with_txn(|x| catalog::drop_sequence(x, &seq.name))?;
                        }
                    }
                    self.rewrite_rows(&t, &new, &|mut row| {
                        row.remove(i);
                        Ok(Self::typed(&new, row))
                    })?;
                    t = new;
                }
                AlterOp::RenameColumn { from, to } => {
                    let i = column_of(&t, from)?;
                    if t.column_index(to).is_some() {
                        bail!(
                            DuplicateColumn,
                            "column \"{to}\" of relation \"{}\" already exists",
                            t.name
                        );
                    }
                    t.columns[i].name = to.clone();
                    for c in &mut t.checks {
                        if let Ok(sql) = rename_in_check(&c.sql, from, Some(to)) {
                            c.sql = sql;
                        }
                    }
                    self.with_txn(|x| catalog::rename_owned_column(x, &t.name, from, to))?;
                }
                AlterOp::RenameTable { to } => {
                    // A rename stands alone in its statement: the renamed
                    // definition (its references to itself renamed too) is
                    // the one to write back.
                    self.with_txn(|x| catalog::rename_table(x, &t.name, to))?;
                    t = (*self.with_txn(|x| catalog::require_table(x, to))?).clone();
                }
                AlterOp::SetDefault { column, default } => {
                    let i = column_of(&t, column)?;
                    t.columns[i].default = default.clone();
                }
                AlterOp::SetNotNull { column, not_null } => {
                    let i = column_of(&t, column)?;
                    if *not_null && t.columns[i].nullable && self.has_null(&t, i)? {
                        return Err(contains_null(&t, column));
                    }
                    t.columns[i].nullable = !*not_null;
                }
                AlterOp::SetType {
                    column,
                    ty,
                    value,
                    value_ty,
                } => {
                    let i = column_of(&t, column)?;
                    let mut new = t.clone();
                    new.columns[i].ty = *ty;
                    let value: &Expr = value;
                    self.rewrite_rows(&t, &new, &|row| {
                        let v = value.eval(&self.env(&row, &[]))?;
                        let mut values = Self::typed(&t, row);
                        values[i] = (v, *value_ty);
                        Ok(values)
                    })?;
                    t = new;
                }
                AlterOp::AddPrimaryKey { columns } => {
                    if !t.primary_key.is_empty() {
                        bail!(
                            InvalidDefinition,
                            "multiple primary keys for table \"{}\" are not allowed",
                            t.name
                        );
                    }
                    let mut new = t.clone();
                    for c in columns {
                        let i = column_of(&t, c)?;
                        if new.primary_key.contains(&i) {
                            bail!(
                                DuplicateColumn,
                                "column \"{c}\" appears twice in primary key constraint"
                            );
                        }
                        new.primary_key.push(i);
                        new.columns[i].nullable = false;
                    }
                    self.rewrite_rows(&t, &new, &|row| Ok(Self::typed(&t, row)))?;
                    t = new;
                }
                AlterOp::AddUnique { name, columns } => {
                    let cols = columns
                        .iter()
                        .map(|c| column_of(&t, c))
                        .collect::<Result<Vec<_>>>()?;
                    let index = Index {
                        id: 0,
                        name: name.clone(),
                        columns: cols,
                        unique: true,
                    };
                    let (table, index) = self.with_txn(|x| catalog::create_index(x, &t, index))?;
                    self.build_index(&table, &index)?;
                    t = (*table).clone();
                }
                AlterOp::AddCheck { check } => {
                    let mut new = t.clone();
                    new.checks.push(check.clone());
                    let all = Scan {
                        table: Arc::new(t.clone()),
                        access: Access::Full,
                        reverse: false,
                    };
                    for (i, (_, row)) in self.scan(&all, &[])?.iter().enumerate() {
                        self.check_interrupt_at(i)?;
                        self.check_constraints(&new, row).map_err(|mut e| {
                            if e.kind == kv::ErrorKind::CheckViolation {
                                e.message = format!(
                                    "check constraint \"{}\" of relation \"{}\" is violated by some row",
                                    check.name, t.name
                                );
                            }
                            e
                        })?;
                    }
                    t = new;
                }
                AlterOp::AddForeignKey { def } => {
                    let fk = self.with_txn(|x| def.resolve(x, &t, &[]))?;
                    let mut new = t.clone();
                    new.foreign_keys.push(fk.clone());
                    if fk.parent == t.name {
                        if !new.referenced_by.contains(&t.name) {
                            new.referenced_by.push(t.name.clone());
                        }
                    } else {
                        self.with_txn(|x| catalog::add_reference(x, &fk.parent, &t.name))?;
                    }
                    let all = Scan {
                        table: Arc::new(t.clone()),
                        access: Access::Full,
                        reverse: false,
                    };
                    let rows = self.scan(&all, &[])?;
                    let mut only = new.clone();
                    only.foreign_keys = vec![fk];
                    self.check_references(&only, rows.iter().map(|(_, r)| r))?;
                    t = new;
                }
                AlterOp::DropConstraint { name, if_exists } => {
                    if t.checks.iter().any(|c| c.name == *name) {
                        t.checks.retain(|c| c.name != *name);
                        continue;
                    }
                    if let Some(k) = t.foreign_keys.iter().position(|f| f.name == *name) {
                        let fk = t.foreign_keys.remove(k);
                        if fk.parent == t.name {
                            if !t.foreign_keys.iter().any(|f| f.parent == t.name) {
                                let me = t.name.clone();
                                t.referenced_by.retain(|c| *c != me);
                            }
                        } else {
                            self.with_txn(|x| {
                                catalog::remove_reference(x, &fk.parent, &t.name, &t.foreign_keys)
                            })?;
                        }
                        continue;
                    }
                    if *name == t.pkey_name() {
                        bail!(
                            FeatureNotSupported,
                            "dropping a primary key is not supported"
                        );
                    }
                    match t.index(name) {
                        Some(ix) if ix.unique => {
                            self.with_txn(|x| {
                                catalog::refuse_if_referenced(x, &t, &ix.columns, name)
                            })?;
                            let name = ix.name.clone();
                            t.indexes.retain(|x| x.name != name);
                            self.with_txn(|x| catalog::forget_index_name(x, &name));
                        }
                        _ if *if_exists => {}
                        _ => bail!(
                            UndefinedObject,
                            "constraint \"{name}\" of relation \"{}\" does not exist",
                            t.name
                        ),
                    }
                }
            }
        }
        self.with_txn(|x| catalog::update_table(x, &t))
    }

    /// True when `table` has at least one row.
    fn has_rows(&self, table: &Table) -> Result<bool> {
        let all = Scan {
            table: Arc::new(table.clone()),
            access: Access::Full,
            reverse: false,
        };
        Ok(!self.scan_raw_limited(&all, &[], Some(1))?.is_empty())
    }

    /// `DROP COLUMN` of column `i` of `old` (becoming `new`): fails (2BP01)
    /// when another table's foreign key references the column; this
    /// table's foreign keys on it go, as in PostgreSQL; the others follow
    /// the columns' new positions, here and in the tables that reference
    /// this one.
    fn drop_column_references(
        &self,
        old: &Table,
        new: &mut Table,
        i: usize,
        shift: &dyn Fn(&usize) -> usize,
    ) -> Result<()> {
        let column = &old.columns[i].name;
        for child in &old.referenced_by {
            let c = self.with_txn(|x| catalog::require_table(x, child))?;
            let fks = if *child == old.name {
                &old.foreign_keys
            } else {
                &c.foreign_keys
            };
            if let Some(fk) = fks
                .iter()
                .find(|f| f.parent == old.name && f.parent_columns.contains(&i))
            {
                bail!(
                    DependentObjectsStillExist,
                    "cannot drop column {column} of table {} because other objects depend on it (constraint {} on table {child} depends on it)",
                    old.name,
                    fk.name
                );
            }
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut new.foreign_keys)
            .into_iter()
            .partition(|f| f.columns.contains(&i));
        new.foreign_keys = kept
            .into_iter()
            .map(|mut f| {
                f.columns = f.columns.iter().map(shift).collect();
                if f.parent == old.name {
                    f.parent_columns = f.parent_columns.iter().map(shift).collect();
                }
                f
            })
            .collect();
        for fk in &gone {
            if fk.parent == old.name {
                if !new.foreign_keys.iter().any(|f| f.parent == old.name) {
                    new.referenced_by.retain(|c| *c != old.name);
                }
            } else {
                let remaining = new.foreign_keys.clone();
                self.with_txn(|x| catalog::remove_reference(x, &fk.parent, &old.name, &remaining))?;
            }
        }
        for child in old.referenced_by.iter().filter(|c| **c != old.name) {
            let mut c = (*self.with_txn(|x| catalog::require_table(x, child))?).clone();
            for f in c.foreign_keys.iter_mut().filter(|f| f.parent == old.name) {
                f.parent_columns = f.parent_columns.iter().map(shift).collect();
            }
            self.with_txn(|x| catalog::update_table(x, &c))?;
        }
        Ok(())
    }
}
