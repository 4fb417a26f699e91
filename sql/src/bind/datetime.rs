//! Binding the date and time SQL: `INTERVAL '…'` literals, `EXTRACT`,
//! `AT TIME ZONE`, the clock functions (`now()`, `current_date`, …) and the
//! operators between dates, timestamps, intervals and numbers, with
//! PostgreSQL's result types.

use super::expr::undefined_operator;
use super::*;
use crate::expr::Func;
use crate::types::Value;
use crate::types::datetime::parse_interval;
use crate::types::ops::ArithOp;

/// The rank of a date/time type when two meet: the wider one wins, as
/// PostgreSQL's implicit casts go (date → timestamp → timestamptz).
fn rank(t: DataType) -> u8 {
    match t {
        DataType::Date => 1,
        DataType::Timestamp => 2,
        DataType::TimestampTz => 3,
        _ => 0,
    }
}

/// The common type of two date/time types.
pub(super) fn datetime_common(a: DataType, b: DataType) -> DataType {
    if rank(a) >= rank(b) { a } else { b }
}

/// True for zone names that mean UTC (the only session time zone).
pub fn is_utc(zone: &str) -> bool {
    matches!(
        zone.trim().to_ascii_lowercase().as_str(),
        "utc"
            | "gmt"
            | "z"
            | "zulu"
            | "etc/utc"
            | "etc/gmt"
            | "universal"
            | "etc/universal"
            | "+00"
            | "+00:00"
            | "-00"
            | "00:00"
            | "0"
            | "utc0"
            | "gmt0"
    )
}

/// The unit name of an `EXTRACT` / `INTERVAL … unit` field.
fn field_name(f: &ast::DateTimeField) -> String {
    match f {
        ast::DateTimeField::Custom(i) => ident(i),
        other => other.to_string().to_ascii_lowercase(),
    }
}

impl Binder<'_> {
    /// `INTERVAL 'text' [unit]`.
    pub(super) fn interval_literal(&mut self, iv: &ast::Interval, scope: &Scope) -> Result<Typed> {
        let text = match iv.value.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                ast::Value::Number(n, _) => n.clone(),
                other => bail!(Syntax, "unexpected interval literal {other}"),
            },
            other => {
                // `INTERVAL $1` and the like: a cast of the expression.
                let inner = self.expr(other, scope)?;
                return self.explicit_cast(inner, DataType::Interval);
            }
        };
        // `INTERVAL '3' DAY`: a bare number takes the unit written after it.
        let text = match &iv.leading_field {
            Some(f) if text.trim().parse::<f64>().is_ok() => format!("{text} {}", field_name(f)),
            _ => text,
        };
        Ok((
            Expr::Const(Value::Interval(parse_interval(&text)?)),
            DataType::Interval,
        ))
    }

    /// `EXTRACT(field FROM value)`: numeric.
    pub(super) fn extract(
        &mut self,
        field: &ast::DateTimeField,
        value: &ast::Expr,
        scope: &Scope,
    ) -> Result<Typed> {
        let field = Expr::Const(Value::text(field_name(field)));
        let value = self.expr(value, scope)?;
        self.extract_call(Func::Extract, field, value, DataType::Numeric(None))
    }

    fn extract_call(
        &mut self,
        func: Func,
        field: Expr,
        (e, ty): Typed,
        result: DataType,
    ) -> Result<Typed> {
        let (e, is_date) = match ty {
            DataType::Date => (e, true),
            DataType::Timestamp | DataType::TimestampTz | DataType::Interval => (e, false),
            // An unknown literal is read as a timestamp, as PostgreSQL does
            // for `extract(year from '2024-01-01')`... which it refuses; so
            // do we, with its message.
            other => bail!(
                UndefinedFunction,
                "function {}(unknown, {}) does not exist",
                if func == Func::Extract {
                    "extract"
                } else {
                    "date_part"
                },
                other.pg_name()
            ),
        };
        Ok((
            Expr::Func(
                func,
                vec![field, e, Expr::Const(Value::Bool(is_date))],
                result,
            ),
            result,
        ))
    }

    /// `value AT TIME ZONE zone`, for UTC (the only time zone here).
    pub(super) fn at_time_zone(
        &mut self,
        value: &ast::Expr,
        zone: &ast::Expr,
        scope: &Scope,
    ) -> Result<Typed> {
        let (z, zt) = self.expr(zone, scope)?;
        match (&z, zt) {
            (Expr::Const(Value::Text(name)), DataType::Unknown | DataType::Text)
                if is_utc(name) => {}
            (Expr::Const(Value::Text(name)), _) => bail!(
                FeatureNotSupported,
                "time zone \"{name}\" is not supported: sessions run in UTC"
            ),
            _ => bail!(
                FeatureNotSupported,
                "AT TIME ZONE takes a constant zone name here (UTC)"
            ),
        }
        let (e, ty) = self.expr(value, scope)?;
        // timestamp AT TIME ZONE 'UTC' is that instant (timestamptz);
        // timestamptz AT TIME ZONE 'UTC' is the UTC wall time (timestamp).
        let to = match ty {
            DataType::Timestamp | DataType::Date => DataType::TimestampTz,
            DataType::TimestampTz | DataType::Unknown => DataType::Timestamp,
            other => {
                return Err(undefined_operator_fn("timezone", other));
            }
        };
        let from = if ty == DataType::Unknown {
            DataType::TimestampTz
        } else {
            ty
        };
        let e = self.coerce((e, ty), from)?;
        Ok((
            Expr::Cast {
                expr: Box::new(e),
                from,
                to,
                explicit: false,
            },
            to,
        ))
    }

    /// The date/time functions, or `None` for a name that is not one.
    pub(super) fn datetime_function(
        &mut self,
        name: &str,
        args: &mut Vec<Typed>,
    ) -> Result<Option<Typed>> {
        use DataType as T;
        let types: Vec<DataType> = args.iter().map(|a| a.1).collect();
        let clock = |func, ty| Ok(Some((Expr::Func(func, Vec::new(), ty), ty)));
        match (name, types.as_slice()) {
            ("now" | "transaction_timestamp" | "current_timestamp", []) => {
                clock(Func::Now, T::TimestampTz)
            }
            ("localtimestamp", []) => clock(Func::Now, T::Timestamp),
            ("current_date", []) => clock(Func::Now, T::Date),
            ("clock_timestamp" | "statement_timestamp", []) => {
                clock(Func::ClockTimestamp, T::TimestampTz)
            }
            ("date_trunc", [T::Text | T::Unknown, t]) => {
                let (unit, value) = two(args);
                let unit = self.coerce(unit, T::Text)?;
                let ty = match t {
                    T::Timestamp => T::Timestamp,
                    T::TimestampTz | T::Date | T::Unknown => T::TimestampTz,
                    _ => return Ok(None),
                };
                let value = self.coerce(value, ty)?;
                Ok(Some((
                    Expr::Func(Func::DateTrunc, vec![unit, value], ty),
                    ty,
                )))
            }
            ("date_part", [T::Text | T::Unknown, _]) => {
                let (unit, value) = two(args);
                let unit = self.coerce(unit, T::Text)?;
                let value = if value.1 == T::Unknown {
                    (self.coerce(value, T::TimestampTz)?, T::TimestampTz)
                } else {
                    value
                };
                self.extract_call(Func::DatePart, unit, value, T::Float8)
                    .map(Some)
            }
            ("age", [a, b]) if is_timestampish(*a) && is_timestampish(*b) => {
                let ty = datetime_common(known(*a), known(*b));
                let ty = if ty == T::Date { T::Timestamp } else { ty };
                let (x, y) = two(args);
                let x = self.coerce(x, ty)?;
                let y = self.coerce(y, ty)?;
                Ok(Some((
                    Expr::Func(Func::Age, vec![x, y], T::Interval),
                    T::Interval,
                )))
            }
            ("age", [a]) if is_timestampish(*a) => {
                // age(t) = age(current_date, t), both as timestamps.
                let ty = if known(*a) == T::TimestampTz {
                    T::TimestampTz
                } else {
                    T::Timestamp
                };
                let t = args.pop().expect("one argument");
                let t = self.coerce(t, ty)?;
                let today = Expr::Cast {
                    expr: Box::new(Expr::Func(Func::Now, Vec::new(), T::Date)),
                    from: T::Date,
                    to: ty,
                    explicit: false,
                };
                Ok(Some((
                    Expr::Func(Func::Age, vec![today, t], T::Interval),
                    T::Interval,
                )))
            }
            ("make_date", [a, b, c]) if [a, b, c].iter().all(|t| is_intish(**t)) => {
                let mut out = Vec::new();
                for a in args.drain(..) {
                    out.push(self.coerce(a, T::Int4)?);
                }
                Ok(Some((Expr::Func(Func::MakeDate, out, T::Date), T::Date)))
            }
            ("to_timestamp", [t]) if t.is_numeric() || *t == T::Unknown => {
                let a = args.pop().expect("one argument");
                let a = self.coerce(a, T::Float8)?;
                Ok(Some((
                    Expr::Func(Func::ToTimestamp, vec![a], T::TimestampTz),
                    T::TimestampTz,
                )))
            }
            _ => Ok(None),
        }
    }

    /// `l op r` when either side is a date, timestamp or interval; `None`
    /// when neither is.
    pub(super) fn datetime_arithmetic(
        &mut self,
        op: ArithOp,
        a: Typed,
        b: Typed,
    ) -> Result<Option<Typed>> {
        use DataType as T;
        let temporal = |t: T| t.is_datetime() || t == T::Interval;
        if !temporal(a.1) && !temporal(b.1) {
            return Ok(None);
        }
        let fail = || undefined_operator(a.1, op.symbol(), b.1);
        // An unknown literal opposite a date/time value: the same type for
        // `-` (timestamp - '2024-01-01'), an interval for `+`, as
        // PostgreSQL resolves them.
        let resolve = |unknown_side: T, other: T| -> T {
            if unknown_side != T::Unknown {
                return unknown_side;
            }
            match (op, other) {
                (_, T::Interval) => T::Interval,
                (ArithOp::Sub, t) if t.is_datetime() => t,
                (ArithOp::Add | ArithOp::Sub, _) => T::Interval,
                _ => T::Float8,
            }
        };
        if op == ArithOp::Add && matches!((a.1, b.1), (T::Date, T::Unknown) | (T::Unknown, T::Date))
        {
            bail!(
                AmbiguousFunction,
                "operator is not unique: {} + {}",
                a.1.pg_name(),
                b.1.pg_name()
            );
        }
        let (ta, tb) = (resolve(a.1, b.1), resolve(b.1, a.1));
        let call = |this: &mut Self, func, x: Typed, tx: T, y: Typed, ty_: T, out: T| {
            let x = this.coerce(x, tx)?;
            let y = this.coerce(y, ty_)?;
            Ok(Some((Expr::Func(func, vec![x, y], out), out)))
        };
        match (op, ta, tb) {
            (ArithOp::Add, T::Date, t) if t.is_integer() => {
                call(self, Func::AddDays, a, T::Date, b, T::Int8, T::Date)
            }
            (ArithOp::Add, t, T::Date) if t.is_integer() => {
                call(self, Func::AddDays, b, T::Date, a, T::Int8, T::Date)
            }
            (ArithOp::Sub, T::Date, t) if t.is_integer() => {
                call(self, Func::SubDays, a, T::Date, b, T::Int8, T::Date)
            }
            (ArithOp::Sub, T::Date, T::Date) => {
                call(self, Func::DateDiff, a, T::Date, b, T::Date, T::Int4)
            }
            (ArithOp::Add, d, T::Interval) if d.is_datetime() => {
                let out = if d == T::Date { T::Timestamp } else { d };
                call(self, Func::AddInterval, a, out, b, T::Interval, out)
            }
            (ArithOp::Add, T::Interval, d) if d.is_datetime() => {
                let out = if d == T::Date { T::Timestamp } else { d };
                call(self, Func::AddInterval, b, out, a, T::Interval, out)
            }
            (ArithOp::Sub, d, T::Interval) if d.is_datetime() => {
                let out = if d == T::Date { T::Timestamp } else { d };
                call(self, Func::SubInterval, a, out, b, T::Interval, out)
            }
            (ArithOp::Sub, x, y) if x.is_datetime() && y.is_datetime() => {
                let common = datetime_common(x, y);
                let common = if common == T::Date {
                    T::Timestamp
                } else {
                    common
                };
                call(self, Func::TimestampDiff, a, common, b, common, T::Interval)
            }
            (ArithOp::Add, T::Interval, T::Interval) => call(
                self,
                Func::IntervalAdd,
                a,
                T::Interval,
                b,
                T::Interval,
                T::Interval,
            ),
            (ArithOp::Sub, T::Interval, T::Interval) => call(
                self,
                Func::IntervalSub,
                a,
                T::Interval,
                b,
                T::Interval,
                T::Interval,
            ),
            (ArithOp::Mul, T::Interval, n) if n.is_numeric() => call(
                self,
                Func::IntervalMul,
                a,
                T::Interval,
                b,
                T::Float8,
                T::Interval,
            ),
            (ArithOp::Mul, n, T::Interval) if n.is_numeric() => call(
                self,
                Func::IntervalMul,
                b,
                T::Interval,
                a,
                T::Float8,
                T::Interval,
            ),
            (ArithOp::Div, T::Interval, n) if n.is_numeric() => call(
                self,
                Func::IntervalDiv,
                a,
                T::Interval,
                b,
                T::Float8,
                T::Interval,
            ),
            _ => Err(fail()),
        }
    }

    /// `-interval`.
    pub(super) fn negate_interval(&mut self, e: Expr) -> Typed {
        (
            Expr::Func(Func::IntervalNeg, vec![e], DataType::Interval),
            DataType::Interval,
        )
    }
}

fn two(args: &mut Vec<Typed>) -> (Typed, Typed) {
    let b = args.pop().expect("two arguments");
    let a = args.pop().expect("two arguments");
    (a, b)
}

fn is_timestampish(t: DataType) -> bool {
    t.is_datetime() || t == DataType::Unknown
}

fn is_intish(t: DataType) -> bool {
    t.is_integer() || t == DataType::Unknown
}

/// An unknown literal among timestamps is read as a timestamp.
fn known(t: DataType) -> DataType {
    if t == DataType::Unknown {
        DataType::Timestamp
    } else {
        t
    }
}

fn undefined_operator_fn(name: &str, t: DataType) -> Error {
    Error::new(
        ErrorKind::UndefinedFunction,
        format!("function {name}(unknown, {}) does not exist", t.pg_name()),
    )
}
