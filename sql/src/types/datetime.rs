//! TIMESTAMP input and output (ISO format, microseconds, no time zone).

use kv::{Error, ErrorKind, Result};

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

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

fn invalid(s: &str) -> Error {
    Error::new(
        ErrorKind::InvalidTextRepresentation,
        format!("invalid input syntax for type timestamp: \"{s}\""),
    )
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]]` into microseconds since the
/// Unix epoch.
pub fn parse_timestamp(input: &str) -> Result<i64> {
    let s = input.trim();
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
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
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1..=294_276).contains(&y) {
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
    Ok(days_from_civil(y, m, d) * SECS_PER_DAY * MICROS_PER_SEC + micros_of_day)
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
            ErrorKind::InvalidTextRepresentation
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
}
