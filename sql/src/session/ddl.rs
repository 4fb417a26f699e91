//! Executing schema changes (CREATE, DROP, ALTER, TRUNCATE): the DDL
//! half of `run_bound`.

use kv::{Error, Result, bail};
use txn::Txn;

use super::Limits;
use crate::bind::Bound;
use crate::catalog;
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
        } => {
            if !(*if_not_exists && catalog::get_table(txn, &table.name)?.is_some()) {
                catalog::create_table(txn, table.clone())?;
                for seq in sequences {
                    catalog::create_sequence(txn, seq.clone())?;
                }
            }
            Outcome::Command {
                tag: "CREATE TABLE",
                rows: None,
            }
        }
        Bound::DropTable { names, if_exists } => {
            for name in names {
                if catalog::get_table(txn, name)?.is_some() {
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
        } => {
            let mut restart = Vec::new();
            for name in names {
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
