//! Scalar functions, with PostgreSQL's argument rules (the binder resolves
//! overloads and converts arguments; here values already have the types the
//! chosen overload takes).

use kv::{Error, ErrorKind, Result};
use rust_decimal::{Decimal, RoundingStrategy};

use super::math::{numeric_power, power_check, size_pretty};
use super::textforms::{array_items, json_string};
use crate::types::text::{check_int_range, format_value, int_out_of_range};
use crate::types::{DataType, Value};

/// A scalar function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `abs(x)`
    Abs,
    /// `ceil(x)` / `ceiling(x)`
    Ceil,
    /// `floor(x)`
    Floor,
    /// `round(x [, digits])`: half away from zero on numeric, half to even
    /// on double precision.
    Round,
    /// `mod(a, b)`
    Mod,
    /// `length(s)` / `char_length(s)`
    Length,
    /// `lower(s)`
    Lower,
    /// `upper(s)`
    Upper,
    /// `substr(s, from [, count])` / `substring(s FROM from FOR count)`
    Substr,
    /// `btrim(s [, chars])` / `trim(s)`
    Btrim,
    /// `ltrim(s [, chars])`
    Ltrim,
    /// `rtrim(s [, chars])`
    Rtrim,
    /// `concat(a, ...)`: NULL arguments are skipped.
    Concat,
    /// `replace(s, from, to)`
    Replace,
    /// `strpos(s, sub)` / `position(sub IN s)`: 1-based, 0 when absent.
    Strpos,
    /// `version()`
    Version,
    /// `now()`, `current_timestamp`, `transaction_timestamp()`: the
    /// transaction's start, as TIMESTAMPTZ (or, as `localtimestamp`,
    /// TIMESTAMP; as `current_date`, DATE: the result type says which).
    Now,
    /// `clock_timestamp()`, `statement_timestamp()`: the wall clock now.
    ClockTimestamp,
    /// `date_trunc(unit, t)`
    DateTrunc,
    /// `extract(field FROM t)`: numeric; `(field, value, is_date)`.
    Extract,
    /// `date_part(field, t)`: double precision.
    DatePart,
    /// `age(a, b)`
    Age,
    /// `timestamp + interval` (also date + interval, as timestamp).
    AddInterval,
    /// `timestamp - interval`
    SubInterval,
    /// `timestamp - timestamp`: an interval.
    TimestampDiff,
    /// `date + integer`
    AddDays,
    /// `date - integer`
    SubDays,
    /// `date - date`: an integer.
    DateDiff,
    /// `interval + interval`
    IntervalAdd,
    /// `interval - interval`
    IntervalSub,
    /// `-interval`
    IntervalNeg,
    /// `interval * number`
    IntervalMul,
    /// `interval / number`
    IntervalDiv,
    /// `make_date(year, month, day)`
    MakeDate,
    /// `to_timestamp(seconds)`: TIMESTAMPTZ from Unix seconds.
    ToTimestamp,
    /// `greatest(a, ...)`: NULLs ignored.
    Greatest,
    /// `least(a, ...)`: NULLs ignored.
    Least,
    /// `repeat(s, n)`
    Repeat,
    /// `lpad(s, n [, fill])`
    Lpad,
    /// `rpad(s, n [, fill])`
    Rpad,
    /// `split_part(s, delimiter, n)`
    SplitPart,
    /// `left(s, n)`
    Left,
    /// `right(s, n)`
    Right,
    /// `reverse(s)`
    Reverse,
    /// `initcap(s)`
    Initcap,
    /// `chr(code)`
    Chr,
    /// `ascii(s)`
    Ascii,
    /// `starts_with(s, prefix)`
    StartsWith,
    /// `translate(s, from, to)`
    Translate,
    /// `s ~ pattern` (`~*`: the third argument is true).
    RegexMatch,
    /// `regexp_replace(s, pattern, replacement [, flags])`
    RegexpReplace,
    /// `nextval(sequence)`
    NextVal,
    /// `currval(sequence)`
    CurrVal,
    /// `setval(sequence, value [, is_called])`
    SetVal,
    /// `lastval()`
    LastVal,
    /// `pg_get_indexdef(index oid [, column, pretty])`
    PgGetIndexdef,
    /// `pg_get_constraintdef(constraint oid [, pretty])`
    PgGetConstraintdef,
    /// `pg_get_viewdef(view oid [, pretty])`
    PgGetViewdef,
    /// `to_regclass(name)`: the relation's OID, or NULL.
    ToRegclass,
    /// `name::regclass`: the relation's OID (42P01 when there is none).
    Regclass,
    /// `oid::regclass`: the relation's name (the number when there is
    /// none), as a regclass prints.
    RegclassName,
    /// `name::regtype`: the type's OID (42704 when there is none).
    Regtype,
    /// `to_regtype(name)`: the type's OID, or NULL.
    ToRegtype,
    /// `pg_get_serial_sequence(table, column)`
    PgGetSerialSequence,
    /// `pg_get_userbyid(oid, session user)`: `pg_database_owner` for its
    /// OID, else the session's user (the only role here).
    UserById,
    /// `json_build_object(k, v, …)`: JSON text (there is no json type yet).
    JsonBuildObject,
    /// `format_type(type oid, typmod)`
    FormatType,
    /// `quote_ident(name)`
    QuoteIdent,
    /// `array_to_string(array, separator)` over an array's text form (the
    /// system catalog's array columns).
    ArrayToString,
    /// `pg_size_pretty(bytes)`
    SizePretty,
    /// `power(a, b)` / `pow(a, b)`: float8, or numeric (exact for integral
    /// exponents, shown with 16 decimals as PostgreSQL does).
    Power,
    /// `sqrt(x)` (double precision).
    Sqrt,
    /// `(array text, x text)`: `x = ANY (array)` over an array's text form.
    ArrayContains,
    /// `array[i]` over an array's text form (1-based; NULL outside).
    ArrayElement,
    /// `array_upper(array, 1)`, `array_length(array, 1)`,
    /// `cardinality(array)` over a one-dimensional array's text form.
    ArrayUpper,
    /// `(x, c)`: NULL when `x` is, else `c` (`pg_table_is_visible`,
    /// `pg_get_userbyid`, `has_table_privilege`, … over one schema and
    /// one all-powerful user).
    UnlessNull,
}

impl Func {
    /// The SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Ceil => "ceil",
            Func::Floor => "floor",
            Func::Round => "round",
            Func::Mod => "mod",
            Func::Length => "length",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Substr => "substr",
            Func::Btrim => "btrim",
            Func::Ltrim => "ltrim",
            Func::Rtrim => "rtrim",
            Func::Concat => "concat",
            Func::Replace => "replace",
            Func::Strpos => "strpos",
            Func::Version => "version",
            Func::Now => "now",
            Func::ClockTimestamp => "clock_timestamp",
            Func::DateTrunc => "date_trunc",
            Func::Extract => "extract",
            Func::DatePart => "date_part",
            Func::Age => "age",
            Func::AddInterval => "timestamp_pl_interval",
            Func::SubInterval => "timestamp_mi_interval",
            Func::TimestampDiff => "timestamp_mi",
            Func::AddDays => "date_pli",
            Func::SubDays => "date_mii",
            Func::DateDiff => "date_mi",
            Func::IntervalAdd => "interval_pl",
            Func::IntervalSub => "interval_mi",
            Func::IntervalNeg => "interval_um",
            Func::IntervalMul => "interval_mul",
            Func::IntervalDiv => "interval_div",
            Func::MakeDate => "make_date",
            Func::ToTimestamp => "to_timestamp",
            Func::Greatest => "greatest",
            Func::Least => "least",
            Func::Repeat => "repeat",
            Func::Lpad => "lpad",
            Func::Rpad => "rpad",
            Func::SplitPart => "split_part",
            Func::Left => "left",
            Func::Right => "right",
            Func::Reverse => "reverse",
            Func::Initcap => "initcap",
            Func::Chr => "chr",
            Func::Ascii => "ascii",
            Func::StartsWith => "starts_with",
            Func::Translate => "translate",
            Func::RegexMatch => "regex_match",
            Func::RegexpReplace => "regexp_replace",
            Func::NextVal => "nextval",
            Func::CurrVal => "currval",
            Func::SetVal => "setval",
            Func::LastVal => "lastval",
            Func::PgGetIndexdef => "pg_get_indexdef",
            Func::PgGetConstraintdef => "pg_get_constraintdef",
            Func::PgGetViewdef => "pg_get_viewdef",
            Func::ToRegclass => "to_regclass",
            Func::Regclass => "regclass",
            Func::RegclassName => "regclass_name",
            Func::Regtype => "regtype",
            Func::ToRegtype => "to_regtype",
            Func::PgGetSerialSequence => "pg_get_serial_sequence",
            Func::JsonBuildObject => "json_build_object",
            Func::UserById => "pg_get_userbyid",
            Func::FormatType => "format_type",
            Func::QuoteIdent => "quote_ident",
            Func::ArrayToString => "array_to_string",
            Func::SizePretty => "pg_size_pretty",
            Func::Power => "power",
            Func::Sqrt => "sqrt",
            Func::ArrayContains => "array_contains",
            Func::ArrayElement => "array_element",
            Func::ArrayUpper => "array_upper",
            Func::UnlessNull => "unless_null",
        }
    }

    /// Whether a NULL argument makes the result NULL without calling.
    fn strict(&self) -> bool {
        !matches!(
            self,
            Func::Concat
                | Func::Version
                | Func::Now
                | Func::ClockTimestamp
                | Func::LastVal
                | Func::Greatest
                | Func::Least
                | Func::FormatType
                | Func::JsonBuildObject
        )
    }

    /// True for functions whose value changes between calls with the same
    /// arguments (the clock): never folded into a constant.
    pub fn is_volatile(&self) -> bool {
        matches!(
            self,
            Func::Now
                | Func::ClockTimestamp
                | Func::NextVal
                | Func::CurrVal
                | Func::SetVal
                | Func::LastVal
        ) || self.is_executor_call()
    }

    /// True for the functions the executor answers: the sequence
    /// functions (they need the database and the session) and the catalog
    /// ones (they read the catalog through the transaction).
    pub fn is_executor_call(&self) -> bool {
        matches!(
            self,
            Func::NextVal
                | Func::CurrVal
                | Func::SetVal
                | Func::LastVal
                | Func::PgGetIndexdef
                | Func::PgGetConstraintdef
                | Func::PgGetViewdef
                | Func::ToRegclass
                | Func::Regclass
                | Func::RegclassName
                | Func::PgGetSerialSequence
        )
    }
}

fn bad_args(f: Func, vals: &[Value]) -> Error {
    Error::internal(format!("bad arguments to {}: {vals:?}", f.name()))
}

fn trim_set(s: &str, chars: &str, left: bool, right: bool) -> String {
    let set: Vec<char> = chars.chars().collect();
    let mut out = s;
    if left {
        out = out.trim_start_matches(|c| set.contains(&c));
    }
    if right {
        out = out.trim_end_matches(|c| set.contains(&c));
    }
    out.to_string()
}

/// PostgreSQL's substr: characters from position `from` (1-based, may be
/// below 1) for `count` characters.
fn substr(s: &str, from: i64, count: Option<i64>) -> Result<String> {
    if count.is_some_and(|c| c < 0) {
        return Err(Error::new(
            ErrorKind::SubstringError,
            "negative substring length not allowed",
        ));
    }
    let start = from.max(1);
    let end = match count {
        Some(c) => from.saturating_add(c),
        None => i64::MAX,
    };
    if end <= start {
        return Ok(String::new());
    }
    Ok(s.chars()
        .skip((start - 1) as usize)
        .take(usize::try_from(end - start).unwrap_or(usize::MAX))
        .collect())
}

fn round_numeric(d: Decimal, digits: i64) -> Result<Decimal> {
    if digits >= 0 {
        let scale = digits.min(28) as u32;
        let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
        r.rescale(scale);
        return Ok(r);
    }
    // Negative digits round to tens, hundreds, ...
    let factor = Decimal::from_i128_with_scale(10i128.pow((-digits).min(28) as u32), 0);
    let q = (d / factor).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    q.checked_mul(factor).ok_or_else(|| {
        Error::new(
            ErrorKind::NumericOutOfRange,
            "value overflows numeric format",
        )
    })
}

/// A compiled regular expression for a pattern, cached per thread (a
/// statement usually applies one pattern to many rows).
fn regex(pattern: &str, case_insensitive: bool) -> Result<std::rc::Rc<regex::Regex>> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static CACHE: RefCell<HashMap<(String, bool), std::rc::Rc<regex::Regex>>> =
            RefCell::new(HashMap::new());
    }
    if let Some(r) = CACHE.with(|c| {
        c.borrow()
            .get(&(pattern.to_string(), case_insensitive))
            .cloned()
    }) {
        return Ok(r);
    }
    let compiled = regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidRegularExpression,
                format!("invalid regular expression: {e}"),
            )
        })?;
    let compiled = std::rc::Rc::new(compiled);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 256 {
            c.clear();
        }
        c.insert((pattern.to_string(), case_insensitive), compiled.clone());
    });
    Ok(compiled)
}

/// PostgreSQL's replacement text (`\1`..`\9`, `\&` for the whole match)
/// in the regex crate's syntax.
fn replacement(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d @ '0'..='9') => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('&') => {
                    out.push_str("${0}");
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// The string functions added with PostgreSQL's everyday SQL; `None` for
/// other functions.
fn call_text(f: Func, vals: &[Value]) -> Result<Option<Value>> {
    let pad = |s: &str, n: i64, fill: &str, left: bool| -> Result<Value> {
        let n = n.max(0) as usize;
        super::check_text_len(n.saturating_mul(4))?;
        let len = s.chars().count();
        if len >= n {
            return Ok(Value::text(s.chars().take(n).collect::<String>()));
        }
        if fill.is_empty() {
            return Ok(Value::text(s));
        }
        let padding: String = fill.chars().cycle().take(n - len).collect();
        Ok(Value::text(if left {
            format!("{padding}{s}")
        } else {
            format!("{s}{padding}")
        }))
    };
    Ok(Some(match (f, vals) {
        (Func::Greatest | Func::Least, args) => {
            let mut best: Option<&Value> = None;
            for v in args.iter().filter(|v| !v.is_null()) {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let o = v.cmp_non_null(b);
                        if f == Func::Greatest {
                            o == std::cmp::Ordering::Greater
                        } else {
                            o == std::cmp::Ordering::Less
                        }
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            best.cloned().unwrap_or(Value::Null)
        }
        (Func::Repeat, [Value::Text(s), Value::Int(n)]) => {
            let n = (*n).max(0) as usize;
            super::check_text_len(s.len().saturating_mul(n))?;
            Value::text(s.repeat(n))
        }
        (Func::Lpad | Func::Rpad, [Value::Text(s), Value::Int(n), rest @ ..]) => {
            let fill = match rest {
                [Value::Text(f)] => f.to_string(),
                _ => " ".to_string(),
            };
            pad(s, *n, &fill, f == Func::Lpad)?
        }
        (Func::SplitPart, [Value::Text(s), Value::Text(d), Value::Int(n)]) => {
            if *n == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "field position must not be zero",
                ));
            }
            let parts: Vec<&str> = if d.is_empty() {
                vec![s]
            } else {
                s.split(&**d).collect()
            };
            let idx = if *n > 0 {
                (*n - 1) as usize
            } else {
                match parts.len().checked_sub(n.unsigned_abs() as usize) {
                    Some(i) => i,
                    None => return Ok(Some(Value::text(""))),
                }
            };
            Value::text(parts.get(idx).copied().unwrap_or(""))
        }
        (Func::Left | Func::Right, [Value::Text(s), Value::Int(n)]) => {
            let len = s.chars().count() as i64;
            let take = if *n >= 0 {
                (*n).min(len)
            } else {
                (len + n).max(0)
            };
            Value::text(if f == Func::Left {
                s.chars().take(take as usize).collect::<String>()
            } else {
                s.chars().skip((len - take) as usize).collect::<String>()
            })
        }
        (Func::Reverse, [Value::Text(s)]) => Value::text(s.chars().rev().collect::<String>()),
        (Func::Initcap, [Value::Text(s)]) => {
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if c.is_alphanumeric() {
                    if start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                    start = false;
                } else {
                    out.push(c);
                    start = true;
                }
            }
            Value::text(out)
        }
        (Func::Chr, [Value::Int(code)]) => {
            let c = u32::try_from(*code)
                .ok()
                .filter(|c| *c != 0)
                .and_then(char::from_u32)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        format!("requested character not valid for encoding: {code}"),
                    )
                })?;
            Value::text(c.to_string())
        }
        (Func::Ascii, [Value::Text(s)]) => Value::Int(s.chars().next().map_or(0, |c| c as i64)),
        (Func::StartsWith, [Value::Text(s), Value::Text(p)]) => Value::Bool(s.starts_with(&**p)),
        (Func::Translate, [Value::Text(s), Value::Text(from), Value::Text(to)]) => {
            let from: Vec<char> = from.chars().collect();
            let to: Vec<char> = to.chars().collect();
            Value::text(
                s.chars()
                    .filter_map(|c| match from.iter().position(|x| *x == c) {
                        Some(i) => to.get(i).copied(),
                        None => Some(c),
                    })
                    .collect::<String>(),
            )
        }
        (Func::RegexMatch, [Value::Text(s), Value::Text(p), Value::Bool(ci)]) => {
            Value::Bool(regex(p, *ci)?.is_match(s))
        }
        (Func::RegexpReplace, [Value::Text(s), Value::Text(p), Value::Text(r), rest @ ..]) => {
            let flags = match rest {
                [Value::Text(fl)] => fl.to_string(),
                _ => String::new(),
            };
            if let Some(bad) = flags.chars().find(|c| !matches!(c, 'g' | 'i' | 'c')) {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid regular expression option: \"{bad}\""),
                ));
            }
            let re = regex(p, flags.contains('i'))?;
            let rep = replacement(r);
            let out = if flags.contains('g') {
                re.replace_all(s, rep.as_str())
            } else {
                re.replace(s, rep.as_str())
            };
            super::check_text_len(out.len())?;
            Value::text(out.into_owned())
        }
        _ => return Ok(None),
    }))
}

/// The date and time functions and operators.
fn call_datetime(f: Func, vals: &[Value], ty: DataType) -> Result<Value> {
    use crate::types::datetime as dt;
    let day = dt::MICROS_PER_DAY;
    let date_range = |t: i64| -> Result<i64> {
        if !(-2_147_483_648..=2_147_483_647).contains(&t.div_euclid(day)) {
            return Err(Error::new(
                ErrorKind::DatetimeOutOfRange,
                "date out of range",
            ));
        }
        Ok(t)
    };
    Ok(match (f, vals) {
        (Func::DateTrunc, [Value::Text(unit), Value::Timestamp(t)]) => {
            Value::Timestamp(dt::date_trunc(unit, *t)?)
        }
        (
            Func::Extract,
            [
                Value::Text(field),
                Value::Timestamp(t),
                Value::Bool(is_date),
            ],
        ) => Value::Numeric(dt::extract_timestamp(field, *t, *is_date)?),
        (Func::Extract, [Value::Text(field), Value::Interval(iv), _]) => {
            Value::Numeric(dt::extract_interval(field, iv)?)
        }
        (
            Func::DatePart,
            [
                Value::Text(field),
                Value::Timestamp(t),
                Value::Bool(is_date),
            ],
        ) => {
            use rust_decimal::prelude::ToPrimitive;
            Value::Float(
                dt::extract_timestamp(field, *t, *is_date)?
                    .to_f64()
                    .unwrap_or(f64::NAN),
            )
        }
        (Func::DatePart, [Value::Text(field), Value::Interval(iv), _]) => {
            use rust_decimal::prelude::ToPrimitive;
            Value::Float(
                dt::extract_interval(field, iv)?
                    .to_f64()
                    .unwrap_or(f64::NAN),
            )
        }
        (Func::Age, [Value::Timestamp(a), Value::Timestamp(b)]) => Value::Interval(dt::age(*a, *b)),
        (Func::AddInterval, [Value::Timestamp(t), Value::Interval(iv)]) => {
            Value::Timestamp(dt::add_interval(*t, iv)?)
        }
        (Func::SubInterval, [Value::Timestamp(t), Value::Interval(iv)]) => {
            Value::Timestamp(dt::add_interval(*t, &iv.neg()?)?)
        }
        (Func::TimestampDiff, [Value::Timestamp(a), Value::Timestamp(b)]) => {
            Value::Interval(dt::timestamp_diff(*a, *b)?)
        }
        (Func::AddDays | Func::SubDays, [Value::Timestamp(t), Value::Int(n)]) => {
            let n = if f == Func::SubDays { -*n } else { *n };
            let moved = n
                .checked_mul(day)
                .and_then(|d| t.checked_add(d))
                .ok_or_else(|| Error::new(ErrorKind::DatetimeOutOfRange, "date out of range"))?;
            Value::Timestamp(date_range(moved)?)
        }
        (Func::DateDiff, [Value::Timestamp(a), Value::Timestamp(b)]) => {
            Value::Int(a.div_euclid(day) - b.div_euclid(day))
        }
        (Func::IntervalAdd, [Value::Interval(a), Value::Interval(b)]) => Value::Interval(a.add(b)?),
        (Func::IntervalSub, [Value::Interval(a), Value::Interval(b)]) => {
            Value::Interval(a.add(&b.neg()?)?)
        }
        (Func::IntervalNeg, [Value::Interval(a)]) => Value::Interval(a.neg()?),
        (Func::IntervalMul, [Value::Interval(a), Value::Float(x)]) => Value::Interval(a.mul(*x)?),
        (Func::IntervalDiv, [Value::Interval(a), Value::Float(x)]) => {
            if *x == 0.0 {
                return Err(crate::types::ops::division_by_zero());
            }
            Value::Interval(a.mul(1.0 / x)?)
        }
        (Func::MakeDate, [Value::Int(y), Value::Int(m), Value::Int(d)]) => {
            let text = format!("{y:04}-{m:02}-{d:02}");
            let parsed = if *y > 0 && (1..=12).contains(m) && (1..=31).contains(d) {
                dt::parse_date(&text).ok()
            } else {
                None
            };
            Value::Timestamp(parsed.ok_or_else(|| {
                Error::new(
                    ErrorKind::DatetimeOutOfRange,
                    format!("date field value out of range: {y}-{m:02}-{d:02}"),
                )
            })?)
        }
        (Func::ToTimestamp, [Value::Float(secs)]) => {
            let micros = (secs * 1e6).round();
            if !micros.is_finite() || micros.abs() > 9.2e18 {
                return Err(Error::new(
                    ErrorKind::DatetimeOutOfRange,
                    "timestamp out of range",
                ));
            }
            Value::Timestamp(micros as i64)
        }
        _ => {
            let _ = ty;
            return Err(bad_args(f, vals));
        }
    })
}

/// Calls `f` on argument values; `ty` is the result type.
pub fn call(f: Func, vals: &[Value], ty: DataType) -> Result<Value> {
    if f.strict() && vals.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    if matches!(
        f,
        Func::DateTrunc
            | Func::Extract
            | Func::DatePart
            | Func::Age
            | Func::AddInterval
            | Func::SubInterval
            | Func::TimestampDiff
            | Func::AddDays
            | Func::SubDays
            | Func::DateDiff
            | Func::IntervalAdd
            | Func::IntervalSub
            | Func::IntervalNeg
            | Func::IntervalMul
            | Func::IntervalDiv
            | Func::MakeDate
            | Func::ToTimestamp
    ) {
        return call_datetime(f, vals, ty);
    }
    if matches!(f, Func::Now | Func::ClockTimestamp) || f.is_executor_call() {
        // The evaluator answers these from its environment.
        return Err(bad_args(f, vals));
    }
    if let Some(v) = call_text(f, vals)? {
        return Ok(v);
    }
    Ok(match (f, vals) {
        (Func::Abs, [Value::Int(i)]) => Value::Int(check_int_range(
            i.checked_abs().ok_or_else(|| int_out_of_range(ty))?,
            ty,
        )?),
        (Func::Abs, [Value::Numeric(d)]) => Value::Numeric(d.abs()),
        (Func::Abs, [Value::Float(x)]) => Value::Float(x.abs()),
        (Func::Ceil, [Value::Numeric(d)]) => Value::Numeric(d.ceil().normalize()),
        (Func::Ceil, [Value::Float(x)]) => Value::Float(x.ceil()),
        (Func::Floor, [Value::Numeric(d)]) => Value::Numeric(d.floor().normalize()),
        (Func::Floor, [Value::Float(x)]) => Value::Float(x.floor()),
        (Func::Round, [Value::Numeric(d)]) => Value::Numeric(round_numeric(*d, 0)?),
        (Func::Round, [Value::Numeric(d), Value::Int(n)]) => Value::Numeric(round_numeric(*d, *n)?),
        (Func::Round, [Value::Float(x)]) => Value::Float(x.round_ties_even()),
        (Func::Mod, [a, b]) => crate::types::ops::arith(crate::types::ops::ArithOp::Mod, a, b, ty)?,
        (Func::Length, [Value::Text(s)]) => Value::Int(s.chars().count() as i64),
        (Func::Lower, [Value::Text(s)]) => Value::text(s.to_lowercase()),
        (Func::Upper, [Value::Text(s)]) => Value::text(s.to_uppercase()),
        (Func::Substr, [Value::Text(s), Value::Int(from)]) => Value::text(substr(s, *from, None)?),
        (Func::Substr, [Value::Text(s), Value::Int(from), Value::Int(n)]) => {
            Value::text(substr(s, *from, Some(*n))?)
        }
        (Func::Btrim | Func::Ltrim | Func::Rtrim, [Value::Text(s), rest @ ..]) => {
            let chars = match rest {
                [] => " ",
                [Value::Text(c)] => c,
                _ => return Err(bad_args(f, vals)),
            };
            let (l, r) = match f {
                Func::Btrim => (true, true),
                Func::Ltrim => (true, false),
                _ => (false, true),
            };
            Value::text(trim_set(s, chars, l, r))
        }
        (Func::Concat, args) => {
            let mut out = String::new();
            for a in args {
                // Arguments were bound as text.
                if let Value::Text(s) = a {
                    super::check_text_len(out.len().saturating_add(s.len()))?;
                    out.push_str(s);
                } else if let Some(s) = format_value(a, DataType::Text) {
                    super::check_text_len(out.len().saturating_add(s.len()))?;
                    out.push_str(&s);
                }
            }
            Value::text(out)
        }
        (Func::Replace, [Value::Text(s), Value::Text(from), Value::Text(to)]) => {
            if from.is_empty() {
                Value::Text(s.clone())
            } else {
                if to.len() > from.len() {
                    let grown = s
                        .matches(&**from)
                        .count()
                        .saturating_mul(to.len() - from.len());
                    super::check_text_len(s.len().saturating_add(grown))?;
                }
                Value::text(s.replace(&**from, to))
            }
        }
        (Func::Strpos, [Value::Text(s), Value::Text(sub)]) => Value::Int(match s.find(&**sub) {
            Some(byte) => s[..byte].chars().count() as i64 + 1,
            None => 0,
        }),
        (Func::Version, []) => Value::text(crate::VERSION_STRING),
        (Func::FormatType, [Value::Null, ..]) => Value::Null,
        (Func::FormatType, [Value::Int(oid), m]) => {
            let typmod = if let Value::Int(m) = m {
                Some(*m)
            } else {
                None
            };
            Value::text(
                crate::syscat::format_type(*oid, typmod).unwrap_or_else(|| "???".to_string()),
            )
        }
        (Func::QuoteIdent, [Value::Text(s)]) => Value::text(crate::syscat::quote_ident(s)),
        (Func::ToRegtype, [Value::Text(s)]) => {
            crate::syscat::type_by_name(s).map_or(Value::Null, Value::Int)
        }
        (Func::Regtype, [Value::Text(s)]) => match crate::syscat::type_by_name(s) {
            Some(oid) => Value::Int(oid),
            None => {
                return Err(Error::new(
                    ErrorKind::UndefinedObject,
                    format!("type \"{s}\" does not exist"),
                ));
            }
        },
        (Func::ArrayToString, [Value::Text(a), Value::Text(sep)]) => {
            // NULL elements are skipped, as PostgreSQL does without a
            // third argument.
            let items: Vec<String> = array_items(a)?.into_iter().flatten().collect();
            Value::text(items.join(sep))
        }
        (Func::SizePretty, [Value::Int(n)]) => Value::text(size_pretty(*n)),
        (Func::Power, [Value::Float(a), Value::Float(b)]) => {
            power_check(*a == 0.0, *b < 0.0, *a < 0.0, b.fract() != 0.0)?;
            let r = a.powf(*b);
            if r.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(Error::new(
                    ErrorKind::NumericOutOfRange,
                    "value out of range: overflow",
                ));
            }
            Value::Float(r)
        }
        (Func::Power, [Value::Numeric(a), Value::Numeric(b)]) => {
            power_check(
                a.is_zero(),
                b.is_sign_negative(),
                a.is_sign_negative(),
                !b.fract().is_zero(),
            )?;
            Value::Numeric(numeric_power(*a, *b)?)
        }
        (Func::Sqrt, [Value::Float(x)]) => {
            if *x < 0.0 {
                return Err(Error::new(
                    ErrorKind::InvalidArgumentForPower,
                    "cannot take square root of a negative number",
                ));
            }
            Value::Float(x.sqrt())
        }
        (Func::ArrayElement, [Value::Text(a), Value::Int(i)]) => {
            let items = array_items(a)?;
            match i
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.get(i))
            {
                Some(Some(item)) => Value::text(item.as_str()),
                _ => Value::Null,
            }
        }
        (Func::ArrayUpper, [Value::Text(a), rest @ ..]) => {
            let n = array_items(a)?.len();
            match rest {
                [Value::Int(1)] | [] if n > 0 => Value::Int(n as i64),
                [Value::Int(1)] => Value::Null,
                [] => Value::Int(0),
                _ => Value::Null,
            }
        }
        (Func::ArrayContains, [Value::Text(a), Value::Text(x)]) => {
            let mut found = Some(false);
            for item in array_items(a)? {
                match item {
                    None => found = None,
                    Some(i) if i == **x => return Ok(Value::Bool(true)),
                    Some(_) => {}
                }
            }
            found.map_or(Value::Null, Value::Bool)
        }
        (Func::UnlessNull, [_, c]) => c.clone(),
        (Func::UserById, [Value::Int(oid), user]) => {
            if *oid == crate::syscat::DATABASE_OWNER_OID {
                Value::text("pg_database_owner")
            } else {
                user.clone()
            }
        }
        (Func::JsonBuildObject, pairs) => {
            // Arguments were bound as (text key, value) pairs; values keep
            // their type.
            let mut out = String::from("{");
            for (i, kv) in pairs.chunks(2).enumerate() {
                let [k, v] = kv else {
                    return Err(bad_args(f, vals));
                };
                let Value::Text(k) = k else {
                    return Err(Error::new(
                        ErrorKind::NullValueNotAllowed,
                        "null value not allowed for object key",
                    ));
                };
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(&mut out, k);
                out.push_str(" : ");
                match v {
                    Value::Null => out.push_str("null"),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::Int(_) | Value::Numeric(_) | Value::Float(_) => {
                        out.push_str(&format_value(v, DataType::Text).unwrap_or_default())
                    }
                    other => json_string(
                        &mut out,
                        &format_value(other, DataType::Text).unwrap_or_default(),
                    ),
                }
            }
            out.push('}');
            Value::text(out)
        }
        _ => return Err(bad_args(f, vals)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::text(s)
    }

    /// A result past PostgreSQL's 1 GB limit on a text value is refused
    /// (54000) before its memory is taken.
    #[test]
    fn text_results_past_one_gigabyte_are_refused_before_they_are_built() {
        let big = Value::text("x".repeat(2 << 20));
        let err = call(
            Func::Replace,
            &[t(&"a".repeat(1000)), t("a"), big],
            DataType::Text,
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ProgramLimitExceeded, "{err:?}");
        assert!(super::super::check_text_len(super::super::MAX_TEXT).is_ok());
        assert!(super::super::check_text_len(super::super::MAX_TEXT + 1).is_err());
    }

    #[test]
    fn substr_follows_postgres() {
        let call3 = |s, a, b| {
            call(
                Func::Substr,
                &[t(s), Value::Int(a), Value::Int(b)],
                DataType::Text,
            )
            .unwrap()
        };
        assert_eq!(
            call(Func::Substr, &[t("hello"), Value::Int(2)], DataType::Text).unwrap(),
            t("ello")
        );
        assert_eq!(call3("hello", 0, 3), t("he"));
        assert_eq!(call3("hello", -1, 3), t("h"));
        assert_eq!(call3("hello", 2, 100), t("ello"));
        assert!(
            call(
                Func::Substr,
                &[t("hello"), Value::Int(2), Value::Int(-1)],
                DataType::Text
            )
            .is_err()
        );
    }

    #[test]
    fn rounding_follows_postgres() {
        let n = |s: &str| Value::Numeric(s.parse().unwrap());
        let ty = DataType::Numeric(None);
        assert_eq!(call(Func::Round, &[n("2.5")], ty).unwrap(), n("3"));
        assert_eq!(call(Func::Round, &[n("-2.5")], ty).unwrap(), n("-3"));
        assert_eq!(
            format_value(
                &call(Func::Round, &[n("1234.567"), Value::Int(2)], ty).unwrap(),
                ty
            )
            .unwrap(),
            "1234.57"
        );
        assert_eq!(
            call(Func::Round, &[n("1234.567"), Value::Int(-2)], ty).unwrap(),
            n("1200")
        );
        assert_eq!(
            call(Func::Round, &[Value::Float(2.5)], DataType::Float8).unwrap(),
            Value::Float(2.0)
        );
        assert_eq!(
            call(Func::Round, &[Value::Float(3.5)], DataType::Float8).unwrap(),
            Value::Float(4.0)
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            call(Func::Btrim, &[t("xxhixx"), t("x")], DataType::Text).unwrap(),
            t("hi")
        );
        assert_eq!(
            call(Func::Rtrim, &[t("hi  ")], DataType::Text).unwrap(),
            t("hi")
        );
        assert_eq!(
            call(Func::Concat, &[t("a"), Value::Null, t("1")], DataType::Text).unwrap(),
            t("a1")
        );
        assert_eq!(
            call(Func::Strpos, &[t("héllo"), t("llo")], DataType::Int4).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            call(
                Func::Replace,
                &[t("abcabc"), t("b"), t("X")],
                DataType::Text
            )
            .unwrap(),
            t("aXcaXc")
        );
    }
}
