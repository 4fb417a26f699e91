//! The system relations' rows, computed from a snapshot of the user
//! catalog, and the catalog functions that look objects up by OID or name
//! (`pg_get_indexdef`, `to_regclass`, …).

use super::*;

/// A constraint as `information_schema` lists it: its table, name, type,
/// columns, and for a foreign key the referenced columns.
type ConstraintInfo<'a> = (
    &'a Table,
    String,
    &'static str,
    Vec<usize>,
    Option<Vec<usize>>,
);

/// The user catalog, read once per scan of a system relation.
pub(super) struct Snapshot {
    tables: Vec<Arc<Table>>,
    pub(super) views: Vec<catalog::View>,
    sequences: Vec<catalog::Sequence>,
    /// Each view's column types (read for `pg_attribute` only).
    pub(super) view_types: Vec<Vec<DataType>>,
}

/// The column types of each view, found by binding `SELECT * FROM` it (a
/// view that no longer binds shows text columns).
pub(super) fn view_types(txn: &mut Txn, views: &[catalog::View]) -> Vec<Vec<DataType>> {
    views
        .iter()
        .map(|v| {
            let sql = format!("SELECT * FROM {}", quote_ident(&v.name));
            let bound = crate::session::parse(&sql).ok().and_then(|stmts| {
                let stmt = stmts.into_iter().next()?;
                crate::bind::Binder::new(txn, &[]).bind(&stmt).ok()
            });
            match bound {
                Some(crate::bind::Bound::Query { columns, .. }) => {
                    columns.iter().map(|c| c.ty).collect()
                }
                _ => vec![DataType::Text; v.columns.len()],
            }
        })
        .collect()
}

fn t(s: impl Into<Arc<str>>) -> Value {
    Value::Text(s.into())
}

fn o(n: i64) -> Value {
    Value::Int(n)
}

fn b(x: bool) -> Value {
    Value::Bool(x)
}

const NULL: Value = Value::Null;

/// PostgreSQL's text form of an integer array: `{1,2}`.
fn int_array(items: impl IntoIterator<Item = i64>) -> Value {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    t(format!("{{{}}}", items.join(",")))
}

/// An `int2vector`'s text form: `1 2`.
fn int_vector(items: impl IntoIterator<Item = i64>) -> Value {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    t(items.join(" "))
}

fn yes_no(x: bool) -> Value {
    t(if x { "YES" } else { "NO" })
}

/// PostgreSQL's reserved key words (and those reserved as column names):
/// a name equal to one is quoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// A name in SQL: quoted when it would not read back as itself.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !RESERVED.contains(&name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// An index or constraint of a table backed by an index: the primary key
/// (index 1) or a secondary index.
struct IndexInfo<'a> {
    id: IndexId,
    name: String,
    columns: &'a [usize],
    unique: bool,
    primary: bool,
    /// Made by a `UNIQUE` constraint or the primary key rather than by
    /// `CREATE INDEX` (named `…_key` / `…_pkey`).
    constraint: bool,
}

fn indexes(table: &Table) -> Vec<IndexInfo<'_>> {
    let mut out = Vec::new();
    if !table.primary_key.is_empty() {
        out.push(IndexInfo {
            id: PRIMARY_INDEX,
            name: table.pkey_name(),
            columns: &table.primary_key,
            unique: true,
            primary: true,
            constraint: true,
        });
    }
    for ix in &table.indexes {
        out.push(IndexInfo {
            id: ix.id,
            name: ix.name.clone(),
            columns: &ix.columns,
            unique: ix.unique,
            primary: false,
            constraint: ix.unique && ix.name.ends_with("_key"),
        });
    }
    out
}

fn column_list(table: &Table, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|&c| quote_ident(&table.columns[c].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pg_get_indexdef`'s text.
fn index_def(table: &Table, ix: &IndexInfo<'_>) -> String {
    format!(
        "CREATE {}INDEX {} ON public.{} USING btree ({})",
        if ix.unique { "UNIQUE " } else { "" },
        quote_ident(&ix.name),
        quote_ident(&table.name),
        column_list(table, ix.columns)
    )
}

/// `pg_get_constraintdef`'s text for a foreign key.
fn fkey_def(table: &Table, fk: &catalog::ForeignKey, parent: Option<&Table>) -> String {
    let parent_cols = match parent {
        Some(p) => column_list(p, &fk.parent_columns),
        None => String::new(),
    };
    let mut s = format!(
        "FOREIGN KEY ({}) REFERENCES {}({})",
        column_list(table, &fk.columns),
        quote_ident(&fk.parent),
        parent_cols
    );
    if fk.on_update != catalog::FkAction::NoAction {
        s += &format!(" ON UPDATE {}", fk.on_update.sql());
    }
    if fk.on_delete != catalog::FkAction::NoAction {
        s += &format!(" ON DELETE {}", fk.on_delete.sql());
    }
    s
}

fn fk_action_code(a: catalog::FkAction) -> Value {
    t(match a {
        catalog::FkAction::NoAction => "a",
        catalog::FkAction::Restrict => "r",
        catalog::FkAction::Cascade => "c",
        catalog::FkAction::SetNull => "n",
        catalog::FkAction::SetDefault => "d",
    })
}

impl Snapshot {
    pub(super) fn read(txn: &mut Txn) -> Result<Snapshot> {
        Ok(Snapshot {
            tables: catalog::list_tables(txn)?,
            views: catalog::list_views(txn)?,
            sequences: catalog::list_sequences(txn)?,
            view_types: Vec::new(),
        })
    }

    fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name).map(|t| &**t)
    }

    pub(super) fn rows(&self, which: SystemTable, who: &Identity) -> Vec<Row> {
        use SystemTable as S;
        let user = || t(who.user.as_str());
        let db = || t(who.database.as_str());
        match which {
            S::PgNamespace => vec![
                vec![o(PG_CATALOG_OID), t("pg_catalog"), o(USER_OID), NULL],
                vec![o(PUBLIC_OID), t("public"), o(DATABASE_OWNER_OID), NULL],
                vec![
                    o(INFORMATION_SCHEMA_OID),
                    t("information_schema"),
                    o(USER_OID),
                    NULL,
                ],
            ],
            S::PgClass => self.pg_class(),
            S::PgAttribute => self.pg_attribute(),
            S::PgAttrdef => {
                let mut out = Vec::new();
                for table in &self.tables {
                    for (i, c) in table.columns.iter().enumerate() {
                        if let Some(d) = &c.default {
                            out.push(vec![
                                o(relation_oid(table.id) + 4096 - 1 - i as i64),
                                o(relation_oid(table.id)),
                                o(i as i64 + 1),
                                t(d.as_str()),
                            ]);
                        }
                    }
                }
                out
            }
            S::PgType => TYPES
                .iter()
                .map(|ty| {
                    let collatable = ty.category == "S";
                    vec![
                        o(ty.oid),
                        t(ty.name),
                        o(PG_CATALOG_OID),
                        o(USER_OID),
                        o(ty.len),
                        b(ty.len > 0 && ty.len <= 8),
                        t("b"),
                        t(ty.category),
                        b(matches!(
                            ty.name,
                            "bool" | "text" | "float8" | "timestamptz"
                        )),
                        b(true),
                        t(","),
                        o(0),
                        t("-"),
                        o(0),
                        o(ty.array),
                        t(format!("{}in", ty.name)),
                        t(format!("{}out", ty.name)),
                        t(format!("{}recv", ty.name)),
                        t(format!("{}send", ty.name)),
                        t("-"),
                        t("-"),
                        t("-"),
                        t(if ty.len == 8 || ty.len < 0 { "d" } else { "i" }),
                        t(if ty.len < 0 { "x" } else { "p" }),
                        b(false),
                        o(0),
                        o(-1),
                        o(0),
                        o(if collatable { 100 } else { 0 }),
                        NULL,
                        NULL,
                        NULL,
                    ]
                })
                .collect(),
            S::PgIndex => {
                let mut out = Vec::new();
                for table in &self.tables {
                    for ix in indexes(table) {
                        let n = ix.columns.len() as i64;
                        out.push(vec![
                            o(index_oid(table, ix.id)),
                            o(relation_oid(table.id)),
                            o(n),
                            o(n),
                            b(ix.unique),
                            b(false),
                            b(ix.primary),
                            b(false),
                            b(true),
                            b(false),
                            b(true),
                            b(false),
                            b(true),
                            b(true),
                            b(false),
                            int_vector(ix.columns.iter().map(|&c| c as i64 + 1)),
                            int_vector(ix.columns.iter().map(|_| 0)),
                            int_vector(ix.columns.iter().map(|_| 0)),
                            int_vector(ix.columns.iter().map(|_| 0)),
                            NULL,
                            NULL,
                        ]);
                    }
                }
                out
            }
            S::PgConstraint => self.pg_constraint(),
            S::PgDatabase => vec![vec![
                o(DATABASE_OID),
                db(),
                o(USER_OID),
                o(6),
                t("c"),
                b(false),
                b(true),
                o(-1),
                o(0),
                o(1),
                o(1663),
                t("C"),
                t("C"),
                NULL,
                NULL,
                NULL,
            ]],
            S::PgRoles => vec![vec![
                user(),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                o(-1),
                t("********"),
                NULL,
                b(true),
                NULL,
                o(USER_OID),
            ]],
            S::PgUser => vec![vec![
                user(),
                o(USER_OID),
                b(true),
                b(true),
                b(true),
                b(true),
                t("********"),
                NULL,
                NULL,
            ]],
            S::PgAm => vec![
                vec![o(HEAP_OID), t("heap"), t("heap_tableam_handler"), t("t")],
                vec![o(BTREE_OID), t("btree"), t("bthandler"), t("i")],
            ],
            S::PgCollation => [(100, "default", "d"), (950, "C", "c"), (951, "POSIX", "c")]
                .into_iter()
                .map(|(oid, name, provider)| {
                    let locale = if provider == "d" { NULL } else { t(name) };
                    vec![
                        o(oid),
                        t(name),
                        o(PG_CATALOG_OID),
                        o(USER_OID),
                        t(provider),
                        b(true),
                        o(-1),
                        locale.clone(),
                        locale,
                        NULL,
                        NULL,
                    ]
                })
                .collect(),
            S::PgTables => self
                .tables
                .iter()
                .map(|table| {
                    vec![
                        t("public"),
                        t(table.name.as_str()),
                        user(),
                        NULL,
                        b(!indexes(table).is_empty()),
                        b(false),
                        b(!table.foreign_keys.is_empty() || !table.referenced_by.is_empty()),
                        b(false),
                    ]
                })
                .collect(),
            S::PgIndexes => {
                let mut out = Vec::new();
                for table in &self.tables {
                    for ix in indexes(table) {
                        out.push(vec![
                            t("public"),
                            t(table.name.as_str()),
                            t(ix.name.as_str()),
                            NULL,
                            t(index_def(table, &ix)),
                        ]);
                    }
                }
                out
            }
            S::PgViews => self
                .views
                .iter()
                .map(|v| vec![t("public"), t(v.name.as_str()), user(), t(v.sql.as_str())])
                .collect(),
            S::PgSequences => self
                .sequences
                .iter()
                .map(|s| {
                    vec![
                        t("public"),
                        t(s.name.as_str()),
                        user(),
                        t(sequence_type(s)),
                        o(s.start),
                        o(s.min),
                        o(s.max),
                        o(s.increment),
                        b(s.cycle),
                        o(s.cache),
                        NULL,
                    ]
                })
                .collect(),
            S::PgSequence => self
                .sequences
                .iter()
                .map(|s| {
                    vec![
                        o(relation_oid(s.id)),
                        o(match sequence_type(s) {
                            "smallint" => 21,
                            "integer" => 23,
                            _ => 20,
                        }),
                        o(s.start),
                        o(s.increment),
                        o(s.max),
                        o(s.min),
                        o(s.cache),
                        b(s.cycle),
                    ]
                })
                .collect(),
            S::PgTablespace => vec![
                vec![o(1663), t("pg_default"), o(USER_OID), NULL, NULL],
                vec![o(1664), t("pg_global"), o(USER_OID), NULL, NULL],
            ],
            S::PgDepend
            | S::PgOperator
            | S::PgDescription
            | S::PgInherits
            | S::PgAuthMembers
            | S::PgProc
            | S::PgPolicy
            | S::PgStatisticExt
            | S::PgPublication
            | S::PgPublicationNamespace
            | S::PgPublicationRel
            | S::PgTrigger
            | S::PgRewrite
            | S::PgExtension => Vec::new(),
            S::InfoTables => {
                let mut out: Vec<Row> = Vec::new();
                let names = self
                    .tables
                    .iter()
                    .map(|t| (t.name.as_str(), "BASE TABLE"))
                    .chain(self.views.iter().map(|v| (v.name.as_str(), "VIEW")));
                for (name, kind) in names {
                    out.push(vec![
                        db(),
                        t("public"),
                        t(name),
                        t(kind),
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        yes_no(kind == "BASE TABLE"),
                        t("NO"),
                        NULL,
                    ]);
                }
                out
            }
            S::InfoColumns => self.info_columns(who),
            S::InfoSchemata => ["pg_catalog", "public", "information_schema"]
                .into_iter()
                .map(|s| vec![db(), t(s), user(), NULL, NULL, NULL, NULL])
                .collect(),
            S::InfoTableConstraints => self.info_table_constraints(who),
            S::InfoKeyColumnUsage => self.info_key_column_usage(who),
            S::InfoViews => self
                .views
                .iter()
                .map(|v| {
                    vec![
                        db(),
                        t("public"),
                        t(v.name.as_str()),
                        t(v.sql.as_str()),
                        t("NONE"),
                        t("NO"),
                        t("NO"),
                        t("NO"),
                        t("NO"),
                        t("NO"),
                    ]
                })
                .collect(),
            S::InfoSequences => self
                .sequences
                .iter()
                .map(|s| {
                    vec![
                        db(),
                        t("public"),
                        t(s.name.as_str()),
                        t(sequence_type(s)),
                        o(match sequence_type(s) {
                            "smallint" => 16,
                            "integer" => 32,
                            _ => 64,
                        }),
                        o(2),
                        o(0),
                        t(s.start.to_string()),
                        t(s.min.to_string()),
                        t(s.max.to_string()),
                        t(s.increment.to_string()),
                        yes_no(s.cycle),
                    ]
                })
                .collect(),
        }
    }

    /// A `pg_class` row.
    #[allow(clippy::too_many_arguments)]
    fn class_row(
        oid: i64,
        name: &str,
        kind: &str,
        am: i64,
        natts: usize,
        checks: usize,
        (has_index, has_triggers): (bool, bool),
        tuples: f64,
    ) -> Row {
        vec![
            o(oid),
            t(name),
            o(PUBLIC_OID),
            o(0),
            o(0),
            o(USER_OID),
            o(am),
            o(oid),
            o(0),
            o(0),
            Value::Float(tuples),
            o(0),
            o(0),
            b(has_index),
            b(false),
            t("p"),
            t(kind),
            o(natts as i64),
            o(checks as i64),
            b(false),
            // Foreign keys are triggers in PostgreSQL; psql looks for them
            // only when this is set.
            b(has_triggers),
            b(false),
            b(false),
            b(false),
            b(true),
            t(if kind == "r" { "d" } else { "n" }),
            b(false),
            o(0),
            o(0),
            o(0),
            NULL,
            NULL,
            NULL,
        ]
    }

    fn pg_class(&self) -> Vec<Row> {
        let mut out = Vec::new();
        for table in &self.tables {
            let ixs = indexes(table);
            out.push(Self::class_row(
                relation_oid(table.id),
                &table.name,
                "r",
                HEAP_OID,
                table.columns.len(),
                table.checks.len(),
                (
                    !ixs.is_empty(),
                    !table.foreign_keys.is_empty() || !table.referenced_by.is_empty(),
                ),
                -1.0,
            ));
            for ix in ixs {
                out.push(Self::class_row(
                    index_oid(table, ix.id),
                    &ix.name,
                    "i",
                    BTREE_OID,
                    ix.columns.len(),
                    0,
                    (false, false),
                    0.0,
                ));
            }
        }
        for v in &self.views {
            out.push(Self::class_row(
                relation_oid(v.id),
                &v.name,
                "v",
                0,
                v.columns.len(),
                0,
                (false, false),
                0.0,
            ));
        }
        for s in &self.sequences {
            out.push(Self::class_row(
                relation_oid(s.id),
                &s.name,
                "S",
                0,
                3,
                0,
                (false, false),
                1.0,
            ));
        }
        out
    }

    fn pg_attribute(&self) -> Vec<Row> {
        let mut out = Vec::new();
        let attr =
            |rel: i64, num: usize, name: &str, ty: DataType, notnull, hasdef, ident: &str| {
                let oid = type_oid(ty);
                let len = TYPES.iter().find(|t| t.oid == oid).map_or(-1, |t| t.len);
                let collatable = matches!(
                    ty,
                    DataType::Text | DataType::Varchar(_) | DataType::Char(_)
                );
                vec![
                    o(rel),
                    t(name),
                    o(oid),
                    o(-1),
                    o(len),
                    o(num as i64),
                    o(0),
                    o(-1),
                    o(type_modifier(ty)),
                    b(len > 0 && len <= 8),
                    t(if len == 8 || len < 0 { "d" } else { "i" }),
                    t(match ty {
                        DataType::Numeric(_) => "m",
                        _ if len < 0 => "x",
                        _ => "p",
                    }),
                    t(""),
                    b(notnull),
                    b(hasdef),
                    b(false),
                    t(ident),
                    t(""),
                    b(false),
                    b(true),
                    o(0),
                    o(if collatable { 100 } else { 0 }),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                ]
            };
        for table in &self.tables {
            let rel = relation_oid(table.id);
            for (i, c) in table.columns.iter().enumerate() {
                let ident = if c.identity_always { "a" } else { "" };
                out.push(attr(
                    rel,
                    i + 1,
                    &c.name,
                    c.ty,
                    !c.nullable,
                    c.default.is_some(),
                    ident,
                ));
            }
            for ix in indexes(table) {
                for (k, &c) in ix.columns.iter().enumerate() {
                    let col = &table.columns[c];
                    // An index's columns are named after the table's.
                    out.push(attr(
                        index_oid(table, ix.id),
                        k + 1,
                        &col.name,
                        col.ty,
                        false,
                        false,
                        "",
                    ));
                }
            }
        }
        for (v, types) in self.views.iter().zip(&self.view_types) {
            for (i, (name, ty)) in v.columns.iter().zip(types).enumerate() {
                out.push(attr(relation_oid(v.id), i + 1, name, *ty, false, false, ""));
            }
        }
        out
    }

    fn pg_constraint(&self) -> Vec<Row> {
        let mut out = Vec::new();
        #[allow(clippy::too_many_arguments)]
        let row = |oid: i64,
                   name: &str,
                   kind: &str,
                   rel: i64,
                   index: i64,
                   frel: i64,
                   upd: Value,
                   del: Value,
                   key: Value,
                   fkey: Value,
                   bin: Value| {
            vec![
                o(oid),
                t(name),
                o(PUBLIC_OID),
                t(kind),
                b(false),
                b(false),
                b(true),
                o(rel),
                o(0),
                o(index),
                o(0),
                o(frel),
                upd,
                del,
                t(if kind == "f" { "s" } else { " " }),
                b(true),
                o(0),
                b(false),
                key,
                fkey,
                NULL,
                NULL,
                NULL,
                NULL,
                NULL,
                bin,
            ]
        };
        for table in &self.tables {
            let rel = relation_oid(table.id);
            for ix in indexes(table).iter().filter(|ix| ix.constraint) {
                let oid = index_oid(table, ix.id);
                out.push(row(
                    oid,
                    &ix.name,
                    if ix.primary { "p" } else { "u" },
                    rel,
                    oid,
                    0,
                    t(" "),
                    t(" "),
                    int_array(ix.columns.iter().map(|&c| c as i64 + 1)),
                    NULL,
                    NULL,
                ));
            }
            for (k, fk) in table.foreign_keys.iter().enumerate() {
                let parent = self.table(&fk.parent);
                let (frel, findex) = match parent {
                    Some(p) => (
                        relation_oid(p.id),
                        indexes(p)
                            .iter()
                            .find(|ix| ix.unique && ix.columns == fk.parent_columns.as_slice())
                            .map_or(0, |ix| index_oid(p, ix.id)),
                    ),
                    None => (0, 0),
                };
                out.push(row(
                    fkey_oid(table, k),
                    &fk.name,
                    "f",
                    rel,
                    findex,
                    frel,
                    fk_action_code(fk.on_update),
                    fk_action_code(fk.on_delete),
                    int_array(fk.columns.iter().map(|&c| c as i64 + 1)),
                    int_array(fk.parent_columns.iter().map(|&c| c as i64 + 1)),
                    NULL,
                ));
            }
            for (k, c) in table.checks.iter().enumerate() {
                out.push(row(
                    check_oid(table, k),
                    &c.name,
                    "c",
                    rel,
                    0,
                    0,
                    t(" "),
                    t(" "),
                    NULL,
                    NULL,
                    t(c.sql.as_str()),
                ));
            }
        }
        out
    }

    fn info_columns(&self, who: &Identity) -> Vec<Row> {
        let mut out = Vec::new();
        for table in &self.tables {
            for (i, c) in table.columns.iter().enumerate() {
                let (precision, radix, scale): (Value, Value, Value) = match c.ty {
                    DataType::Int2 => (o(16), o(2), o(0)),
                    DataType::Int4 => (o(32), o(2), o(0)),
                    DataType::Int8 => (o(64), o(2), o(0)),
                    DataType::Float4 => (o(24), o(2), NULL),
                    DataType::Float8 => (o(53), o(2), NULL),
                    DataType::Numeric(Some((p, s))) => (o(p.into()), o(10), o(s.into())),
                    DataType::Numeric(None) => (NULL, o(10), NULL),
                    _ => (NULL, NULL, NULL),
                };
                let char_len = match c.ty {
                    DataType::Varchar(Some(n)) | DataType::Char(n) => o(n.into()),
                    _ => NULL,
                };
                let octet_len = match c.ty {
                    DataType::Varchar(Some(n)) | DataType::Char(n) => o(i64::from(n) * 4),
                    DataType::Varchar(None) | DataType::Text => o(1_073_741_824),
                    _ => NULL,
                };
                let datetime = match c.ty {
                    DataType::Date => o(0),
                    DataType::Timestamp | DataType::TimestampTz | DataType::Interval => o(6),
                    _ => NULL,
                };
                let udt = TYPES
                    .iter()
                    .find(|t| t.oid == type_oid(c.ty))
                    .map_or("", |t| t.name);
                let data_type = match c.ty {
                    DataType::Varchar(_) => "character varying".to_string(),
                    DataType::Char(_) => "character".to_string(),
                    other => other.pg_name().to_string(),
                };
                out.push(vec![
                    t(who.database.as_str()),
                    t("public"),
                    t(table.name.as_str()),
                    t(c.name.as_str()),
                    o(i as i64 + 1),
                    c.default.as_deref().map_or(NULL, t),
                    yes_no(c.nullable),
                    t(data_type),
                    char_len,
                    octet_len,
                    precision,
                    radix,
                    scale,
                    datetime,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    t(who.database.as_str()),
                    t("pg_catalog"),
                    t(udt),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    t((i + 1).to_string()),
                    t("NO"),
                    yes_no(c.identity_always),
                    if c.identity_always { t("ALWAYS") } else { NULL },
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    if c.identity_always { t("NO") } else { NULL },
                    t("NEVER"),
                    NULL,
                    t("YES"),
                ]);
            }
        }
        out
    }

    /// Each constraint of each table: (table, name, type, columns,
    /// referenced unique constraint's columns for foreign keys).
    fn constraints(&self) -> Vec<ConstraintInfo<'_>> {
        let mut out = Vec::new();
        for table in &self.tables {
            for ix in indexes(table).iter().filter(|ix| ix.constraint) {
                let kind = if ix.primary { "PRIMARY KEY" } else { "UNIQUE" };
                out.push((&**table, ix.name.clone(), kind, ix.columns.to_vec(), None));
            }
            for fk in &table.foreign_keys {
                out.push((
                    &**table,
                    fk.name.clone(),
                    "FOREIGN KEY",
                    fk.columns.clone(),
                    Some(fk.parent_columns.clone()),
                ));
            }
            for c in &table.checks {
                out.push((&**table, c.name.clone(), "CHECK", Vec::new(), None));
            }
        }
        out
    }

    fn info_table_constraints(&self, who: &Identity) -> Vec<Row> {
        let mut out: Vec<Row> = self
            .constraints()
            .into_iter()
            .map(|(table, name, kind, _, _)| {
                vec![
                    t(who.database.as_str()),
                    t("public"),
                    t(name),
                    t(who.database.as_str()),
                    t("public"),
                    t(table.name.as_str()),
                    t(kind),
                    t("NO"),
                    t("NO"),
                    t("YES"),
                    if kind == "UNIQUE" || kind == "PRIMARY KEY" {
                        t("YES")
                    } else {
                        NULL
                    },
                ]
            })
            .collect();
        // PostgreSQL also lists each NOT NULL column as a CHECK constraint.
        for table in &self.tables {
            for (i, c) in table.columns.iter().enumerate() {
                if !c.nullable {
                    out.push(vec![
                        t(who.database.as_str()),
                        t("public"),
                        t(format!(
                            "{PUBLIC_OID}_{}_{}_not_null",
                            relation_oid(table.id),
                            i + 1
                        )),
                        t(who.database.as_str()),
                        t("public"),
                        t(table.name.as_str()),
                        t("CHECK"),
                        t("NO"),
                        t("NO"),
                        t("YES"),
                        NULL,
                    ]);
                }
            }
        }
        out
    }

    fn info_key_column_usage(&self, who: &Identity) -> Vec<Row> {
        let mut out = Vec::new();
        for (table, name, _, columns, referenced) in self.constraints() {
            for (k, &c) in columns.iter().enumerate() {
                // A foreign key's column's position within the referenced
                // unique constraint.
                let position = referenced.as_ref().map_or(NULL, |_| o(k as i64 + 1));
                out.push(vec![
                    t(who.database.as_str()),
                    t("public"),
                    t(name.as_str()),
                    t(who.database.as_str()),
                    t("public"),
                    t(table.name.as_str()),
                    t(table.columns[c].name.as_str()),
                    o(k as i64 + 1),
                    position,
                ]);
            }
        }
        out
    }

    /// The table owning index or constraint `oid`, and which one.
    fn find_by_oid(&self, oid: i64) -> Option<(&Table, i64)> {
        let base = oid.checked_sub(16_384).filter(|b| *b >= 0)?;
        let id = TableId::try_from(base / 4096 + i64::from(FIRST_USER_TABLE)).ok()?;
        let table = self.tables.iter().find(|t| t.id == id)?;
        Some((table, base % 4096))
    }
}

/// `pg_get_indexdef(index oid [, column])`: the whole definition, or for
/// a column number above 0 that key column's.
pub fn get_indexdef(txn: &mut Txn, oid: i64, column: i64) -> Result<Option<String>> {
    let cat = Snapshot::read(txn)?;
    let Some((table, sub)) = cat.find_by_oid(oid) else {
        return Ok(None);
    };
    let ixs = indexes(table);
    let Some(ix) = ixs.iter().find(|ix| i64::from(ix.id) == sub) else {
        return Ok(None);
    };
    if column <= 0 {
        return Ok(Some(index_def(table, ix)));
    }
    Ok(usize::try_from(column - 1)
        .ok()
        .and_then(|k| ix.columns.get(k))
        .map(|&c| quote_ident(&table.columns[c].name)))
}

/// `pg_get_constraintdef(constraint oid [, pretty])`.
pub fn get_constraintdef(txn: &mut Txn, oid: i64, pretty: bool) -> Result<Option<String>> {
    let cat = Snapshot::read(txn)?;
    let Some((table, sub)) = cat.find_by_oid(oid) else {
        return Ok(None);
    };
    if (2048..3072).contains(&sub) {
        return Ok(table
            .foreign_keys
            .get(sub as usize - 2048)
            .map(|fk| fkey_def(table, fk, cat.table(&fk.parent))));
    }
    if sub >= 3072 {
        return Ok(table.checks.get(sub as usize - 3072).map(|c| {
            if pretty {
                format!("CHECK ({})", c.sql)
            } else {
                format!("CHECK (({}))", c.sql)
            }
        }));
    }
    Ok(indexes(table)
        .iter()
        .find(|ix| i64::from(ix.id) == sub && ix.constraint)
        .map(|ix| {
            format!(
                "{} ({})",
                if ix.primary { "PRIMARY KEY" } else { "UNIQUE" },
                column_list(table, ix.columns)
            )
        }))
}

/// The name of the relation (table, index, view, sequence, system
/// relation) with OID `oid`, quoted where needed.
pub fn relation_name(txn: &mut Txn, oid: i64) -> Result<Option<String>> {
    let cat = Snapshot::read(txn)?;
    let found = cat
        .tables
        .iter()
        .find_map(|t| {
            if relation_oid(t.id) == oid {
                return Some(t.name.clone());
            }
            indexes(t)
                .into_iter()
                .find(|ix| index_oid(t, ix.id) == oid)
                .map(|ix| ix.name)
        })
        .or_else(|| {
            cat.views
                .iter()
                .find(|v| relation_oid(v.id) == oid)
                .map(|v| v.name.clone())
        })
        .or_else(|| {
            cat.sequences
                .iter()
                .find(|s| relation_oid(s.id) == oid)
                .map(|s| s.name.clone())
        });
    Ok(found.map(|n| quote_ident(&n)))
}

/// `pg_get_serial_sequence(table, column)`: the sequence a column's
/// default draws from (SERIAL, identity, `OWNED BY`), schema-qualified.
pub fn serial_sequence(txn: &mut Txn, table: &str, column: &str) -> Result<Option<String>> {
    let (schema, table) = split_qualified(table)?;
    if schema.as_deref().is_some_and(|s| s != "public") {
        return Ok(None);
    }
    let Some(t) = catalog::get_table(txn, &table)? else {
        bail!(UndefinedTable, "relation \"{table}\" does not exist");
    };
    // The column name is taken as written (PostgreSQL does not fold it).
    if t.column_index(column).is_none() {
        bail!(
            UndefinedColumn,
            "column \"{column}\" of relation \"{table}\" does not exist"
        );
    }
    Ok(catalog::sequences_owned_by(txn, &table)?
        .into_iter()
        .find(|s| s.owned_by.as_ref().is_some_and(|(_, c)| c == column))
        .map(|s| format!("public.{}", quote_ident(&s.name))))
}

/// `pg_get_viewdef(view oid)`.
pub fn get_viewdef(txn: &mut Txn, oid: i64) -> Result<Option<String>> {
    Ok(catalog::list_views(txn)?
        .into_iter()
        .find(|v| relation_oid(v.id) == oid)
        .map(|v| v.sql))
}

/// The OID of the relation a `regclass` text names (`to_regclass`):
/// a table, index, view or sequence, optionally `public.`-qualified, or a
/// number.
pub fn regclass(txn: &mut Txn, text: &str) -> Result<Option<i64>> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Some(n));
    }
    let (schema, name) = split_qualified(text)?;
    if schema.as_deref() != Some("public")
        && let Some(sys) = SystemTable::lookup(schema.as_deref(), &name)
    {
        return Ok(Some(sys.oid()));
    }
    if let Some(s) = schema.as_deref()
        && s != "public"
    {
        return Ok(None);
    }
    let cat = Snapshot::read(txn)?;
    for table in &cat.tables {
        if table.name == name {
            return Ok(Some(relation_oid(table.id)));
        }
        if let Some(ix) = indexes(table).iter().find(|ix| ix.name == name) {
            return Ok(Some(index_oid(table, ix.id)));
        }
    }
    if let Some(v) = cat.views.iter().find(|v| v.name == name) {
        return Ok(Some(relation_oid(v.id)));
    }
    Ok(cat
        .sequences
        .iter()
        .find(|s| s.name == name)
        .map(|s| relation_oid(s.id)))
}

/// Splits `a.b` / `"A".b` / `b` into an optional schema and a name,
/// folding unquoted parts to lower case.
pub(super) fn split_qualified(text: &str) -> Result<(Option<String>, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(c) => cur.push(c),
                        None => bail!(InvalidName, "invalid name syntax"),
                    }
                }
            }
            '.' => {
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            c if quoted_part => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    match parts.len() {
        1 => Ok((None, parts.pop().unwrap_or_default())),
        2 => {
            let name = parts.pop().unwrap_or_default();
            Ok((parts.pop(), name))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidName,
            format!("improper relation name (too many dotted names): {text}"),
        )),
    }
}
