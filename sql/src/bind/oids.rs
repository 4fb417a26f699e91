//! `regclass` and `regtype`: which casts and calls yield an OID that
//! PostgreSQL would print as a name.

use sqlparser::ast;

use super::expr::{function_name, object_name};

/// True for an expression whose value is a regclass or regtype OID that
/// PostgreSQL would print as a name: `x::regclass`, `to_regtype(x)`, ….
pub(super) fn names_an_oid(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Cast { data_type: t, .. } => is_regclass(t) || is_named_type(t, "regtype"),
        ast::Expr::Function(f) => {
            matches!(function_name(f).as_str(), "to_regclass" | "to_regtype")
        }
        ast::Expr::Nested(inner) => names_an_oid(inner),
        _ => false,
    }
}

/// True for `regclass` (also `pg_catalog.regclass`).
pub(super) fn is_regclass(t: &ast::DataType) -> bool {
    matches!(t, ast::DataType::Regclass) || is_named_type(t, "regclass")
}

/// True for the type called `name` (or `pg_catalog.name`) without
/// modifiers.
pub(super) fn is_named_type(t: &ast::DataType, name: &str) -> bool {
    match t {
        ast::DataType::Custom(n, mods) => {
            mods.is_empty() && object_name(n).is_ok_and(|n| n == name)
        }
        _ => false,
    }
}
