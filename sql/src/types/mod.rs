//! SQL types and values with PostgreSQL's semantics.
//!
//! - [`DataType`]: the column and expression types of our dialect.
//! - [`Value`]: a runtime value. A value does not carry its SQL type; the
//!   binder gives every expression a static type and inserts casts, so an
//!   operator always sees operands of the representation it expects.
//! - [`cast`]: conversions between types (explicit `CAST`, assignment to a
//!   column, and the implicit coercions the binder inserts).
//! - [`text`]: PostgreSQL's text input and output forms.
//! - [`ops`]: arithmetic with PostgreSQL's overflow and scale rules.

pub mod cast;
pub mod datetime;
pub mod ops;
pub mod text;
pub mod value;

pub use value::Value;

use serde::{Deserialize, Serialize};

/// A SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// `BOOLEAN`.
    Bool,
    /// `SMALLINT` (16-bit).
    Int2,
    /// `INTEGER` (32-bit).
    Int4,
    /// `BIGINT` (64-bit).
    Int8,
    /// `NUMERIC(p, s)` / `DECIMAL`; `None` is unconstrained `NUMERIC`.
    Numeric(Option<(u32, u32)>),
    /// `REAL` (32-bit float).
    Float4,
    /// `DOUBLE PRECISION` (64-bit float).
    Float8,
    /// `TEXT`.
    Text,
    /// `VARCHAR(n)`; `None` has no limit.
    Varchar(Option<u32>),
    /// `CHAR(n)`: blank-padded. Stored without trailing blanks, padded on
    /// output, compared ignoring trailing blanks.
    Char(u32),
    /// `TIMESTAMP` (without time zone), microsecond precision.
    Timestamp,
    /// The type of a string literal or `NULL` before context decides it.
    Unknown,
    /// `DATE`: held as the timestamp of its midnight.
    Date,
    /// `TIMESTAMPTZ` (with time zone): an instant, held in UTC.
    TimestampTz,
    /// `INTERVAL`: months, days and microseconds.
    Interval,
}

impl DataType {
    /// The name PostgreSQL uses in messages.
    pub fn pg_name(&self) -> &'static str {
        match self {
            DataType::Bool => "boolean",
            DataType::Int2 => "smallint",
            DataType::Int4 => "integer",
            DataType::Int8 => "bigint",
            DataType::Numeric(_) => "numeric",
            DataType::Float4 => "real",
            DataType::Float8 => "double precision",
            DataType::Text => "text",
            DataType::Varchar(_) => "character varying",
            DataType::Char(_) => "character",
            DataType::Timestamp => "timestamp without time zone",
            DataType::Unknown => "unknown",
            DataType::Date => "date",
            DataType::TimestampTz => "timestamp with time zone",
            DataType::Interval => "interval",
        }
    }

    /// The type as written in DDL, with its modifiers (`numeric(10,2)`).
    pub fn sql_name(&self) -> String {
        match self {
            DataType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            DataType::Varchar(Some(n)) => format!("character varying({n})"),
            DataType::Char(n) => format!("character({n})"),
            other => other.pg_name().to_string(),
        }
    }

    /// SMALLINT, INTEGER or BIGINT.
    pub fn is_integer(&self) -> bool {
        matches!(self, DataType::Int2 | DataType::Int4 | DataType::Int8)
    }

    /// REAL or DOUBLE PRECISION.
    pub fn is_float(&self) -> bool {
        matches!(self, DataType::Float4 | DataType::Float8)
    }

    /// Any numeric type.
    pub fn is_numeric(&self) -> bool {
        self.is_integer() || self.is_float() || matches!(self, DataType::Numeric(_))
    }

    /// TEXT, VARCHAR or CHAR.
    pub fn is_string(&self) -> bool {
        matches!(
            self,
            DataType::Text | DataType::Varchar(_) | DataType::Char(_)
        )
    }

    /// DATE, TIMESTAMP or TIMESTAMPTZ: values held as microseconds since
    /// 1970-01-01.
    pub fn is_datetime(&self) -> bool {
        matches!(
            self,
            DataType::Date | DataType::Timestamp | DataType::TimestampTz
        )
    }

    /// The same type without length/precision modifiers: the type of an
    /// expression computed from a column of this type.
    pub fn without_modifiers(&self) -> DataType {
        match self {
            DataType::Numeric(_) => DataType::Numeric(None),
            DataType::Varchar(_) => DataType::Varchar(None),
            other => *other,
        }
    }

    /// The precedence of numeric types for implicit widening.
    fn numeric_rank(&self) -> u8 {
        match self {
            DataType::Int2 => 1,
            DataType::Int4 => 2,
            DataType::Int8 => 3,
            DataType::Numeric(_) => 4,
            DataType::Float4 => 5,
            DataType::Float8 => 6,
            _ => 0,
        }
    }

    /// The type two numeric operands are both converted to before an
    /// arithmetic operator or a comparison, following PostgreSQL's operator
    /// resolution: integers widen to the larger integer, integer with numeric
    /// is numeric, and anything with a float is double precision except
    /// real with real.
    pub fn numeric_common(a: DataType, b: DataType) -> DataType {
        use DataType::*;
        match (a, b) {
            (Float4, Float4) => Float4,
            (x, y) if x.is_float() || y.is_float() => Float8,
            (Numeric(_), _) | (_, Numeric(_)) => Numeric(None),
            (x, y) => {
                if x.numeric_rank() >= y.numeric_rank() {
                    x
                } else {
                    y
                }
            }
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sql_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_promotion_follows_postgres() {
        use DataType::*;
        assert_eq!(DataType::numeric_common(Int2, Int2), Int2);
        assert_eq!(DataType::numeric_common(Int2, Int4), Int4);
        assert_eq!(DataType::numeric_common(Int8, Int4), Int8);
        assert_eq!(
            DataType::numeric_common(Int4, Numeric(Some((5, 2)))),
            Numeric(None)
        );
        assert_eq!(DataType::numeric_common(Int4, Float4), Float8);
        assert_eq!(DataType::numeric_common(Float4, Float4), Float4);
        assert_eq!(DataType::numeric_common(Numeric(None), Float4), Float8);
    }
}
