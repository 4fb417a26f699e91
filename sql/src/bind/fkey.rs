//! Binding `FOREIGN KEY … REFERENCES` (column and table constraints of
//! `CREATE TABLE`, `ALTER TABLE … ADD`): what it names is checked against
//! the referenced table as PostgreSQL does (42830, 42804). Enforcement is
//! in `exec::fkey`.

use super::*;
use crate::catalog::{FkAction, ForeignKey};

/// A foreign key as written, by names.
#[derive(Clone, Debug)]
pub struct FkDef {
    /// `CONSTRAINT name`.
    pub name: Option<String>,
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub parent: String,
    /// The referenced columns; empty for the referenced table's primary key.
    pub parent_columns: Vec<String>,
    /// `ON DELETE`.
    pub on_delete: FkAction,
    /// `ON UPDATE`.
    pub on_update: FkAction,
}

/// The types a key can be compared across, as PostgreSQL's operator
/// families group them: a foreign key's columns must be in the family of
/// the columns they reference (integer to bigint is fine, numeric to
/// integer is not).
fn family(t: DataType) -> u8 {
    match t {
        DataType::Int2 | DataType::Int4 | DataType::Int8 => 1,
        DataType::Numeric(_) => 2,
        DataType::Float4 | DataType::Float8 => 3,
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => 4,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz => 5,
        DataType::Interval => 6,
        DataType::Bool => 7,
    }
}

fn action(a: &Option<ast::ReferentialAction>) -> FkAction {
    match a {
        None | Some(ast::ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

impl FkDef {
    /// The definition in a parsed constraint; `column` for a column
    /// constraint (`col … REFERENCES t`), which names no columns itself.
    pub fn from_ast(fk: &ast::ForeignKeyConstraint, column: Option<&str>) -> Result<FkDef> {
        if matches!(
            fk.match_kind,
            Some(
                ast::ConstraintReferenceMatchKind::Full
                    | ast::ConstraintReferenceMatchKind::Partial
            )
        ) {
            bail!(
                FeatureNotSupported,
                "only MATCH SIMPLE foreign keys are supported"
            );
        }
        if let Some(c) = &fk.characteristics {
            if c.deferrable == Some(true)
                || matches!(c.initially, Some(ast::DeferrableInitial::Deferred))
            {
                bail!(
                    FeatureNotSupported,
                    "deferrable foreign keys are not supported (they are checked at the end of each statement)"
                );
            }
            if c.enforced == Some(false) {
                bail!(
                    FeatureNotSupported,
                    "NOT ENFORCED constraints are not supported"
                );
            }
        }
        let columns = match column {
            Some(c) => vec![c.to_string()],
            None => fk.columns.iter().map(ident).collect(),
        };
        Ok(FkDef {
            name: fk.name.as_ref().map(ident),
            columns,
            parent: object_name(&fk.foreign_table)?,
            parent_columns: fk.referred_columns.iter().map(ident).collect(),
            on_delete: action(&fk.on_delete),
            on_update: action(&fk.on_update),
        })
    }

    /// The constraint of `table`, checked against the referenced table
    /// (read in `txn`; `table` itself when it references itself, with
    /// `uniques` the column sets of unique constraints it is about to get).
    pub fn resolve(
        &self,
        txn: &mut Txn,
        table: &Table,
        uniques: &[Vec<usize>],
    ) -> Result<ForeignKey> {
        let missing = |c: &str| {
            Error::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{c}\" referenced in foreign key constraint does not exist"),
            )
        };
        let columns = self
            .columns
            .iter()
            .map(|c| table.column_index(c).ok_or_else(|| missing(c)))
            .collect::<Result<Vec<_>>>()?;
        let stored;
        let parent: &Table = if self.parent == table.name {
            table
        } else {
            stored = catalog::require_table(txn, &self.parent)?;
            &stored
        };
        let parent_uniques: Vec<&[usize]> = if std::ptr::eq(parent, table) {
            uniques.iter().map(Vec::as_slice).collect()
        } else {
            Vec::new()
        };
        let parent_columns = if self.parent_columns.is_empty() {
            if parent.primary_key.is_empty() {
                bail!(
                    InvalidForeignKey,
                    "there is no primary key for referenced table \"{}\"",
                    parent.name
                );
            }
            parent.primary_key.clone()
        } else {
            self.parent_columns
                .iter()
                .map(|c| parent.column_index(c).ok_or_else(|| missing(c)))
                .collect::<Result<Vec<_>>>()?
        };
        if columns.len() != parent_columns.len() {
            bail!(
                InvalidForeignKey,
                "number of referencing and referenced columns for foreign key disagree"
            );
        }
        let same = |key: &[usize]| {
            key.len() == parent_columns.len() && key.iter().all(|k| parent_columns.contains(k))
        };
        let unique = same(&parent.primary_key)
            || parent.indexes.iter().any(|i| i.unique && same(&i.columns))
            || parent_uniques.iter().any(|u| same(u));
        if !unique {
            bail!(
                InvalidForeignKey,
                "there is no unique constraint matching given keys for referenced table \"{}\"",
                parent.name
            );
        }
        let name = match &self.name {
            Some(n) => {
                let taken = table.foreign_keys.iter().any(|f| f.name == *n)
                    || table.checks.iter().any(|c| c.name == *n);
                if taken {
                    bail!(
                        DuplicateObject,
                        "constraint \"{n}\" for relation \"{}\" already exists",
                        table.name
                    );
                }
                n.clone()
            }
            None => catalog::foreign_key_name(table, &columns),
        };
        for (&c, &p) in columns.iter().zip(&parent_columns) {
            let (ct, pt) = (table.columns[c].ty, parent.columns[p].ty);
            if family(ct) != family(pt) {
                bail!(
                    DatatypeMismatch,
                    "foreign key constraint \"{name}\" cannot be implemented (Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.)",
                    table.columns[c].name,
                    parent.columns[p].name,
                    ct.pg_name(),
                    pt.pg_name()
                );
            }
        }
        Ok(ForeignKey {
            name,
            columns,
            parent: parent.name.clone(),
            parent_columns,
            on_delete: self.on_delete,
            on_update: self.on_update,
        })
    }
}
