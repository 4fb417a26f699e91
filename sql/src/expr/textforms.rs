//! The text forms of composite values, as PostgreSQL writes them: a
//! one-dimensional array (`{a,"b c",NULL}`) and a JSON string. Arrays have
//! no type of their own yet: the system catalog's array columns and
//! `ARRAY(subquery)` are text in this form.

use kv::{Error, ErrorKind, Result};

/// Appends `s` as a JSON string.
pub(super) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The elements of a one-dimensional array's text form (`{a,"b c",NULL}`;
/// `None` for NULL).
pub(crate) fn array_items(text: &str) -> Result<Vec<Option<String>>> {
    let malformed = || {
        Error::new(
            ErrorKind::InvalidTextRepresentation,
            format!("malformed array literal: \"{text}\""),
        )
    };
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(malformed)?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Ok(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next().ok_or_else(malformed)? {
                    '"' => break,
                    '\\' => item.push(chars.next().ok_or_else(malformed)?),
                    c => item.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            chars.next();
            if quoted && !c.is_whitespace() {
                return Err(malformed());
            }
            if !quoted {
                item.push(c);
            }
        }
        let item = if quoted {
            Some(item)
        } else {
            let t = item.trim();
            if t.eq_ignore_ascii_case("null") {
                None
            } else {
                Some(t.to_string())
            }
        };
        items.push(item);
        if chars.next().is_none() {
            return Ok(items);
        }
    }
}
