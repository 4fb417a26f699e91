//! Resolving scalar function calls: which overload, argument conversions
//! and result type, following PostgreSQL (e.g. `round(int)` is the double
//! precision overload, `round(numeric, int)` the numeric one).

use super::*;
use crate::expr::Func;
use crate::types::Value;

fn is_text(t: DataType) -> bool {
    t.is_string() || t == DataType::Unknown
}

fn is_int(t: DataType) -> bool {
    t.is_integer() || t == DataType::Unknown
}

impl Binder<'_> {
    /// `current_user`, `current_database()`, `current_schema()` and their
    /// aliases: constants of the session.
    fn session_function(&mut self, name: &str, args: &[Typed]) -> Option<Typed> {
        if !args.is_empty() {
            return None;
        }
        let text = match name {
            "current_user" | "session_user" | "user" | "current_role" => self.identity.user.clone(),
            "current_database" | "current_catalog" => self.identity.database.clone(),
            "current_schema" => "public".into(),
            _ => return None,
        };
        Some((Expr::Const(Value::text(text)), DataType::Text))
    }

    /// The system catalog's functions whose answer does not depend on the
    /// object asked about here: one schema, one all-powerful user, no
    /// comments, no on-disk sizes. `None`: not one of them.
    fn catalog_function(&mut self, name: &str, args: &mut Vec<Typed>) -> Result<Option<Typed>> {
        use DataType as T;
        let unless_null = |args: &mut Vec<Typed>, value: Value, ty: DataType| -> Option<Typed> {
            let first = args.swap_remove(0).0;
            Some((
                Expr::Func(Func::UnlessNull, vec![first, Expr::Const(value)], ty),
                ty,
            ))
        };
        let n = args.len();
        Ok(match name {
            "pg_table_is_visible"
            | "pg_type_is_visible"
            | "pg_function_is_visible"
            | "pg_operator_is_visible"
            | "pg_collation_is_visible"
            | "pg_conversion_is_visible"
            | "pg_opclass_is_visible"
            | "pg_ts_config_is_visible"
            | "pg_statistics_obj_is_visible"
                if n == 1 =>
            {
                unless_null(args, Value::Bool(true), T::Bool)
            }
            "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "has_column_privilege"
            | "has_sequence_privilege"
            | "has_any_column_privilege"
                if (2..=4).contains(&n) =>
            {
                unless_null(args, Value::Bool(true), T::Bool)
            }
            "pg_get_userbyid" if n == 1 => {
                let user = Value::text(self.identity.user.as_str());
                let oid = args.swap_remove(0);
                let oid = self.coerce_text_like(oid, T::Int8)?;
                Some((
                    Expr::Func(Func::UserById, vec![oid, Expr::Const(user)], T::Text),
                    T::Text,
                ))
            }
            "pg_encoding_to_char" if n == 1 => unless_null(args, Value::text("UTF8"), T::Text),
            "pg_table_size" | "pg_relation_size" | "pg_total_relation_size" | "pg_indexes_size"
                if (1..=2).contains(&n) =>
            {
                unless_null(args, Value::Int(0), T::Int8)
            }
            "obj_description" | "col_description" | "shobj_description" if (1..=2).contains(&n) => {
                Some((Expr::Const(Value::Null), T::Text))
            }
            "pg_backend_pid" if n == 0 => Some((
                Expr::Const(Value::Int(i64::from(std::process::id()))),
                T::Int4,
            )),
            "pg_is_in_recovery" if n == 0 => Some((Expr::Const(Value::Bool(false)), T::Bool)),
            // No advisory locks can be held yet (there is no
            // pg_advisory_lock), so releasing them all has nothing to do;
            // `void` prints as the empty string. Connection pools (asyncpg)
            // call it on every release.
            "pg_advisory_unlock_all" if n == 0 => Some((Expr::Const(Value::text("")), T::Text)),
            // No extended statistics, publications or partitions here.
            "pg_get_statisticsobjdef_columns" | "pg_get_partkeydef" if n == 1 => {
                Some((Expr::Const(Value::Null), T::Text))
            }
            "pg_get_function_result"
            | "pg_get_function_arguments"
            | "pg_get_function_identity_arguments"
                if n == 1 =>
            {
                Some((Expr::Const(Value::Null), T::Text))
            }
            "pg_tablespace_location" if n == 1 => unless_null(args, Value::text(""), T::Text),
            "pg_get_triggerdef" | "pg_get_ruledef" if (1..=2).contains(&n) => {
                Some((Expr::Const(Value::Null), T::Text))
            }
            // A table that is not partitioned is its own only ancestor.
            "pg_partition_ancestors" | "pg_partition_root" if n == 1 => {
                let (e, ty) = args.swap_remove(0);
                Some(if ty.is_integer() {
                    self.explicit_cast((e, ty), T::Int8)?
                } else {
                    let name = self.text_operand((e, ty))?;
                    (Expr::Func(Func::Regclass, vec![name], T::Int8), T::Int8)
                })
            }
            "pg_relation_is_publishable" if n == 1 => {
                unless_null(args, Value::Bool(false), T::Bool)
            }
            // Expressions are stored as their SQL text: that is the answer.
            "pg_get_expr" if (2..=3).contains(&n) => {
                let first = args.swap_remove(0);
                Some((self.text_operand(first)?, T::Text))
            }
            _ => None,
        })
    }

    /// Binds `name(args)` for a non-aggregate function.
    pub(super) fn scalar_function(&mut self, name: &str, mut args: Vec<Typed>) -> Result<Typed> {
        if let Some(done) = self.datetime_function(name, &mut args)? {
            return Ok(done);
        }
        if let Some(done) = self.session_function(name, &args) {
            return Ok(done);
        }
        if let Some(done) = self.catalog_function(name, &mut args)? {
            return Ok(done);
        }
        if matches!(name, "nextval" | "currval" | "setval")
            && let Some((Expr::Func(Func::Regclass, inner, _), _)) = args.first_mut()
            && inner.len() == 1
        {
            // `nextval('s'::regclass)`: the sequence by its name.
            let name = inner.remove(0);
            args[0] = (name, DataType::Text);
        }
        let types: Vec<DataType> = args.iter().map(|a| a.1).collect();
        let no_such = || {
            let names: Vec<&str> = types.iter().map(|t| t.pg_name()).collect();
            Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name}({}) does not exist", names.join(", ")),
            )
        };
        use DataType as T;
        // (function, argument types to convert to, result type)
        let (func, arg_types, ty): (Func, Vec<DataType>, DataType) = match (name, types.as_slice())
        {
            ("coalesce", ts) if !ts.is_empty() => {
                let ty = common_type(ts, "COALESCE")?;
                let mut out = Vec::new();
                for a in args {
                    out.push(self.coerce_text_like(a, ty)?);
                }
                return Ok((Expr::Coalesce(out), query::output_type(ty)));
            }
            ("nullif", [_, _]) => {
                let mut it = args.into_iter();
                let (a, b) = (it.next().unwrap(), it.next().unwrap());
                let ty = self.comparison_type(a.1, b.1, "=")?;
                let cmp_ty = if let T::Char(_) = ty { T::Text } else { ty };
                let result_ty = query::output_type(a.1);
                let left = self.coerce_text_like(a.clone(), cmp_ty)?;
                let right = self.coerce_text_like(b, cmp_ty)?;
                let value = self.coerce_text_like(a, result_ty)?;
                let equal = Expr::Cmp(CmpOp::Eq, Box::new(left), Box::new(right));
                return Ok((
                    Expr::Case {
                        whens: vec![(equal, Expr::Const(Value::Null))],
                        otherwise: Some(Box::new(value)),
                    },
                    result_ty,
                ));
            }
            ("abs", [t]) if t.is_numeric() || *t == T::Unknown => {
                let t = if *t == T::Unknown {
                    T::Float8
                } else {
                    t.without_modifiers()
                };
                (Func::Abs, vec![t], t)
            }
            ("round" | "ceil" | "ceiling" | "floor", [t]) if t.is_numeric() || *t == T::Unknown => {
                let t = if matches!(t, T::Numeric(_)) {
                    T::Numeric(None)
                } else {
                    T::Float8
                };
                let f = match name {
                    "round" => Func::Round,
                    "floor" => Func::Floor,
                    _ => Func::Ceil,
                };
                (f, vec![t], t)
            }
            ("round", [t, n])
                if (t.is_integer() || matches!(t, T::Numeric(_)) || *t == T::Unknown)
                    && is_int(*n) =>
            {
                (
                    Func::Round,
                    vec![T::Numeric(None), T::Int4],
                    T::Numeric(None),
                )
            }
            ("power" | "pow", [a, b])
                if (a.is_numeric() || *a == T::Unknown) && (b.is_numeric() || *b == T::Unknown) =>
            {
                // Numeric casts to double precision implicitly, not back.
                let t = if a.is_float() || b.is_float() {
                    T::Float8
                } else if matches!(a, T::Numeric(_)) || matches!(b, T::Numeric(_)) {
                    T::Numeric(None)
                } else {
                    T::Float8
                };
                (Func::Power, vec![t, t], t)
            }
            ("sqrt", [t]) if t.is_integer() || t.is_float() || *t == T::Unknown => {
                (Func::Sqrt, vec![T::Float8], T::Float8)
            }
            ("mod", [a, b])
                if (a.is_numeric() || *a == T::Unknown) && (b.is_numeric() || *b == T::Unknown) =>
            {
                let t = match (a, b) {
                    (T::Unknown, T::Unknown) => T::Int4,
                    (T::Unknown, x) | (x, T::Unknown) => x.without_modifiers(),
                    (x, y) => T::numeric_common(*x, *y).without_modifiers(),
                };
                if t.is_float() {
                    return Err(no_such());
                }
                (Func::Mod, vec![t, t], t)
            }
            ("length" | "char_length" | "character_length", [t]) if is_text(*t) => {
                (Func::Length, vec![T::Text], T::Int4)
            }
            ("lower", [t]) if is_text(*t) => (Func::Lower, vec![T::Text], T::Text),
            ("upper", [t]) if is_text(*t) => (Func::Upper, vec![T::Text], T::Text),
            ("substr" | "substring", [s, f]) if is_text(*s) && is_int(*f) => {
                (Func::Substr, vec![T::Text, T::Int8], T::Text)
            }
            ("substr" | "substring", [s, f, n]) if is_text(*s) && is_int(*f) && is_int(*n) => {
                (Func::Substr, vec![T::Text, T::Int8, T::Int8], T::Text)
            }
            ("btrim" | "trim" | "ltrim" | "rtrim", ts)
                if (1..=2).contains(&ts.len()) && ts.iter().all(|t| is_text(*t)) =>
            {
                let f = match name {
                    "ltrim" => Func::Ltrim,
                    "rtrim" => Func::Rtrim,
                    _ => Func::Btrim,
                };
                (f, vec![T::Text; ts.len()], T::Text)
            }
            ("concat", ts) if !ts.is_empty() => {
                let mut out = Vec::new();
                for a in args {
                    out.push(self.text_operand(a)?);
                }
                return Ok((Expr::Func(Func::Concat, out, T::Text), T::Text));
            }
            ("replace", [a, b, c]) if is_text(*a) && is_text(*b) && is_text(*c) => {
                (Func::Replace, vec![T::Text; 3], T::Text)
            }
            ("strpos", [a, b]) if is_text(*a) && is_text(*b) => {
                (Func::Strpos, vec![T::Text; 2], T::Int4)
            }
            ("version", []) => (Func::Version, vec![], T::Text),
            ("greatest" | "least", ts) if !ts.is_empty() => {
                let ty = common_type(
                    ts,
                    if name == "greatest" {
                        "GREATEST"
                    } else {
                        "LEAST"
                    },
                )?;
                let ty = if ty == T::Unknown { T::Text } else { ty };
                let f = if name == "greatest" {
                    Func::Greatest
                } else {
                    Func::Least
                };
                let cmp_ty = query::output_type(ty);
                let mut out = Vec::new();
                for a in args {
                    out.push(self.coerce_text_like(a, cmp_ty)?);
                }
                return Ok((Expr::Func(f, out, cmp_ty), cmp_ty));
            }
            ("repeat", [s, n]) if is_text(*s) && is_int(*n) => {
                (Func::Repeat, vec![T::Text, T::Int8], T::Text)
            }
            ("lpad" | "rpad", [s, n]) if is_text(*s) && is_int(*n) => {
                let f = if name == "lpad" {
                    Func::Lpad
                } else {
                    Func::Rpad
                };
                (f, vec![T::Text, T::Int8], T::Text)
            }
            ("lpad" | "rpad", [s, n, p]) if is_text(*s) && is_int(*n) && is_text(*p) => {
                let f = if name == "lpad" {
                    Func::Lpad
                } else {
                    Func::Rpad
                };
                (f, vec![T::Text, T::Int8, T::Text], T::Text)
            }
            ("split_part", [s, d, n]) if is_text(*s) && is_text(*d) && is_int(*n) => {
                (Func::SplitPart, vec![T::Text, T::Text, T::Int8], T::Text)
            }
            ("left" | "right", [s, n]) if is_text(*s) && is_int(*n) => {
                let f = if name == "left" {
                    Func::Left
                } else {
                    Func::Right
                };
                (f, vec![T::Text, T::Int8], T::Text)
            }
            ("reverse", [s]) if is_text(*s) => (Func::Reverse, vec![T::Text], T::Text),
            ("initcap", [s]) if is_text(*s) => (Func::Initcap, vec![T::Text], T::Text),
            ("chr", [n]) if is_int(*n) => (Func::Chr, vec![T::Int8], T::Text),
            ("ascii", [s]) if is_text(*s) => (Func::Ascii, vec![T::Text], T::Int4),
            ("starts_with", [a, b]) if is_text(*a) && is_text(*b) => {
                (Func::StartsWith, vec![T::Text, T::Text], T::Bool)
            }
            ("translate", [a, b, c]) if is_text(*a) && is_text(*b) && is_text(*c) => {
                (Func::Translate, vec![T::Text; 3], T::Text)
            }
            ("regexp_replace", ts)
                if (3..=4).contains(&ts.len()) && ts.iter().all(|t| is_text(*t)) =>
            {
                (Func::RegexpReplace, vec![T::Text; ts.len()], T::Text)
            }
            ("nextval" | "currval", [t]) if is_text(*t) => {
                let f = if name == "nextval" {
                    Func::NextVal
                } else {
                    Func::CurrVal
                };
                (f, vec![T::Text], T::Int8)
            }
            ("setval", [t, v]) if is_text(*t) && is_int(*v) => {
                (Func::SetVal, vec![T::Text, T::Int8], T::Int8)
            }
            ("setval", [t, v, b])
                if is_text(*t) && is_int(*v) && matches!(b, T::Bool | T::Unknown) =>
            {
                (Func::SetVal, vec![T::Text, T::Int8, T::Bool], T::Int8)
            }
            ("lastval", []) => (Func::LastVal, vec![], T::Int8),
            ("pg_get_indexdef", ts) if (1..=3).contains(&ts.len()) => {
                let mut want = vec![T::Int8, T::Int4, T::Bool];
                want.truncate(ts.len());
                (Func::PgGetIndexdef, want, T::Text)
            }
            ("pg_get_constraintdef" | "pg_get_viewdef", ts) if (1..=2).contains(&ts.len()) => {
                let mut want = vec![T::Int8, T::Bool];
                want.truncate(ts.len());
                let f = if name == "pg_get_viewdef" {
                    Func::PgGetViewdef
                } else {
                    Func::PgGetConstraintdef
                };
                (f, want, T::Text)
            }
            ("to_regclass", [t]) if is_text(*t) => (Func::ToRegclass, vec![T::Text], T::Int8),
            ("to_regtype", [t]) if is_text(*t) => (Func::ToRegtype, vec![T::Text], T::Int8),
            ("pg_get_serial_sequence", [a, b]) if is_text(*a) && is_text(*b) => {
                (Func::PgGetSerialSequence, vec![T::Text, T::Text], T::Text)
            }
            ("json_build_object", ts) if ts.len() % 2 == 0 => {
                let mut out = Vec::new();
                for (i, a) in args.into_iter().enumerate() {
                    // Keys are text; values keep their type (an untyped
                    // literal is text).
                    out.push(if i % 2 == 0 || a.1 == T::Unknown {
                        self.text_operand(a)?
                    } else {
                        a.0
                    });
                }
                return Ok((Expr::Func(Func::JsonBuildObject, out, T::Text), T::Text));
            }
            ("format_type", [a, b]) if is_int(*a) && is_int(*b) => {
                (Func::FormatType, vec![T::Int8, T::Int8], T::Text)
            }
            ("quote_ident", [t]) if is_text(*t) => (Func::QuoteIdent, vec![T::Text], T::Text),
            ("array_to_string", [a, b]) if is_text(*a) && is_text(*b) => {
                (Func::ArrayToString, vec![T::Text, T::Text], T::Text)
            }
            ("pg_size_pretty", [t]) if is_int(*t) => (Func::SizePretty, vec![T::Int8], T::Text),
            ("array_upper" | "array_length", [a, d]) if is_text(*a) && is_int(*d) => {
                (Func::ArrayUpper, vec![T::Text, T::Int8], T::Int4)
            }
            ("cardinality", [a]) if is_text(*a) => (Func::ArrayUpper, vec![T::Text], T::Int4),
            _ => return Err(no_such()),
        };
        let mut out = Vec::new();
        for (a, t) in args.into_iter().zip(arg_types) {
            out.push(self.coerce_text_like(a, t)?);
        }
        Ok((Expr::Func(func, out, ty), ty))
    }
}
