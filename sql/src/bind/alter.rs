//! Binding `ALTER TABLE`.
//!
//! Changes that only touch the definition (names, defaults, `DROP NOT
//! NULL`, a new column whose existing rows read as NULL) are catalog
//! writes. Changes to what rows hold or how they are keyed (a new column
//! with a default, `DROP COLUMN`, `ALTER COLUMN … TYPE`, `ADD PRIMARY
//! KEY`) rewrite every row in the same transaction, as PostgreSQL does
//! for most of them; like any transaction, a rewrite of a table that is
//! being written concurrently may fail with 40001 and is then retried.

use super::*;

/// One change of an `ALTER TABLE`.
#[derive(Clone, Debug)]
pub enum AlterOp {
    /// `ADD COLUMN`.
    AddColumn {
        /// The new column.
        column: Column,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The value existing rows get (its default), when not NULL.
        fill: Option<Expr>,
        /// The sequence of a `SERIAL` or identity column.
        sequence: Option<catalog::Sequence>,
    },
    /// `DROP COLUMN`.
    DropColumn {
        /// The column.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `RENAME COLUMN a TO b`.
    RenameColumn {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `RENAME TO`.
    RenameTable {
        /// The new name.
        to: String,
    },
    /// `ALTER COLUMN … SET DEFAULT` / `DROP DEFAULT`.
    SetDefault {
        /// The column.
        column: String,
        /// The new default as SQL text; `None` drops it.
        default: Option<String>,
    },
    /// `ALTER COLUMN … SET NOT NULL` / `DROP NOT NULL`.
    SetNotNull {
        /// The column.
        column: String,
        /// True for `SET NOT NULL`.
        not_null: bool,
    },
    /// `ALTER COLUMN … TYPE t [USING e]`.
    SetType {
        /// The column.
        column: String,
        /// The new type.
        ty: DataType,
        /// The new value of each row, over the row as it was.
        value: Expr,
        /// The type `value` has.
        value_ty: DataType,
    },
    /// `ADD [CONSTRAINT name] PRIMARY KEY (…)` on a table without one.
    AddPrimaryKey {
        /// The key columns, in key order.
        columns: Vec<String>,
    },
    /// `ADD [CONSTRAINT name] UNIQUE (…)`: a unique index.
    AddUnique {
        /// The index name.
        name: String,
        /// Its columns.
        columns: Vec<String>,
    },
    /// `ADD [CONSTRAINT name] CHECK (…)`: existing rows must pass.
    AddCheck {
        /// The constraint.
        check: catalog::Check,
    },
    /// `ADD [CONSTRAINT name] FOREIGN KEY (…) REFERENCES …`: existing
    /// rows must reference existing rows.
    AddForeignKey {
        /// The constraint, by names (resolved against the table as the
        /// changes before it left it).
        def: FkDef,
    },
    /// `DROP CONSTRAINT name` (a unique constraint's index).
    DropConstraint {
        /// The constraint.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

pub(super) fn column_list(columns: &[ast::IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) => Ok(ident(i)),
            other => bail!(
                FeatureNotSupported,
                "constraints on expressions are not supported: {other}"
            ),
        })
        .collect()
}

impl Binder<'_> {
    pub(super) fn alter_table(&mut self, a: &ast::AlterTable) -> Result<Bound> {
        let name = object_name(&a.name)?;
        let Some(table) = catalog::get_table(self.txn, &name)? else {
            if a.if_exists {
                return Ok(Bound::Noop { tag: "ALTER TABLE" });
            }
            bail!(UndefinedTable, "relation \"{name}\" does not exist");
        };
        let scope = Scope::of_table(&table, None);
        let mut ops = Vec::new();
        for op in &a.operations {
            use ast::AlterTableOperation as O;
            ops.push(match op {
                O::AddColumn {
                    if_not_exists,
                    column_def,
                    column_position: None,
                    ..
                } => {
                    let (add, constraints) = self.add_column(&table, column_def, *if_not_exists)?;
                    ops.push(add);
                    ops.extend(constraints);
                    continue;
                }
                O::DropColumn {
                    column_names,
                    if_exists,
                    drop_behavior,
                    ..
                } => {
                    if matches!(drop_behavior, Some(ast::DropBehavior::Cascade)) {
                        bail!(FeatureNotSupported, "DROP COLUMN ... CASCADE is not supported");
                    }
                    for c in column_names {
                        ops.push(AlterOp::DropColumn {
                            name: ident(c),
                            if_exists: *if_exists,
                        });
                    }
                    continue;
                }
                O::RenameColumn {
                    old_column_name,
                    new_column_name,
                } => AlterOp::RenameColumn {
                    from: ident(old_column_name),
                    to: ident(new_column_name),
                },
                O::RenameTable { table_name } => {
                    let to = match table_name {
                        ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => {
                            object_name(n)?
                        }
                    };
                    AlterOp::RenameTable { to }
                }
                O::AlterColumn { column_name, op } => {
                    let column = ident(column_name);
                    let Some(i) = table.column_index(&column) else {
                        bail!(
                            UndefinedColumn,
                            "column \"{column}\" of relation \"{}\" does not exist",
                            table.name
                        );
                    };
                    use ast::AlterColumnOperation as C;
                    match op {
                        C::SetNotNull => AlterOp::SetNotNull {
                            column,
                            not_null: true,
                        },
                        C::DropNotNull => {
                            if table.primary_key.contains(&i) {
                                bail!(
                                    InvalidDefinition,
                                    "column \"{column}\" is in a primary key"
                                );
                            }
                            AlterOp::SetNotNull {
                                column,
                                not_null: false,
                            }
                        }
                        C::SetDefault { value } => {
                            // Bound now so that a bad default fails here.
                            let mut probe = table.columns[i].clone();
                            probe.default = Some(value.to_string());
                            self.default_value(&probe)?;
                            AlterOp::SetDefault {
                                column,
                                default: Some(value.to_string()),
                            }
                        }
                        C::DropDefault => AlterOp::SetDefault {
                            column,
                            default: None,
                        },
                        C::SetDataType {
                            data_type, using, ..
                        } => {
                            let ty = data_type_of(data_type)?;
                            let old = (Expr::Column(i), table.columns[i].ty);
                            let target = Column {
                                ty,
                                ..table.columns[i].clone()
                            };
                            if target.default.is_some() && self.default_value(&target).is_err() {
                                bail!(
                                    DatatypeMismatch,
                                    "default for column \"{column}\" cannot be cast automatically to type {}",
                                    ty.pg_name()
                                );
                            }
                            let (value, value_ty) = match using {
                                Some(u) => {
                                    let typed = self.expr(u, &scope)?;
                                    self.explicit_cast(typed, ty)?
                                }
                                None => (self.coerce_assign(old, &target).map_err(|_| {
                                    Error::new(
                                        ErrorKind::DatatypeMismatch,
                                        format!(
                                            "column \"{column}\" cannot be cast automatically to type {} (give USING)",
                                            ty.pg_name()
                                        ),
                                    )
                                })?, match ty {
                                    DataType::Numeric(_) | DataType::Varchar(_) => ty.without_modifiers(),
                                    DataType::Char(_) => DataType::Text,
                                    other => other,
                                }),
                            };
                            AlterOp::SetType {
                                column,
                                ty,
                                value,
                                value_ty,
                            }
                        }
                        other => bail!(
                            FeatureNotSupported,
                            "ALTER COLUMN ... {other} is not supported yet"
                        ),
                    }
                }
                O::AddConstraint { constraint, .. } => match constraint {
                    ast::TableConstraint::PrimaryKey(pk) => AlterOp::AddPrimaryKey {
                        columns: column_list(&pk.columns)?,
                    },
                    ast::TableConstraint::Unique(u) => {
                        let columns = column_list(&u.columns)?;
                        let name = match &u.name {
                            Some(n) => ident(n),
                            None => format!("{}_{}_key", table.name, columns.join("_")),
                        };
                        AlterOp::AddUnique { name, columns }
                    }
                    ast::TableConstraint::ForeignKey(fk) => AlterOp::AddForeignKey {
                        def: FkDef::from_ast(fk, None)?,
                    },
                    ast::TableConstraint::Check(c) => AlterOp::AddCheck {
                        check: self.check_constraint(
                            &table,
                            c.name.as_ref().map(ident),
                            &c.expr.to_string(),
                            None,
                        )?,
                    },
                    other => bail!(
                        FeatureNotSupported,
                        "ADD CONSTRAINT {other} is not supported yet"
                    ),
                },
                O::DropConstraint {
                    if_exists, name, ..
                } => AlterOp::DropConstraint {
                    name: ident(name),
                    if_exists: *if_exists,
                },
                other => bail!(
                    FeatureNotSupported,
                    "ALTER TABLE ... {other} is not supported yet"
                ),
            });
        }
        // Each change is bound against the table as it was; one that reads
        // column positions must not follow one that moves them, and a
        // rename stands alone (as PostgreSQL requires).
        if ops.len() > 1 {
            let reshapes =
                |o: &AlterOp| matches!(o, AlterOp::AddColumn { .. } | AlterOp::DropColumn { .. });
            for (k, o) in ops.iter().enumerate() {
                let late = matches!(o, AlterOp::SetType { .. }) && ops[..k].iter().any(reshapes);
                if late
                    || matches!(
                        o,
                        AlterOp::RenameTable { .. } | AlterOp::RenameColumn { .. }
                    )
                {
                    bail!(
                        FeatureNotSupported,
                        "run this ALTER TABLE change in a statement of its own (RENAME, or ALTER COLUMN ... TYPE after ADD/DROP COLUMN)"
                    );
                }
            }
        }
        Ok(Bound::AlterTable { table, ops })
    }

    /// `ADD COLUMN`, and the changes that add its UNIQUE and REFERENCES
    /// constraints.
    fn add_column(
        &mut self,
        table: &Table,
        def: &ast::ColumnDef,
        if_not_exists: bool,
    ) -> Result<(AlterOp, Vec<AlterOp>)> {
        let mut sequences = Vec::new();
        let mut extras = super::ddl::Constraints::default();
        let (column, is_key) = self.define_column(&table.name, def, &mut sequences, &mut extras)?;
        let mut constraints = Vec::new();
        for (name, columns) in extras.uniques {
            let name = name.unwrap_or_else(|| format!("{}_{}_key", table.name, columns.join("_")));
            constraints.push(AlterOp::AddUnique { name, columns });
        }
        for def in extras.foreign_keys {
            constraints.push(AlterOp::AddForeignKey { def });
        }
        if !extras.checks.is_empty() {
            bail!(
                FeatureNotSupported,
                "ADD COLUMN ... CHECK is not supported yet (add the column, then the constraint)"
            );
        }
        if is_key {
            bail!(
                FeatureNotSupported,
                "ADD COLUMN ... PRIMARY KEY is not supported (add the column, then the key)"
            );
        }
        let fill = match &column.default {
            Some(_) => {
                let (e, _) = self.default_value(&column)?;
                (!matches!(e, Expr::Const(crate::types::Value::Null))).then_some(e)
            }
            None => None,
        };
        Ok((
            AlterOp::AddColumn {
                column,
                if_not_exists,
                fill,
                sequence: sequences.pop(),
            },
            constraints,
        ))
    }
}

fn data_type_of(t: &ast::DataType) -> Result<DataType> {
    data_type(t)
}
