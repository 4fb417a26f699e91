//! The system catalog as PostgreSQL's tools read it: `pg_catalog` and
//! `information_schema` relations computed from our catalog when a
//! statement reads them ([`crate::plan::Plan::System`]), and the functions
//! psql and drivers call on them (`pg_get_indexdef`, `format_type`, …).
//!
//! OIDs are stable and derived from ids that are never reused: a table,
//! view or sequence with id `n` has OID `16384 + (n - 1000) * 4096`; its
//! indexes (the primary key's is index 1) add their index id, its foreign
//! keys `2048 + k` and its CHECK constraints `3072 + k` (the k-th). Built-in
//! types keep PostgreSQL's OIDs. Columns PostgreSQL types as `oid`, `name`,
//! `"char"`, `regproc` or arrays are `bigint` and `text` here (their text
//! forms match; arrays print as PostgreSQL prints them, e.g. `{1,2}`).

use std::sync::Arc;

use kv::keys::{FIRST_USER_TABLE, IndexId, PRIMARY_INDEX, TableId};
use kv::{Error, ErrorKind, Result, bail};
use txn::Txn;

use crate::bind::Identity;
use crate::catalog::{self, Table};
use crate::exec::Row;
use crate::types::{DataType, Value};

mod snapshot;

use self::snapshot::{Snapshot, view_types};
pub use self::snapshot::{
    get_constraintdef, get_indexdef, get_viewdef, quote_ident, regclass, relation_name,
    serial_sequence,
};

/// `pg_catalog`'s namespace OID.
pub const PG_CATALOG_OID: i64 = 11;
/// `public`'s namespace OID.
pub const PUBLIC_OID: i64 = 2200;
/// `information_schema`'s namespace OID.
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;
/// The bootstrap superuser's OID (every session's user).
pub const USER_OID: i64 = 10;
/// `pg_database_owner`, the owner of schema `public` (PostgreSQL 15).
pub const DATABASE_OWNER_OID: i64 = 6171;
/// A sequence's type, as far as its bounds tell (the catalog does not keep
/// it): `integer` and `smallint` sequences end at their type's maximum.
fn sequence_type(s: &catalog::Sequence) -> &'static str {
    if s.max == i64::from(i16::MAX) {
        "smallint"
    } else if s.max == i64::from(i32::MAX) {
        "integer"
    } else {
        "bigint"
    }
}

/// The current database's OID.
pub const DATABASE_OID: i64 = 5;
/// `btree`, the access method of every index.
const BTREE_OID: i64 = 403;
/// `heap`, the access method of every table.
const HEAP_OID: i64 = 2;

/// The OID of the table, view or sequence with id `id`.
pub fn relation_oid(id: TableId) -> i64 {
    16_384 + (i64::from(id) - i64::from(FIRST_USER_TABLE)) * 4096
}

/// The OID of a table's index.
pub fn index_oid(table: &Table, index: IndexId) -> i64 {
    relation_oid(table.id) + i64::from(index)
}

fn fkey_oid(table: &Table, k: usize) -> i64 {
    relation_oid(table.id) + 2048 + k as i64
}

fn check_oid(table: &Table, k: usize) -> i64 {
    relation_oid(table.id) + 3072 + k as i64
}

/// A built-in type: OID, name, length, category, array type OID.
struct BuiltinType {
    oid: i64,
    name: &'static str,
    len: i64,
    category: &'static str,
    array: i64,
}

const fn ty(
    oid: i64,
    name: &'static str,
    len: i64,
    category: &'static str,
    array: i64,
) -> BuiltinType {
    BuiltinType {
        oid,
        name,
        len,
        category,
        array,
    }
}

/// The types a column or an expression can have here, plus the ones the
/// catalog's own columns stand for.
const TYPES: &[BuiltinType] = &[
    ty(16, "bool", 1, "B", 1000),
    ty(18, "char", 1, "Z", 1002),
    ty(19, "name", 64, "S", 1003),
    ty(20, "int8", 8, "N", 1016),
    ty(21, "int2", 2, "N", 1005),
    ty(23, "int4", 4, "N", 1007),
    ty(25, "text", -1, "S", 1009),
    ty(26, "oid", 4, "N", 1028),
    ty(700, "float4", 4, "N", 1021),
    ty(701, "float8", 8, "N", 1022),
    ty(705, "unknown", -2, "X", 0),
    ty(1042, "bpchar", -1, "S", 1014),
    ty(1043, "varchar", -1, "S", 1015),
    ty(1082, "date", 4, "D", 1182),
    ty(1114, "timestamp", 8, "D", 1115),
    ty(1184, "timestamptz", 8, "D", 1185),
    ty(1186, "interval", 16, "T", 1187),
    ty(1700, "numeric", -1, "N", 1231),
];

/// The OID of a type.
pub fn type_oid(t: DataType) -> i64 {
    match t {
        DataType::Bool => 16,
        DataType::Int2 => 21,
        DataType::Int4 => 23,
        DataType::Int8 => 20,
        DataType::Numeric(_) => 1700,
        DataType::Float4 => 700,
        DataType::Float8 => 701,
        DataType::Text => 25,
        DataType::Varchar(_) => 1043,
        DataType::Char(_) => 1042,
        DataType::Timestamp => 1114,
        DataType::Unknown => 705,
        DataType::Date => 1082,
        DataType::TimestampTz => 1184,
        DataType::Interval => 1186,
    }
}

/// A type's modifier as PostgreSQL stores it (`atttypmod`): -1 for none.
pub fn type_modifier(t: DataType) -> i64 {
    match t {
        DataType::Varchar(Some(n)) | DataType::Char(n) => i64::from(n) + 4,
        DataType::Numeric(Some((p, s))) => ((i64::from(p) << 16) | i64::from(s)) + 4,
        _ => -1,
    }
}

/// `format_type(oid, typmod)`: the type's SQL name with its modifier.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let m = typmod.filter(|m| *m >= 4).map(|m| m - 4);
    Some(match oid {
        16 => "boolean".into(),
        18 => "\"char\"".into(),
        19 => "name".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        25 => "text".into(),
        26 => "oid".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        705 => "unknown".into(),
        1042 => match m {
            Some(n) => format!("character({n})"),
            None => "bpchar".into(),
        },
        1043 => match m {
            Some(n) => format!("character varying({n})"),
            None => "character varying".into(),
        },
        1082 => "date".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        1186 => "interval".into(),
        1700 => match m {
            Some(m) => format!("numeric({},{})", m >> 16, m & 0xffff),
            None => "numeric".into(),
        },
        _ => {
            let t = TYPES.iter().find(|t| t.array == oid)?;
            format!("{}[]", format_type(t.oid, None)?)
        }
    })
}

/// The OID of the type a `regtype` text names (`integer`, `int4`,
/// `character varying(20)`, `pg_catalog.text`, `int4[]`), if it is one of
/// ours.
pub fn type_by_name(text: &str) -> Option<i64> {
    let mut name = text.trim().to_lowercase();
    if let Some(rest) = name.strip_prefix("pg_catalog.") {
        name = rest.to_string();
    }
    let array = name.ends_with("[]");
    if array {
        name.truncate(name.len() - 2);
    }
    if let Some(open) = name.find('(') {
        let close = name.rfind(')')?;
        name = format!("{}{}", &name[..open], &name[close + 1..]);
    }
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let canonical = match name.as_str() {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "\"char\"" => "char",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "decimal" => "numeric",
        other => other,
    };
    let t = TYPES.iter().find(|t| t.name == canonical)?;
    Some(if array { t.array } else { t.oid })
}

/// A system relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemTable {
    PgNamespace,
    PgClass,
    PgAttribute,
    PgAttrdef,
    PgType,
    PgIndex,
    PgConstraint,
    PgDatabase,
    PgRoles,
    PgUser,
    PgAuthMembers,
    PgAm,
    PgCollation,
    PgDescription,
    PgInherits,
    PgTables,
    PgIndexes,
    PgViews,
    PgSequences,
    PgSequence,
    PgDepend,
    PgTablespace,
    PgOperator,
    PgProc,
    PgPolicy,
    PgStatisticExt,
    PgPublication,
    PgPublicationNamespace,
    PgPublicationRel,
    PgTrigger,
    PgRewrite,
    PgExtension,
    InfoTables,
    InfoColumns,
    InfoSchemata,
    InfoTableConstraints,
    InfoKeyColumnUsage,
    InfoViews,
    InfoSequences,
}

/// Column codes of [`SystemTable::columns`]: the PostgreSQL type each
/// stands for and the type it has here.
fn code_type(code: char) -> DataType {
    match code {
        'o' | 'x' | 'l' => DataType::Int8, // oid, xid, int8
        'i' => DataType::Int4,
        's' => DataType::Int2,
        'b' => DataType::Bool,
        'f' => DataType::Float4,
        'm' => DataType::TimestampTz,
        _ => DataType::Text, // name, "char", text, regproc, arrays
    }
}

impl SystemTable {
    /// The relation a (possibly schema-qualified) name means, if any:
    /// `pg_catalog`'s relations also unqualified (PostgreSQL searches
    /// `pg_catalog` first), `information_schema`'s only qualified.
    pub fn lookup(schema: Option<&str>, name: &str) -> Option<SystemTable> {
        use SystemTable as S;
        match schema {
            None | Some("pg_catalog") => Some(match name {
                "pg_namespace" => S::PgNamespace,
                "pg_class" => S::PgClass,
                "pg_attribute" => S::PgAttribute,
                "pg_attrdef" => S::PgAttrdef,
                "pg_type" => S::PgType,
                "pg_index" => S::PgIndex,
                "pg_constraint" => S::PgConstraint,
                "pg_database" => S::PgDatabase,
                "pg_roles" | "pg_authid" => S::PgRoles,
                "pg_user" => S::PgUser,
                "pg_auth_members" => S::PgAuthMembers,
                "pg_am" => S::PgAm,
                "pg_collation" => S::PgCollation,
                "pg_description" => S::PgDescription,
                "pg_inherits" => S::PgInherits,
                "pg_tables" => S::PgTables,
                "pg_indexes" => S::PgIndexes,
                "pg_views" => S::PgViews,
                "pg_sequences" => S::PgSequences,
                "pg_sequence" => S::PgSequence,
                "pg_depend" => S::PgDepend,
                "pg_tablespace" => S::PgTablespace,
                "pg_operator" => S::PgOperator,
                "pg_proc" => S::PgProc,
                "pg_policy" => S::PgPolicy,
                "pg_statistic_ext" => S::PgStatisticExt,
                "pg_publication" => S::PgPublication,
                "pg_publication_namespace" => S::PgPublicationNamespace,
                "pg_publication_rel" => S::PgPublicationRel,
                "pg_trigger" => S::PgTrigger,
                "pg_rewrite" => S::PgRewrite,
                "pg_extension" => S::PgExtension,
                _ => return None,
            }),
            Some("information_schema") => Some(match name {
                "tables" => S::InfoTables,
                "columns" => S::InfoColumns,
                "schemata" => S::InfoSchemata,
                "table_constraints" => S::InfoTableConstraints,
                "key_column_usage" => S::InfoKeyColumnUsage,
                "views" => S::InfoViews,
                "sequences" => S::InfoSequences,
                _ => return None,
            }),
            Some(_) => None,
        }
    }

    /// The relation's OID: PostgreSQL 15's for its catalogs, made-up ones
    /// (below 16384) for its views.
    pub fn oid(self) -> i64 {
        use SystemTable as S;
        match self {
            S::PgNamespace => 2615,
            S::PgClass => 1259,
            S::PgAttribute => 1249,
            S::PgAttrdef => 2604,
            S::PgType => 1247,
            S::PgIndex => 2610,
            S::PgConstraint => 2606,
            S::PgDatabase => 1262,
            S::PgRoles => 12_001,
            S::PgUser => 12_002,
            S::PgAuthMembers => 1261,
            S::PgAm => 2601,
            S::PgCollation => 3456,
            S::PgDescription => 2609,
            S::PgInherits => 2611,
            S::PgTables => 12_003,
            S::PgIndexes => 12_004,
            S::PgViews => 12_005,
            S::PgSequences => 12_006,
            S::PgSequence => 2224,
            S::PgDepend => 2608,
            S::PgTablespace => 1213,
            S::PgOperator => 2617,
            S::PgProc => 1255,
            S::PgPolicy => 3256,
            S::PgStatisticExt => 3381,
            S::PgPublication => 6104,
            S::PgPublicationNamespace => 6237,
            S::PgPublicationRel => 6106,
            S::PgTrigger => 2620,
            S::PgRewrite => 2618,
            S::PgExtension => 3079,
            S::InfoTables => 13_001,
            S::InfoColumns => 13_002,
            S::InfoSchemata => 13_003,
            S::InfoTableConstraints => 13_004,
            S::InfoKeyColumnUsage => 13_005,
            S::InfoViews => 13_006,
            S::InfoSequences => 13_007,
        }
    }

    /// The relation's name as written in messages and EXPLAIN.
    pub fn name(self) -> &'static str {
        use SystemTable as S;
        match self {
            S::PgNamespace => "pg_namespace",
            S::PgClass => "pg_class",
            S::PgAttribute => "pg_attribute",
            S::PgAttrdef => "pg_attrdef",
            S::PgType => "pg_type",
            S::PgIndex => "pg_index",
            S::PgConstraint => "pg_constraint",
            S::PgDatabase => "pg_database",
            S::PgRoles => "pg_roles",
            S::PgUser => "pg_user",
            S::PgAuthMembers => "pg_auth_members",
            S::PgAm => "pg_am",
            S::PgCollation => "pg_collation",
            S::PgDescription => "pg_description",
            S::PgInherits => "pg_inherits",
            S::PgTables => "pg_tables",
            S::PgIndexes => "pg_indexes",
            S::PgViews => "pg_views",
            S::PgSequences => "pg_sequences",
            S::PgSequence => "pg_sequence",
            S::PgDepend => "pg_depend",
            S::PgTablespace => "pg_tablespace",
            S::PgOperator => "pg_operator",
            S::PgProc => "pg_proc",
            S::PgPolicy => "pg_policy",
            S::PgStatisticExt => "pg_statistic_ext",
            S::PgPublication => "pg_publication",
            S::PgPublicationNamespace => "pg_publication_namespace",
            S::PgPublicationRel => "pg_publication_rel",
            S::PgTrigger => "pg_trigger",
            S::PgRewrite => "pg_rewrite",
            S::PgExtension => "pg_extension",
            S::InfoTables => "tables",
            S::InfoColumns => "columns",
            S::InfoSchemata => "schemata",
            S::InfoTableConstraints => "table_constraints",
            S::InfoKeyColumnUsage => "key_column_usage",
            S::InfoViews => "views",
            S::InfoSequences => "sequences",
        }
    }

    /// `name:code` pairs, PostgreSQL 15's columns in its order (codes: see
    /// [`code_type`]).
    fn spec(self) -> &'static str {
        use SystemTable as S;
        match self {
            S::PgNamespace => "oid:o nspname:n nspowner:o nspacl:a",
            S::PgClass => {
                "oid:o relname:n relnamespace:o reltype:o reloftype:o relowner:o relam:o \
                 relfilenode:o reltablespace:o relpages:i reltuples:f relallvisible:i \
                 reltoastrelid:o relhasindex:b relisshared:b relpersistence:c relkind:c \
                 relnatts:s relchecks:s relhasrules:b relhastriggers:b relhassubclass:b \
                 relrowsecurity:b relforcerowsecurity:b relispopulated:b relreplident:c \
                 relispartition:b relrewrite:o relfrozenxid:x relminmxid:x relacl:a \
                 reloptions:a relpartbound:t"
            }
            S::PgAttribute => {
                "attrelid:o attname:n atttypid:o attstattarget:i attlen:s attnum:s \
                 attndims:i attcacheoff:i atttypmod:i attbyval:b attalign:c attstorage:c \
                 attcompression:c attnotnull:b atthasdef:b atthasmissing:b attidentity:c \
                 attgenerated:c attisdropped:b attislocal:b attinhcount:i attcollation:o \
                 attacl:a attoptions:a attfdwoptions:a attmissingval:a"
            }
            S::PgAttrdef => "oid:o adrelid:o adnum:s adbin:t",
            S::PgType => {
                "oid:o typname:n typnamespace:o typowner:o typlen:s typbyval:b typtype:c \
                 typcategory:c typispreferred:b typisdefined:b typdelim:c typrelid:o \
                 typsubscript:g typelem:o typarray:o typinput:g typoutput:g typreceive:g \
                 typsend:g typmodin:g typmodout:g typanalyze:g typalign:c typstorage:c \
                 typnotnull:b typbasetype:o typtypmod:i typndims:i typcollation:o \
                 typdefaultbin:t typdefault:t typacl:a"
            }
            S::PgIndex => {
                "indexrelid:o indrelid:o indnatts:s indnkeyatts:s indisunique:b \
                 indnullsnotdistinct:b indisprimary:b indisexclusion:b indimmediate:b \
                 indisclustered:b indisvalid:b indcheckxmin:b indisready:b indislive:b \
                 indisreplident:b indkey:a indcollation:a indclass:a indoption:a \
                 indexprs:t indpred:t"
            }
            S::PgConstraint => {
                "oid:o conname:n connamespace:o contype:c condeferrable:b condeferred:b \
                 convalidated:b conrelid:o contypid:o conindid:o conparentid:o confrelid:o \
                 confupdtype:c confdeltype:c confmatchtype:c conislocal:b coninhcount:i \
                 connoinherit:b conkey:a confkey:a conpfeqop:a conppeqop:a conffeqop:a \
                 confdelsetcols:a conexclop:a conbin:t"
            }
            S::PgDatabase => {
                "oid:o datname:n datdba:o encoding:i datlocprovider:c datistemplate:b \
                 datallowconn:b datconnlimit:i datfrozenxid:x datminmxid:x dattablespace:o \
                 datcollate:t datctype:t daticulocale:t datcollversion:t datacl:a"
            }
            S::PgRoles => {
                "rolname:n rolsuper:b rolinherit:b rolcreaterole:b rolcreatedb:b \
                 rolcanlogin:b rolreplication:b rolconnlimit:i rolpassword:t \
                 rolvaliduntil:m rolbypassrls:b rolconfig:a oid:o"
            }
            S::PgUser => {
                "usename:n usesysid:o usecreatedb:b usesuper:b userepl:b usebypassrls:b \
                 passwd:t valuntil:m useconfig:a"
            }
            S::PgAuthMembers => "roleid:o member:o grantor:o admin_option:b",
            S::PgAm => "oid:o amname:n amhandler:g amtype:c",
            S::PgCollation => {
                "oid:o collname:n collnamespace:o collowner:o collprovider:c \
                 collisdeterministic:b collencoding:i collcollate:t collctype:t \
                 colliculocale:t collversion:t"
            }
            S::PgDescription => "objoid:o classoid:o objsubid:i description:t",
            S::PgInherits => "inhrelid:o inhparent:o inhseqno:i inhdetachpending:b",
            S::PgTables => {
                "schemaname:n tablename:n tableowner:n tablespace:n hasindexes:b \
                 hasrules:b hastriggers:b rowsecurity:b"
            }
            S::PgIndexes => "schemaname:n tablename:n indexname:n tablespace:n indexdef:t",
            S::PgViews => "schemaname:n viewname:n viewowner:n definition:t",
            S::PgSequences => {
                "schemaname:n sequencename:n sequenceowner:n data_type:t start_value:l \
                 min_value:l max_value:l increment_by:l cycle:b cache_size:l last_value:l"
            }
            S::PgTablespace => "oid:o spcname:n spcowner:o spcacl:a spcoptions:a",
            S::PgOperator => {
                "oid:o oprname:n oprnamespace:o oprowner:o oprkind:c oprcanmerge:b \
                 oprcanhash:b oprleft:o oprright:o oprresult:o oprcom:o oprnegate:o \
                 oprcode:g oprrest:g oprjoin:g"
            }
            S::PgDepend => {
                "classid:o objid:o objsubid:i refclassid:o refobjid:o refobjsubid:i deptype:c"
            }
            S::PgSequence => {
                "seqrelid:o seqtypid:o seqstart:l seqincrement:l seqmax:l seqmin:l \
                 seqcache:l seqcycle:b"
            }
            S::PgProc => {
                "oid:o proname:n pronamespace:o proowner:o prolang:o procost:f \
                 prorows:f provariadic:o prosupport:g prokind:c prosecdef:b \
                 proleakproof:b proisstrict:b proretset:b provolatile:c proparallel:c \
                 pronargs:s pronargdefaults:s prorettype:o proargtypes:a \
                 proallargtypes:a proargmodes:a proargnames:a proargdefaults:t \
                 protrftypes:a prosrc:t probin:t prosqlbody:t proconfig:a proacl:a"
            }
            S::PgPolicy => {
                "oid:o polname:n polrelid:o polcmd:c polpermissive:b polroles:a \
                 polqual:t polwithcheck:t"
            }
            S::PgStatisticExt => {
                "oid:o stxrelid:o stxname:n stxnamespace:o stxowner:o stxstattarget:i \
                 stxkeys:a stxkind:a stxexprs:t"
            }
            S::PgPublication => {
                "oid:o pubname:n pubowner:o puballtables:b pubinsert:b pubupdate:b \
                 pubdelete:b pubtruncate:b pubviaroot:b"
            }
            S::PgPublicationNamespace => "oid:o pnpubid:o pnnspid:o",
            S::PgPublicationRel => "oid:o prpubid:o prrelid:o prqual:t prattrs:a",
            S::PgTrigger => {
                "oid:o tgrelid:o tgparentid:o tgname:n tgfoid:o tgtype:s tgenabled:c \
                 tgisinternal:b tgconstrrelid:o tgconstrindid:o tgconstraint:o \
                 tgdeferrable:b tginitdeferred:b tgnargs:s tgattr:a tgargs:t tgqual:t \
                 tgoldtable:n tgnewtable:n"
            }
            S::PgRewrite => {
                "oid:o rulename:n ev_class:o ev_type:c ev_enabled:c is_instead:b \
                 ev_qual:t ev_action:t"
            }
            S::PgExtension => {
                "oid:o extname:n extowner:o extnamespace:o extrelocatable:b \
                 extversion:t extconfig:a extcondition:a"
            }
            S::InfoTables => {
                "table_catalog:n table_schema:n table_name:n table_type:t \
                 self_referencing_column_name:n reference_generation:t \
                 user_defined_type_catalog:n user_defined_type_schema:n \
                 user_defined_type_name:n is_insertable_into:t is_typed:t commit_action:t"
            }
            S::InfoColumns => {
                "table_catalog:n table_schema:n table_name:n column_name:n \
                 ordinal_position:i column_default:t is_nullable:t data_type:t \
                 character_maximum_length:i character_octet_length:i numeric_precision:i \
                 numeric_precision_radix:i numeric_scale:i datetime_precision:i \
                 interval_type:t interval_precision:i character_set_catalog:n \
                 character_set_schema:n character_set_name:n collation_catalog:n \
                 collation_schema:n collation_name:n domain_catalog:n domain_schema:n \
                 domain_name:n udt_catalog:n udt_schema:n udt_name:n scope_catalog:n \
                 scope_schema:n scope_name:n maximum_cardinality:i dtd_identifier:n \
                 is_self_referencing:t is_identity:t identity_generation:t \
                 identity_start:t identity_increment:t identity_maximum:t \
                 identity_minimum:t identity_cycle:t is_generated:t \
                 generation_expression:t is_updatable:t"
            }
            S::InfoSchemata => {
                "catalog_name:n schema_name:n schema_owner:n \
                 default_character_set_catalog:n default_character_set_schema:n \
                 default_character_set_name:n sql_path:t"
            }
            S::InfoTableConstraints => {
                "constraint_catalog:n constraint_schema:n constraint_name:n \
                 table_catalog:n table_schema:n table_name:n constraint_type:t \
                 is_deferrable:t initially_deferred:t enforced:t nulls_distinct:t"
            }
            S::InfoKeyColumnUsage => {
                "constraint_catalog:n constraint_schema:n constraint_name:n \
                 table_catalog:n table_schema:n table_name:n column_name:n \
                 ordinal_position:i position_in_unique_constraint:i"
            }
            S::InfoViews => {
                "table_catalog:n table_schema:n table_name:n view_definition:t \
                 check_option:t is_updatable:t is_insertable_into:t \
                 is_trigger_updatable:t is_trigger_deletable:t \
                 is_trigger_insertable_into:t"
            }
            S::InfoSequences => {
                "sequence_catalog:n sequence_schema:n sequence_name:n data_type:t \
                 numeric_precision:i numeric_precision_radix:i numeric_scale:i \
                 start_value:t minimum_value:t maximum_value:t increment:t cycle_option:t"
            }
        }
    }

    /// The relation's columns: names and types.
    pub fn columns(self) -> Vec<(&'static str, DataType)> {
        self.spec()
            .split_whitespace()
            .map(|c| {
                let (name, code) = c.split_once(':').expect("name:code");
                (name, code_type(code.chars().next().unwrap_or('t')))
            })
            .collect()
    }

    /// The relation's rows now, as `txn` sees the catalog.
    pub fn rows(self, txn: &mut Txn, who: &Identity) -> Result<Vec<Row>> {
        let mut cat = Snapshot::read(txn)?;
        if self == SystemTable::PgAttribute {
            cat.view_types = view_types(txn, &cat.views);
        }
        let width = self.columns().len();
        let rows = cat.rows(self, who);
        if let Some(bad) = rows.iter().find(|r| r.len() != width) {
            return Err(Error::internal(format!(
                "{} row has {} values for {width} columns",
                self.name(),
                bad.len()
            )));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot::split_qualified;
    use super::*;

    #[test]
    fn every_relation_has_typed_columns() {
        for name in [
            "pg_class",
            "pg_attribute",
            "pg_type",
            "pg_constraint",
            "pg_index",
        ] {
            let t = SystemTable::lookup(Some("pg_catalog"), name).unwrap();
            assert!(t.columns().len() > 5, "{name}");
        }
        assert_eq!(SystemTable::lookup(None, "tables"), None);
        assert_eq!(
            SystemTable::lookup(Some("information_schema"), "tables"),
            Some(SystemTable::InfoTables)
        );
    }

    #[test]
    fn types_format_as_postgresql_does() {
        assert_eq!(
            format_type(1043, Some(24)).unwrap(),
            "character varying(20)"
        );
        assert_eq!(
            format_type(1700, Some((10 << 16 | 2) + 4)).unwrap(),
            "numeric(10,2)"
        );
        assert_eq!(format_type(23, Some(-1)).unwrap(), "integer");
        assert_eq!(format_type(1007, None).unwrap(), "integer[]");
        assert_eq!(format_type(99_999, None), None);
        assert_eq!(
            type_modifier(DataType::Numeric(Some((10, 2)))),
            (10 << 16 | 2) + 4
        );
    }

    #[test]
    fn qualified_names_split_and_fold() {
        assert_eq!(
            split_qualified("public.T").unwrap(),
            (Some("public".into()), "t".into())
        );
        assert_eq!(split_qualified("\"My.T\"").unwrap(), (None, "My.T".into()));
        assert!(split_qualified("a.b.c").is_err());
    }

    #[test]
    fn names_quote_only_when_needed() {
        assert_eq!(quote_ident("abc_1"), "abc_1");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("select"), "\"select\"");
    }
}
