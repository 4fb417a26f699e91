//! Executing schema changes (CREATE, DROP, ALTER, TRUNCATE): the DDL
//! half of `run_bound`.

use kv::{Error, Result, bail};
use txn::Txn;

use super::Limits;
use crate::bind::Bound;
use crate::catalog::{self, Table};
use crate::session::Outcome;
use crate::types::Value;

/// Runs a bound schema change in `txn`.
pub(super) fn run_ddl(
    txn: &mut Txn,
    bound: &Bound,
    params: &[Value],
    limits: Limits<'_>,
) -> Result<Outcome> {
    Ok(match bound {
        Bound::CreateTable {
            table,
            if_not_exists,
            sequences,
            uniques,
        } => {
            if !(*if_not_exists && catalog::get_table(txn, &table.name)?.is_some()) {
                let mut created = catalog::create_table(txn, table.clone())?;
                for index in uniques {
                    created = catalog::create_index(txn, &created, index.clone())?.0;
                }
                for seq in sequences {
                    catalog::create_sequence(txn, seq.clone())?;
                }
                let parents: std::collections::BTreeSet<&String> =
                    table.foreign_keys.iter().map(|f| &f.parent).collect();
                for parent in parents.into_iter().filter(|p| **p != table.name) {
                    catalog::add_reference(txn, parent, &table.name)?;
                }
            }
            Outcome::Command {
                tag: "CREATE TABLE",
                rows: None,
            }
        }
        Bound::DropTable {
            names,
            if_exists,
            cascade,
        } => {
            for name in names {
                if let Some(table) = catalog::get_table(txn, name)? {
                    drop_references(txn, &table, names, *cascade)?;
                    for seq in catalog::sequences_owned_by(txn, name)? {
                        catalog::drop_sequence(txn, &seq.name)?;
                    }
                    catalog::drop_table(txn, name)?;
                } else if !if_exists {
                    bail!(UndefinedTable, "table \"{name}\" does not exist");
                }
            }
            Outcome::Command {
                tag: "DROP TABLE",
                rows: None,
            }
        }
        Bound::Truncate {
            names,
            restart_identity,
            cascade,
        } => {
            let names = truncated_with_references(txn, names, *cascade)?;
            let mut restart = Vec::new();
            for name in &names {
                catalog::truncate_table(txn, name)?;
                if *restart_identity {
                    restart.extend(catalog::sequences_owned_by(txn, name)?);
                }
            }
            // As in PostgreSQL the sequences restart at once, whatever
            // becomes of the transaction.
            let db = txn.db().clone();
            let mut own = crate::sequence::SessionSequences::default();
            for seq in restart {
                crate::sequence::setval(&db, &seq, seq.start, false, &mut own)?;
            }
            Outcome::Command {
                tag: "TRUNCATE TABLE",
                rows: None,
            }
        }
        Bound::Noop { tag } => Outcome::Command { tag, rows: None },
        Bound::AlterTable { table, ops } => {
            limits.ctx(txn, params).alter_table(table, ops)?;
            Outcome::Command {
                tag: "ALTER TABLE",
                rows: None,
            }
        }
        Bound::CreateSequence {
            sequence,
            if_not_exists,
        } => {
            if !(*if_not_exists && catalog::get_sequence(txn, &sequence.name)?.is_some()) {
                catalog::create_sequence(txn, sequence.clone())?;
            }
            Outcome::Command {
                tag: "CREATE SEQUENCE",
                rows: None,
            }
        }
        Bound::DropSequence { names, if_exists } => {
            for name in names {
                if !catalog::drop_sequence(txn, name)? && !if_exists {
                    bail!(UndefinedTable, "sequence \"{name}\" does not exist");
                }
            }
            Outcome::Command {
                tag: "DROP SEQUENCE",
                rows: None,
            }
        }
        Bound::CreateView { view, or_replace } => {
            catalog::create_view(txn, view.clone(), *or_replace)?;
            Outcome::Command {
                tag: "CREATE VIEW",
                rows: None,
            }
        }
        Bound::DropView { names, if_exists } => {
            for name in names {
                if !catalog::drop_view(txn, name)? && !if_exists {
                    bail!(UndefinedTable, "view \"{name}\" does not exist");
                }
            }
            Outcome::Command {
                tag: "DROP VIEW",
                rows: None,
            }
        }
        Bound::CreateIndex {
            table,
            index,
            if_not_exists,
        } => {
            let exists = catalog::get_table(txn, &table.name)?
                .is_some_and(|t| t.index(&index.name).is_some());
            if !(*if_not_exists && exists) {
                let (table, index) = catalog::create_index(txn, table, index.clone())?;
                limits.ctx(txn, params).build_index(&table, &index)?;
            }
            Outcome::Command {
                tag: "CREATE INDEX",
                rows: None,
            }
        }
        Bound::DropIndex { names, if_exists } => {
            for name in names {
                if !catalog::drop_index(txn, name)? && !if_exists {
                    bail!(UndefinedObject, "index \"{name}\" does not exist");
                }
            }
            Outcome::Command {
                tag: "DROP INDEX",
                rows: None,
            }
        }
        other => {
            return Err(Error::internal(format!(
                "not a schema change: {}",
                super::explain(other).join("; ")
            )));
        }
    })
}

/// Before `table` is dropped (with the others in `dropping`): the foreign
/// keys of other tables that reference it go with `CASCADE` and make the
/// drop fail (2BP01) without; the tables it references forget it.
fn drop_references(txn: &mut Txn, table: &Table, dropping: &[String], cascade: bool) -> Result<()> {
    for child in &table.referenced_by {
        if dropping.contains(child) {
            continue;
        }
        let mut c = (*catalog::require_table(txn, child)?).clone();
        if !cascade {
            let fk = c
                .foreign_keys
                .iter()
                .find(|f| f.parent == table.name)
                .map_or("?", |f| f.name.as_str());
            bail!(
                DependentObjectsStillExist,
                "cannot drop table {} because other objects depend on it (constraint {fk} on table {child} depends on table {}; use DROP ... CASCADE to drop the dependent objects too)",
                table.name,
                table.name
            );
        }
        c.foreign_keys.retain(|f| f.parent != table.name);
        catalog::update_table(txn, &c)?;
    }
    let parents: std::collections::BTreeSet<&String> =
        table.foreign_keys.iter().map(|f| &f.parent).collect();
    for parent in parents {
        if *parent != table.name && !dropping.contains(parent) {
            catalog::remove_reference(txn, parent, &table.name, &[])?;
        }
    }
    Ok(())
}

/// The tables a `TRUNCATE` of `names` empties: with `CASCADE`, also every
/// table whose foreign keys reference one of them (transitively); without,
/// such a table must be among them (0A000), as in PostgreSQL.
fn truncated_with_references(
    txn: &mut Txn,
    names: &[String],
    cascade: bool,
) -> Result<Vec<String>> {
    let mut all = names.to_vec();
    let mut k = 0;
    while k < all.len() {
        let table = catalog::require_table(txn, &all[k])?;
        for child in &table.referenced_by {
            if all.contains(child) {
                continue;
            }
            if !cascade {
                bail!(
                    FeatureNotSupported,
                    "cannot truncate a table referenced in a foreign key constraint (Table \"{child}\" references \"{}\". Truncate table \"{child}\" at the same time, or use TRUNCATE ... CASCADE.)",
                    table.name
                );
            }
            all.push(child.clone());
        }
        k += 1;
    }
    Ok(all)
}
