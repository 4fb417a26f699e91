//! `LIKE` / `ILIKE` matching: `%` matches any sequence, `_` any one
//! character, the escape character (default `\`) makes the next character
//! literal.

use kv::{Error, ErrorKind, Result};

enum Tok {
    /// `%`
    Any,
    /// `_`
    One,
    /// A literal character.
    Lit(char),
}

fn compile(pattern: &str, case_insensitive: bool, escape: Option<char>) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(n) => toks.push(Tok::Lit(fold(n, case_insensitive))),
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidEscape,
                        "LIKE pattern must not end with escape character",
                    ));
                }
            }
        } else if c == '%' {
            if !matches!(toks.last(), Some(Tok::Any)) {
                toks.push(Tok::Any);
            }
        } else if c == '_' {
            toks.push(Tok::One);
        } else {
            toks.push(Tok::Lit(fold(c, case_insensitive)));
        }
    }
    Ok(toks)
}

fn fold(c: char, case_insensitive: bool) -> char {
    if case_insensitive {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    }
}

/// True when `s` matches `pattern`.
pub fn matches(
    s: &str,
    pattern: &str,
    case_insensitive: bool,
    escape: Option<char>,
) -> Result<bool> {
    let toks = compile(pattern, case_insensitive, escape)?;
    let text: Vec<char> = s.chars().map(|c| fold(c, case_insensitive)).collect();
    // Greedy matching with backtracking to the last `%` (linear in practice).
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::One) => {
                t += 1;
                p += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return Ok(false),
            },
        }
    }
    Ok(toks[p..].iter().all(|tok| matches!(tok, Tok::Any)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, p: &str) -> bool {
        matches(s, p, false, Some('\\')).unwrap()
    }

    #[test]
    fn patterns() {
        assert!(m("abc", "a%"));
        assert!(m("abc", "a_c"));
        assert!(m("abc", "%"));
        assert!(m("", "%"));
        assert!(!m("abc", "%d"));
        assert!(m("a%c", "a\\%c"));
        assert!(!m("abc", "a\\%c"));
        assert!(m("mississippi", "%iss%pi"));
        assert!(!m("mississippi", "%iss%px"));
        assert!(m("aXbXc", "a%b%c"));
        assert!(matches("aBc", "ab%", true, Some('\\')).unwrap());
        assert!(matches("a_c", "a!_c", false, Some('!')).unwrap());
        assert!(matches("abc", "ab\\", false, Some('\\')).is_err());
    }
}
