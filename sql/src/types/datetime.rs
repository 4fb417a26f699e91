//! Dates and times: DATE, TIMESTAMP, TIMESTAMPTZ and INTERVAL input and
//! output in PostgreSQL's ISO forms, and the calendar arithmetic on them.
//!
//! Every date and time value is microseconds since 1970-01-01 00:00:00
//! (a DATE is its midnight, so DATE → TIMESTAMP is free and they compare
//! directly). TIMESTAMPTZ values are instants in UTC; the session time zone
//! is always UTC (`SET TIME ZONE` accepts only UTC and its aliases), so
//! TIMESTAMP and TIMESTAMPTZ differ only in how they are read and printed.

use kv::{Error, ErrorKind, Result};

pub const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = SECS_PER_DAY * MICROS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn invalid_for(ty: &str, s: &str) -> Error {
    Error::new(
        ErrorKind::InvalidDatetimeFormat,
        format!("invalid input syntax for type {ty}: \"{s}\""),
    )
}

fn invalid(s: &str) -> Error {
    invalid_for("timestamp", s)
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][offset]` into microseconds
/// since the Unix epoch, as TIMESTAMP does: a time zone offset is accepted
/// and ignored.
pub fn parse_timestamp(input: &str) -> Result<i64> {
    parse_datetime(input).map(|(t, _)| t)
}

/// Parses TIMESTAMPTZ input: like [`parse_timestamp`], and an offset
/// (`Z`, `+05`, `-0330`, `+05:30`, ` UTC`) converts the local time to UTC
/// (no offset: the session's time zone, UTC).
pub fn parse_timestamptz(input: &str) -> Result<i64> {
    let (t, offset) = parse_datetime(input)?;
    Ok(t - offset.unwrap_or(0))
}

/// Parses DATE input: a timestamp whose time of day is dropped.
pub fn parse_date(input: &str) -> Result<i64> {
    let t = parse_datetime(input)
        .map_err(|e| match e.kind {
            ErrorKind::InvalidDatetimeFormat => invalid_for("date", input),
            _ => e,
        })?
        .0;
    Ok(t - t.rem_euclid(MICROS_PER_DAY))
}

/// Special inputs: `epoch`, `infinity` are not supported (no infinite
/// values); `now`, `today` and the like depend on the clock and are taken
/// only through the functions.
///
/// Splits a trailing time zone offset off a time of day: returns the time
/// and the offset in microseconds east of UTC.
fn split_offset<'a>(time: &'a str, input: &str) -> Result<(&'a str, Option<i64>)> {
    let t = time.trim_end();
    for suffix in [" UTC", " utc", " GMT", " gmt", "Z", "z", "UTC", "GMT"] {
        if let Some(rest) = t.strip_suffix(suffix) {
            return Ok((rest.trim_end(), Some(0)));
        }
    }
    let Some(i) = t.rfind(['+', '-']) else {
        return Ok((t, None));
    };
    let (clock, zone) = (&t[..i], &t[i + 1..]);
    let sign = if t.as_bytes()[i] == b'-' { -1 } else { 1 };
    let digits: String = zone.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
        return Err(invalid(input));
    }
    let num =
        |r: std::ops::Range<usize>| -> i64 { digits.get(r).map_or(0, |d| d.parse().unwrap_or(0)) };
    let (h, m, sec) = match digits.len() {
        1 | 2 => (num(0..digits.len()), 0, 0),
        3 => (num(0..1), num(1..3), 0),
        4 => (num(0..2), num(2..4), 0),
        _ => (num(0..2), num(2..4), num(4..digits.len())),
    };
    if h > 15 || m > 59 || sec > 59 {
        return Err(Error::new(
            ErrorKind::InvalidTimeZoneDisplacement,
            format!("time zone displacement out of range: \"{input}\""),
        ));
    }
    Ok((
        clock.trim_end(),
        Some(sign * ((h * 60 + m) * 60 + sec) * MICROS_PER_SEC),
    ))
}

/// The local date-time and the offset written with it, if any.
fn parse_datetime(input: &str) -> Result<(i64, Option<i64>)> {
    let s = input.trim();
    let (date, time) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
    };
    let (time, offset) = match time {
        Some(t) if !t.is_empty() => {
            let (t, o) = split_offset(t, input)?;
            (Some(t), o)
        }
        _ => (None, None),
    };
    let mut parts = date.splitn(3, '-');
    let mut num = || -> Result<i64> {
        parts
            .next()
            .filter(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| invalid(s))
    };
    let (y, m, d) = (num()?, num()? as u32, num()? as u32);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1..=MAX_YEAR).contains(&y) {
        return Err(Error::new(
            ErrorKind::DatetimeOutOfRange,
            format!("date/time field value out of range: \"{input}\""),
        ));
    }
    let mut micros_of_day = 0i64;
    if let Some(t) = time.filter(|t| !t.is_empty()) {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let fields: Vec<&str> = hms.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(invalid(input));
        }
        let field = |f: &str| -> Result<i64> {
            if f.len() != 2 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(input));
            }
            Ok(f.parse().expect("digits"))
        };
        let (h, mi) = (field(fields[0])?, field(fields[1])?);
        let sec = if fields.len() == 3 {
            field(fields[2])?
        } else {
            0
        };
        if h > 24 || mi > 59 || sec > 60 || (h == 24 && (mi > 0 || sec > 0)) {
            return Err(Error::new(
                ErrorKind::DatetimeOutOfRange,
                format!("date/time field value out of range: \"{input}\""),
            ));
        }
        let mut frac_micros = 0i64;
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(input));
            }
            // Round to microseconds, as PostgreSQL does.
            let digits: Vec<i64> = f.bytes().map(|b| (b - b'0') as i64).collect();
            for i in 0..6 {
                frac_micros = frac_micros * 10 + digits.get(i).copied().unwrap_or(0);
            }
            if digits.get(6).is_some_and(|&d| d >= 5) {
                frac_micros += 1;
            }
        }
        micros_of_day = ((h * 60 + mi) * 60 + sec) * MICROS_PER_SEC + frac_micros;
    }
    Ok((
        days_from_civil(y, m, d) * SECS_PER_DAY * MICROS_PER_SEC + micros_of_day,
        offset,
    ))
}

/// Formats microseconds since the Unix epoch as PostgreSQL's ISO output:
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` with trailing fractional zeros removed.
pub fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(SECS_PER_DAY * MICROS_PER_SEC);
    let rem = micros.rem_euclid(SECS_PER_DAY * MICROS_PER_SEC);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / MICROS_PER_SEC;
    let frac = rem % MICROS_PER_SEC;
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

/// TIMESTAMPTZ output: the UTC time with its offset, `+00`.
pub fn format_timestamptz(micros: i64) -> String {
    let mut out = format_timestamp(micros);
    out.push_str("+00");
    out
}

/// DATE output: `YYYY-MM-DD`.
pub fn format_date(micros: i64) -> String {
    let (y, m, d) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The last year a timestamp may have: microseconds since 1970 in 64 bits
/// reach 292277 (PostgreSQL, counting from 2000, reaches 294276).
pub const MAX_YEAR: i64 = 292_276;

/// Timestamps run from 0001-01-01 (no BC dates) to the end of
/// [`MAX_YEAR`].
fn check_range(micros: i64) -> Result<i64> {
    let min = days_from_civil(1, 1, 1) * MICROS_PER_DAY;
    let max = days_from_civil(MAX_YEAR + 1, 1, 1) * MICROS_PER_DAY - 1;
    if !(min..=max).contains(&micros) {
        return Err(Error::new(
            ErrorKind::DatetimeOutOfRange,
            "timestamp out of range",
        ));
    }
    Ok(micros)
}

/// An INTERVAL: months, days and microseconds, kept apart as in
/// PostgreSQL (a month is not a fixed number of days, nor a day of hours
/// across daylight-saving changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Interval {
    /// Months (years are twelve of them).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

fn interval_overflow() -> Error {
    Error::new(ErrorKind::IntervalFieldOverflow, "interval out of range")
}

impl Interval {
    /// The length used to compare intervals: a month counts 30 days and a
    /// day 24 hours, as in PostgreSQL (so `'1 mon' = '30 days'`).
    pub fn span(&self) -> i128 {
        (self.months as i128 * 30 + self.days as i128) * MICROS_PER_DAY as i128
            + self.micros as i128
    }

    /// The 16-byte stored form.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.months.to_le_bytes());
        out[4..8].copy_from_slice(&self.days.to_le_bytes());
        out[8..].copy_from_slice(&self.micros.to_le_bytes());
        out
    }

    /// From the stored form.
    pub fn from_bytes(b: &[u8; 16]) -> Interval {
        Interval {
            months: i32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
            days: i32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            micros: i64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
        }
    }

    /// `a + b`, field by field.
    pub fn add(&self, o: &Interval) -> Result<Interval> {
        Ok(Interval {
            months: self
                .months
                .checked_add(o.months)
                .ok_or_else(interval_overflow)?,
            days: self
                .days
                .checked_add(o.days)
                .ok_or_else(interval_overflow)?,
            micros: self
                .micros
                .checked_add(o.micros)
                .ok_or_else(interval_overflow)?,
        })
    }

    /// `-a`.
    pub fn neg(&self) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_neg().ok_or_else(interval_overflow)?,
            days: self.days.checked_neg().ok_or_else(interval_overflow)?,
            micros: self.micros.checked_neg().ok_or_else(interval_overflow)?,
        })
    }

    /// `a * f`: fractional months spill into days (30 to a month) and
    /// fractional days into time, as PostgreSQL's interval_mul does.
    pub fn mul(&self, f: f64) -> Result<Interval> {
        if !f.is_finite() {
            return Err(interval_overflow());
        }
        let months = self.months as f64 * f;
        let whole_months = months.trunc();
        let days = self.days as f64 * f + (months - whole_months) * 30.0;
        let whole_days = days.trunc();
        let micros = self.micros as f64 * f + (days - whole_days) * MICROS_PER_DAY as f64;
        let fits32 = |x: f64| x >= i32::MIN as f64 && x <= i32::MAX as f64;
        if !fits32(whole_months) || !fits32(whole_days) || micros.abs() >= i64::MAX as f64 {
            return Err(interval_overflow());
        }
        Ok(Interval {
            months: whole_months as i32,
            days: whole_days as i32,
            micros: micros.round() as i64,
        })
    }
}

/// PostgreSQL's interval output (`IntervalStyle = postgres`):
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days +01:00:00`, `00:00:00`.
pub fn format_interval(iv: &Interval) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && value > 0 {
            out.push('+');
        }
        out.push_str(&format!(
            "{value} {unit}{}",
            if value != 1 { "s" } else { "" }
        ));
        is_before = value < 0;
        is_zero = false;
    };
    part((iv.months / 12) as i64, "year", &mut out);
    part((iv.months % 12) as i64, "mon", &mut out);
    part(iv.days as i64, "day", &mut out);
    if is_zero || iv.micros != 0 {
        let minus = iv.micros < 0;
        let m = iv.micros.unsigned_abs();
        let secs = m / MICROS_PER_SEC as u64;
        let frac = m % MICROS_PER_SEC as u64;
        if !is_zero {
            out.push(' ');
        }
        if minus {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ));
        if frac != 0 {
            out.push('.');
            out.push_str(format!("{frac:06}").trim_end_matches('0'));
        }
    }
    out
}

fn invalid_interval(input: &str) -> Error {
    invalid_for("interval", input)
}

/// Adds `value` of `unit` to an interval being built, spilling fractions
/// into the smaller fields as PostgreSQL does.
fn add_unit(acc: &mut (f64, f64, f64), value: f64, unit: &str) -> Option<()> {
    let day = MICROS_PER_DAY as f64;
    match unit {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => acc.0 += value * 12_000.0,
        "century" | "centuries" | "c" => acc.0 += value * 1200.0,
        "decade" | "decades" | "dec" | "decs" => acc.0 += value * 120.0,
        "year" | "years" | "y" | "yr" | "yrs" => acc.0 += (value * 12.0).round(),
        "month" | "months" | "mon" | "mons" => {
            acc.0 += value.trunc();
            acc.1 += value.fract() * 30.0;
        }
        "week" | "weeks" | "w" => {
            let days = value * 7.0;
            acc.1 += days.trunc();
            acc.2 += days.fract() * day;
        }
        "day" | "days" | "d" => {
            acc.1 += value.trunc();
            acc.2 += value.fract() * day;
        }
        "hour" | "hours" | "h" | "hr" | "hrs" => acc.2 += value * 3_600e6,
        "minute" | "minutes" | "m" | "min" | "mins" => acc.2 += value * 60e6,
        "second" | "seconds" | "s" | "sec" | "secs" => acc.2 += value * 1e6,
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => acc.2 += value * 1e3,
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => acc.2 += value,
        _ => return None,
    }
    Some(())
}

/// A clock time `[-]h:mm[:ss[.f]]` in microseconds.
fn parse_clock(t: &str) -> Option<f64> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let fields: Vec<&str> = t.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return None;
    }
    let h: f64 = fields[0]
        .parse()
        .ok()
        .filter(|_| !fields[0].contains('.'))?;
    let m: f64 = fields[1]
        .parse()
        .ok()
        .filter(|_| !fields[1].contains('.'))?;
    let sec: f64 = match fields.get(2) {
        Some(x) => x.parse().ok()?,
        None => 0.0,
    };
    let v = ((h * 60.0 + m) * 60.0 + sec) * 1e6;
    Some(if neg { -v } else { v })
}

/// Parses interval input: `1 year 2 months`, `3 days 04:05:06`, `1.5
/// hours`, `-2 days`, `@ 1 day ago`, `10:00`, a bare number (seconds), or
/// ISO 8601 `P1Y2M3DT4H5M6S`.
pub fn parse_interval(input: &str) -> Result<Interval> {
    let s = input.trim().to_ascii_lowercase();
    let mut acc = (0.0f64, 0.0f64, 0.0f64);
    if let Some(iso) = s.strip_prefix('p') {
        parse_iso_interval(iso, &mut acc).ok_or_else(|| invalid_interval(input))?;
    } else {
        let s = s.strip_prefix('@').unwrap_or(&s).trim();
        let (s, ago) = match s.strip_suffix("ago") {
            Some(r) => (r.trim(), true),
            None => (s, false),
        };
        let tokens: Vec<&str> = s.split_whitespace().collect();
        if tokens.is_empty() {
            return Err(invalid_interval(input));
        }
        let mut i = 0;
        while i < tokens.len() {
            let tok = tokens[i];
            if tok.contains(':') {
                acc.2 += parse_clock(tok).ok_or_else(|| invalid_interval(input))?;
                i += 1;
                continue;
            }
            // A number, possibly with its unit attached (`10d`, `1.5h`).
            let split = tok
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(tok.len());
            let (num, unit) = tok.split_at(split);
            let value: f64 = num.parse().map_err(|_| invalid_interval(input))?;
            let unit = if unit.is_empty() {
                match tokens.get(i + 1) {
                    Some(u) if u.chars().all(|c| c.is_ascii_alphabetic()) => {
                        i += 1;
                        *u
                    }
                    // SQL-standard `3 4:05:06`: a bare number before a
                    // time of day counts days.
                    Some(next) if next.contains(':') => "day",
                    _ => "second",
                }
            } else {
                unit
            };
            add_unit(&mut acc, value, unit).ok_or_else(|| invalid_interval(input))?;
            i += 1;
        }
        if ago {
            acc = (-acc.0, -acc.1, -acc.2);
        }
    }
    let fits32 = |x: f64| x >= i32::MIN as f64 && x <= i32::MAX as f64;
    // Whole days from fractional months stay days; their fractions go to
    // time, as in PostgreSQL.
    let days_whole = acc.1.trunc();
    let micros = acc.2 + (acc.1 - days_whole) * MICROS_PER_DAY as f64;
    if !fits32(acc.0) || !fits32(days_whole) || micros.abs() >= 9.2e18 {
        return Err(interval_overflow());
    }
    Ok(Interval {
        months: acc.0 as i32,
        days: days_whole as i32,
        micros: micros.round() as i64,
    })
}

fn parse_iso_interval(s: &str, acc: &mut (f64, f64, f64)) -> Option<()> {
    let (date, time) = match s.split_once('t') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut run = |part: &str, units: &[(char, &str)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == '-' {
                num.push(c);
            } else {
                let unit = units.iter().find(|(u, _)| *u == c)?.1;
                add_unit(acc, num.parse().ok()?, unit)?;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    run(
        date,
        &[('y', "year"), ('m', "month"), ('w', "week"), ('d', "day")],
    )?;
    if let Some(t) = time {
        run(t, &[('h', "hour"), ('m', "minute"), ('s', "second")])?;
    }
    Some(())
}

/// `timestamp + interval`: months first (the day clamped to the month's
/// end: Jan 31 + 1 month = Feb 29 in a leap year), then days, then time.
pub fn add_interval(micros: i64, iv: &Interval) -> Result<i64> {
    let mut t = micros;
    if iv.months != 0 {
        let days = t.div_euclid(MICROS_PER_DAY);
        let time = t.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let total = y * 12 + (m as i64 - 1) + iv.months as i64;
        let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
        if !(1..=MAX_YEAR).contains(&ny) {
            return Err(Error::new(
                ErrorKind::DatetimeOutOfRange,
                "timestamp out of range",
            ));
        }
        let nd = d.min(days_in_month(ny, nm));
        t = days_from_civil(ny, nm, nd) * MICROS_PER_DAY + time;
    }
    let overflow = || Error::new(ErrorKind::DatetimeOutOfRange, "timestamp out of range");
    t = t
        .checked_add(
            (iv.days as i64)
                .checked_mul(MICROS_PER_DAY)
                .ok_or_else(overflow)?,
        )
        .ok_or_else(overflow)?;
    t = t.checked_add(iv.micros).ok_or_else(overflow)?;
    check_range(t)
}

/// `timestamp - timestamp`: days and time, as PostgreSQL's timestamp_mi
/// (whole days counted apart; no months).
pub fn timestamp_diff(a: i64, b: i64) -> Result<Interval> {
    let d = a.checked_sub(b).ok_or_else(interval_overflow)?;
    let days = d / MICROS_PER_DAY;
    Ok(Interval {
        months: 0,
        days: i32::try_from(days).map_err(|_| interval_overflow())?,
        micros: d % MICROS_PER_DAY,
    })
}

/// Broken-down fields of a timestamp: year, month, day, hour, minute,
/// second, microsecond.
fn fields(micros: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / MICROS_PER_SEC;
    (
        y,
        m,
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rem % MICROS_PER_SEC,
    )
}

/// `age(a, b)`: the difference in years, months and days as a person
/// would count them (PostgreSQL's timestamp_age: field by field, borrowing
/// from the next larger field).
pub fn age(a: i64, b: i64) -> Interval {
    let (neg, (hi, lo)) = if a < b {
        (true, (b, a))
    } else {
        (false, (a, b))
    };
    let (y1, m1, d1, h1, mi1, s1, f1) = fields(hi);
    let (y2, m2, d2, h2, mi2, s2, f2) = fields(lo);
    let mut micros = (((h1 - h2) * 60 + (mi1 - mi2)) * 60 + (s1 - s2)) * MICROS_PER_SEC + (f1 - f2);
    let mut days = d1 as i64 - d2 as i64;
    let mut months = m1 as i64 - m2 as i64;
    let mut years = y1 - y2;
    if micros < 0 {
        micros += MICROS_PER_DAY;
        days -= 1;
    }
    while days < 0 {
        // Borrow the length of the earlier date's month, as PostgreSQL does.
        days += days_in_month(y2, m2) as i64;
        months -= 1;
    }
    if months < 0 {
        months += 12;
        years -= 1;
    }
    let iv = Interval {
        months: (years * 12 + months) as i32,
        days: days as i32,
        micros,
    };
    if neg {
        Interval {
            months: -iv.months,
            days: -iv.days,
            micros: -iv.micros,
        }
    } else {
        iv
    }
}

/// `date_trunc(unit, timestamp)`.
pub fn date_trunc(unit: &str, micros: i64) -> Result<i64> {
    let (y, m, d, h, mi, s, f) = fields(micros);
    let day_start = |y: i64, m: u32, d: u32| days_from_civil(y, m, d) * MICROS_PER_DAY;
    Ok(match unit.to_ascii_lowercase().as_str() {
        "microseconds" | "microsecond" => micros,
        "milliseconds" | "millisecond" => micros - f % 1000,
        "second" | "seconds" => micros - f,
        "minute" | "minutes" => micros - f - s * MICROS_PER_SEC,
        "hour" | "hours" => micros - f - (s + mi * 60) * MICROS_PER_SEC,
        "day" | "days" => day_start(y, m, d),
        "week" | "weeks" => {
            let days = micros.div_euclid(MICROS_PER_DAY);
            // 1970-01-01 was a Thursday; weeks start on Monday.
            let dow_from_monday = (days + 3).rem_euclid(7);
            (days - dow_from_monday) * MICROS_PER_DAY
        }
        "month" | "months" => day_start(y, m, 1),
        "quarter" => day_start(y, (m - 1) / 3 * 3 + 1, 1),
        "year" | "years" => day_start(y, 1, 1),
        "decade" => day_start(y - y.rem_euclid(10), 1, 1),
        "century" => day_start(((y - 1) / 100) * 100 + 1, 1, 1),
        "millennium" => day_start(((y - 1) / 1000) * 1000 + 1, 1, 1),
        _ => {
            let _ = h;
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("unit \"{unit}\" not recognized for type timestamp"),
            ));
        }
    })
}

/// `extract(field FROM timestamp)` as an exact decimal (PostgreSQL 14 and
/// later return numeric). `is_date` limits the fields to a date's.
pub fn extract_timestamp(field: &str, micros: i64, is_date: bool) -> Result<rust_decimal::Decimal> {
    use rust_decimal::Decimal;
    let (y, m, d, h, mi, s, f) = fields(micros);
    let days = micros.div_euclid(MICROS_PER_DAY);
    let secs_dec = |whole: i64, frac: i64| Decimal::new(whole * MICROS_PER_SEC + frac, 6);
    let field = field.to_ascii_lowercase();
    let time_field = matches!(
        field.as_str(),
        "hour"
            | "minute"
            | "second"
            | "milliseconds"
            | "microseconds"
            | "timezone"
            | "timezone_hour"
            | "timezone_minute"
    );
    if is_date && time_field {
        return Err(Error::new(
            ErrorKind::FeatureNotSupported,
            format!("unit \"{field}\" not supported for type date"),
        ));
    }
    let iso = || {
        // ISO year and week: the week with the year's first Thursday is 1.
        let dow = (days + 3).rem_euclid(7); // Monday = 0
        let thursday = days - dow + 3;
        let (ty, _, _) = civil_from_days(thursday);
        let week = (thursday - days_from_civil(ty, 1, 1)) / 7 + 1;
        (ty, week)
    };
    Ok(match field.as_str() {
        "year" | "years" => Decimal::from(y),
        "month" | "months" | "mon" => Decimal::from(m),
        "day" | "days" => Decimal::from(d),
        "hour" | "hours" => Decimal::from(h),
        "minute" | "minutes" => Decimal::from(mi),
        "second" | "seconds" => secs_dec(s, f),
        "milliseconds" => Decimal::new(s * MICROS_PER_SEC + f, 3),
        "microseconds" => Decimal::from(s * MICROS_PER_SEC + f),
        "quarter" => Decimal::from((m - 1) / 3 + 1),
        "dow" => Decimal::from((days + 4).rem_euclid(7)),
        "isodow" => Decimal::from((days + 3).rem_euclid(7) + 1),
        "doy" => Decimal::from(days - days_from_civil(y, 1, 1) + 1),
        "week" => Decimal::from(iso().1),
        "isoyear" => Decimal::from(iso().0),
        "decade" => Decimal::from(y.div_euclid(10)),
        "century" => Decimal::from((y + 99) / 100),
        "millennium" => Decimal::from((y + 999) / 1000),
        "epoch" => {
            if is_date {
                Decimal::from(micros / MICROS_PER_SEC)
            } else {
                Decimal::new(micros, 6)
            }
        }
        "timezone" | "timezone_hour" | "timezone_minute" => Decimal::ZERO,
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "unit \"{field}\" not recognized for type {}",
                    if is_date { "date" } else { "timestamp" }
                ),
            ));
        }
    })
}

/// `extract(field FROM interval)`.
pub fn extract_interval(field: &str, iv: &Interval) -> Result<rust_decimal::Decimal> {
    use rust_decimal::Decimal;
    let field = field.to_ascii_lowercase();
    let secs = iv.micros / MICROS_PER_SEC;
    let frac = iv.micros % MICROS_PER_SEC;
    Ok(match field.as_str() {
        "year" | "years" => Decimal::from(iv.months / 12),
        "month" | "months" | "mon" => Decimal::from(iv.months % 12),
        "day" | "days" => Decimal::from(iv.days),
        "hour" | "hours" => Decimal::from(secs / 3600),
        "minute" | "minutes" => Decimal::from(secs / 60 % 60),
        "second" | "seconds" => Decimal::new((secs % 60) * MICROS_PER_SEC + frac, 6),
        "milliseconds" => Decimal::new((secs % 60) * MICROS_PER_SEC + frac, 3),
        "microseconds" => Decimal::from((secs % 60) * MICROS_PER_SEC + frac),
        "quarter" => Decimal::from((iv.months % 12) / 3 + 1),
        "decade" => Decimal::from(iv.months / 120),
        "century" => Decimal::from(iv.months / 1200),
        "millennium" => Decimal::from(iv.months / 12000),
        "epoch" => {
            // PostgreSQL: 365.25 days to a year, 30 to a month.
            let years = (iv.months / 12) as i128;
            let months = (iv.months % 12) as i128;
            let secs_total: i128 =
                years * 31_557_600 + months * 30 * 86_400 + iv.days as i128 * 86_400;
            let micros = secs_total * 1_000_000 + iv.micros as i128;
            Decimal::from_i128_with_scale(micros, 6)
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("unit \"{field}\" not recognized for type interval"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_format() {
        for s in [
            "1970-01-01 00:00:00",
            "2024-02-29 23:59:59.5",
            "1999-12-31 12:00:00.000001",
            "1900-03-01 01:02:03",
        ] {
            assert_eq!(format_timestamp(parse_timestamp(s).unwrap()), s);
        }
        assert_eq!(
            format_timestamp(parse_timestamp("2024-01-01").unwrap()),
            "2024-01-01 00:00:00"
        );
        assert_eq!(
            format_timestamp(parse_timestamp("2024-01-01T10:20").unwrap()),
            "2024-01-01 10:20:00"
        );
        assert_eq!(parse_timestamp("1970-01-02").unwrap(), 86_400_000_000);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse_timestamp("2023-02-29").unwrap_err().kind,
            ErrorKind::DatetimeOutOfRange
        );
        assert_eq!(
            parse_timestamp("hello").unwrap_err().kind,
            ErrorKind::InvalidDatetimeFormat
        );
        assert!(parse_timestamp("2024-01-01 25:00").is_err());
        assert!(parse_timestamp("2024-01-01 10:2x").is_err());
    }

    #[test]
    fn civil_roundtrip() {
        for z in [-800_000i64, -1, 0, 1, 59, 10_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn offsets_and_dates() {
        let utc = parse_timestamptz("2024-01-01T00:00:00.000+00:00").unwrap();
        assert_eq!(format_timestamptz(utc), "2024-01-01 00:00:00+00");
        assert_eq!(
            parse_timestamptz("2024-01-01 05:30:00+05:30").unwrap(),
            utc,
            "the offset converts to UTC"
        );
        assert_eq!(parse_timestamptz("2024-01-01 00:00:00Z").unwrap(), utc);
        assert_eq!(parse_timestamptz("2023-12-31 19:00:00-05").unwrap(), utc);
        assert_eq!(
            parse_timestamp("2024-01-01 00:00:00+05").unwrap(),
            utc,
            "timestamp ignores the offset"
        );
        assert_eq!(
            format_date(parse_date("2024-02-29 13:00").unwrap()),
            "2024-02-29"
        );
        assert_eq!(
            parse_date("2024-13-01").unwrap_err().kind,
            ErrorKind::DatetimeOutOfRange
        );
        assert_eq!(
            parse_date("x").unwrap_err().message,
            "invalid input syntax for type date: \"x\""
        );
    }

    #[test]
    fn intervals_read_and_print_like_postgres() {
        let p = |s: &str| format_interval(&parse_interval(s).unwrap());
        assert_eq!(
            p("1 year 2 months 3 days 04:05:06.5"),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(p("1 day -1 hour"), "1 day -01:00:00");
        assert_eq!(p("-1 day 1 hour"), "-1 days +01:00:00");
        assert_eq!(p("0"), "00:00:00");
        assert_eq!(p("1.5 days"), "1 day 12:00:00");
        assert_eq!(p("1.5 months"), "1 mon 15 days");
        assert_eq!(p("@ 2 hours ago"), "-02:00:00");
        assert_eq!(p("90 minutes"), "01:30:00");
        assert_eq!(p("P1Y2M3DT4H5M6S"), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(p("2 weeks"), "14 days");
        assert_eq!(p("3 4:05:06"), "3 days 04:05:06");
        assert!(parse_interval("1 fortnight").is_err());
        assert_eq!(
            parse_interval("1 mon").unwrap().span(),
            parse_interval("30 days").unwrap().span()
        );
    }

    #[test]
    fn calendar_arithmetic() {
        let t = |s: &str| parse_timestamp(s).unwrap();
        let iv = |s: &str| parse_interval(s).unwrap();
        assert_eq!(
            format_timestamp(add_interval(t("2024-01-31"), &iv("1 month")).unwrap()),
            "2024-02-29 00:00:00"
        );
        assert_eq!(
            format_timestamp(add_interval(t("2024-03-01"), &iv("-1 day")).unwrap()),
            "2024-02-29 00:00:00"
        );
        assert_eq!(
            format_interval(&timestamp_diff(t("2024-01-02 01:00"), t("2024-01-01")).unwrap()),
            "1 day 01:00:00"
        );
        assert_eq!(
            format_interval(&age(t("2024-03-15"), t("2023-01-31 12:00"))),
            "1 year 1 mon 14 days 12:00:00"
        );
        assert_eq!(
            format_timestamp(date_trunc("week", t("2024-01-04 10:00")).unwrap()),
            "2024-01-01 00:00:00"
        );
        assert_eq!(
            extract_timestamp("dow", t("2024-01-07"), true)
                .unwrap()
                .to_string(),
            "0"
        );
        assert_eq!(
            extract_timestamp("week", t("2021-01-03"), true)
                .unwrap()
                .to_string(),
            "53"
        );
        assert_eq!(
            extract_timestamp("epoch", t("1970-01-02 00:00:01.5"), false)
                .unwrap()
                .to_string(),
            "86401.500000"
        );
    }
}
