//! `COPY`'s text and CSV formats, as PostgreSQL reads and writes them.
//!
//! - **text**: one row per line, fields separated by the delimiter (tab),
//!   `\N` for NULL (or the `NULL` option), backslash escapes (`\t`, `\n`,
//!   `\\`, `\r`, `\b`, `\f`, `\v`, octal `\NNN`, hex `\xHH`); a line `\.`
//!   ends the data.
//! - **csv**: fields separated by the delimiter (`,`), quoted with the
//!   quote character (`"`) when they hold the delimiter, a quote, a line
//!   break or leading/trailing blanks; a doubled quote (or the escape
//!   character) inside quotes stands for one; an unquoted empty field is
//!   NULL (or the `NULL` option), a quoted one the empty string; quoted
//!   fields may span lines; `HEADER` skips/writes one line of names.
//!
//! Parsing is incremental ([`Parser::feed`]): data arrives in CopyData
//! messages that split lines anywhere.

use kv::{Error, ErrorKind, Result, bail};
use sqlparser::ast;

/// The format and its options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// CSV rather than text.
    pub csv: bool,
    /// The field separator.
    pub delimiter: char,
    /// The text of a NULL field.
    pub null: String,
    /// A first line of column names (CSV only).
    pub header: bool,
    /// CSV's quote character.
    pub quote: char,
    /// CSV's escape character inside quotes (the quote by default).
    pub escape: char,
}

impl Options {
    /// The options of a `COPY` statement (`WITH (…)` or the pre-9.0
    /// words).
    pub fn from_ast(options: &[ast::CopyOption], legacy: &[ast::CopyLegacyOption]) -> Result<Self> {
        let mut csv = false;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = None;
        let mut escape = None;
        for o in options {
            use ast::CopyOption as O;
            match o {
                O::Format(f) => match f.value.to_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    "binary" => bail!(
                        FeatureNotSupported,
                        "COPY in binary format is not supported yet"
                    ),
                    other => bail!(
                        InvalidParameterValue,
                        "COPY format \"{other}\" not recognized"
                    ),
                },
                O::Delimiter(c) => delimiter = Some(*c),
                O::Null(s) => null = Some(s.clone()),
                O::Header(h) => header = *h,
                O::Quote(c) => quote = Some(*c),
                O::Escape(c) => escape = Some(*c),
                O::Encoding(e) => {
                    let e = e.to_uppercase().replace(['-', '_'], "");
                    if e != "UTF8" && e != "SQLASCII" {
                        bail!(
                            FeatureNotSupported,
                            "COPY encoding {e} is not supported: data is UTF8"
                        );
                    }
                }
                O::Freeze(_) => {}
                other => bail!(
                    FeatureNotSupported,
                    "COPY option {other} is not supported yet"
                ),
            }
        }
        for o in legacy {
            use ast::CopyLegacyOption as L;
            match o {
                L::Binary => bail!(
                    FeatureNotSupported,
                    "COPY in binary format is not supported yet"
                ),
                L::Delimiter(c) => delimiter = Some(*c),
                L::Null(s) => null = Some(s.clone()),
                L::Header => header = true,
                L::Csv(items) => {
                    csv = true;
                    for i in items {
                        use ast::CopyLegacyCsvOption as C;
                        match i {
                            C::Header => header = true,
                            C::Quote(c) => quote = Some(*c),
                            C::Escape(c) => escape = Some(*c),
                            other => {
                                bail!(
                                    FeatureNotSupported,
                                    "COPY option {other} is not supported yet"
                                )
                            }
                        }
                    }
                }
                other => bail!(FeatureNotSupported, "COPY option {other} is not supported"),
            }
        }
        for (what, c) in [
            ("delimiter", delimiter),
            ("quote", quote),
            ("escape", escape),
        ] {
            if c.is_some_and(|c| !c.is_ascii()) {
                bail!(
                    FeatureNotSupported,
                    "COPY {what} must be a single one-byte character"
                );
            }
        }
        if !csv && (quote.is_some() || escape.is_some()) {
            bail!(FeatureNotSupported, "COPY quote available only in CSV mode");
        }
        let delimiter = delimiter.unwrap_or(if csv { ',' } else { '\t' });
        let quote = quote.unwrap_or('"');
        if matches!(delimiter, '\n' | '\r' | '\\') && !csv || matches!(delimiter, '\n' | '\r') {
            bail!(
                InvalidParameterValue,
                "COPY delimiter cannot be newline, carriage return or backslash"
            );
        }
        if csv && delimiter == quote {
            bail!(
                InvalidParameterValue,
                "COPY delimiter and quote must be different"
            );
        }
        Ok(Options {
            csv,
            delimiter,
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }

    /// One row as a line of this format (with its newline).
    pub fn format_row(&self, fields: &[Option<String>], out: &mut String) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match f {
                None => out.push_str(&self.null),
                Some(s) if self.csv => self.csv_field(s, out),
                Some(s) => self.text_field(s, out),
            }
        }
        out.push('\n');
    }

    fn text_field(&self, s: &str, out: &mut String) {
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == self.delimiter => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }

    fn csv_field(&self, s: &str, out: &mut String) {
        let needs = s == self.null
            || s.is_empty()
            || s.starts_with(' ')
            || s.ends_with(' ')
            || s.chars().any(|c| {
                c == self.delimiter || c == self.quote || c == '\n' || c == '\r' || c == self.escape
            })
            || s == "\\.";
        if !needs {
            out.push_str(s);
            return;
        }
        out.push(self.quote);
        for c in s.chars() {
            if c == self.quote || c == self.escape {
                out.push(self.escape);
            }
            out.push(c);
        }
        out.push(self.quote);
    }
}

/// The longest record (line, or CSV record over several lines) COPY
/// accepts, as PostgreSQL bounds a line.
const MAX_RECORD: usize = 1 << 30;

/// Reads rows from COPY data as it arrives.
pub struct Parser {
    options: Options,
    /// Bytes not yet parsed (an incomplete line or record).
    pending: Vec<u8>,
    /// How far into `pending` the search for the end of its first record
    /// got, and whether it was inside CSV quotes there: a record split
    /// over many CopyData messages is scanned once.
    scanned: (usize, bool),
    /// The line number the next record starts on (1-based).
    pub line: u64,
    /// `\.` was seen: the rest is ignored.
    ended: bool,
    /// The header line is still to be skipped.
    skip_header: bool,
}

/// A row's fields (`None`: NULL) and the line it started on.
pub type Record = (u64, Vec<Option<String>>);

impl Parser {
    /// A parser for data in `options`' format.
    pub fn new(options: Options) -> Self {
        let skip_header = options.header;
        Parser {
            options,
            pending: Vec::new(),
            scanned: (0, false),
            line: 1,
            ended: false,
            skip_header,
        }
    }

    /// Adds data; returns the records it completes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Record>> {
        self.pending.extend_from_slice(data);
        self.take_records(false)
    }

    /// The data ended: the last record may lack its newline.
    pub fn finish(&mut self) -> Result<Vec<Record>> {
        self.take_records(true)
    }

    fn take_records(&mut self, last: bool) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut start = 0;
        while !self.ended {
            let Some(end) = self.record_end(start, last)? else {
                if self.pending.len() - start > MAX_RECORD {
                    bail!(
                        ProgramLimitExceeded,
                        "COPY line {} is longer than 1 GB",
                        self.line
                    );
                }
                break;
            };
            self.scanned = (0, false);
            let raw = &self.pending[start..end];
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let lines = (self.pending[start..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64)
                .max(1);
            let text = std::str::from_utf8(raw).map_err(|_| {
                Error::new(
                    ErrorKind::CharacterNotInRepertoire,
                    format!(
                        "invalid byte sequence for encoding \"UTF8\" (COPY line {})",
                        self.line
                    ),
                )
            })?;
            let line = self.line;
            self.line += lines;
            start = end;
            if text == "\\." {
                self.ended = true;
                break;
            }
            if std::mem::take(&mut self.skip_header) {
                continue;
            }
            let fields = if self.options.csv {
                self.csv_fields(text, line)?
            } else {
                self.text_fields(text, line)?
            };
            out.push((line, fields));
        }
        self.pending.drain(..start.min(self.pending.len()));
        if start > 0 {
            self.scanned = (0, false);
        }
        if self.ended {
            self.pending.clear();
        }
        Ok(out)
    }

    /// Where the record starting at `start` ends (after its newline), if
    /// it is complete: the next newline outside CSV quotes, or the end of
    /// the data when it is the last.
    fn record_end(&mut self, start: usize, last: bool) -> Result<Option<usize>> {
        let data = &self.pending[start..];
        if data.is_empty() {
            return Ok(None);
        }
        // Where an earlier call stopped looking (for the first record only:
        // later ones in this call start fresh).
        let (from, mut quoted) = if start == 0 { self.scanned } else { (0, false) };
        let from = from.min(data.len());
        if !self.options.csv {
            return Ok(match data[from..].iter().position(|&b| b == b'\n') {
                Some(i) => Some(start + from + i + 1),
                None if last => Some(self.pending.len()),
                None => {
                    self.scanned = (data.len(), false);
                    None
                }
            });
        }
        // The options are ASCII (checked), so bytes compare exactly.
        let (quote, escape) = (self.options.quote as u8, self.options.escape as u8);
        let mut i = from;
        while i < data.len() {
            let b = data[i];
            if quoted && b == escape && escape != quote {
                if i + 1 >= data.len() {
                    break; // what it escapes has not arrived yet
                }
                i += 2;
                continue;
            }
            if b == quote {
                quoted = !quoted;
            } else if b == b'\n' && !quoted {
                return Ok(Some(start + i + 1));
            }
            i += 1;
        }
        if last {
            if quoted {
                bail!(
                    BadCopyFileFormat,
                    "unterminated CSV quoted field (COPY line {})",
                    self.line
                );
            }
            return Ok(Some(self.pending.len()));
        }
        if start == 0 {
            self.scanned = (i, quoted);
        }
        Ok(None)
    }

    fn text_fields(&self, text: &str, line: u64) -> Result<Vec<Option<String>>> {
        let d = self.options.delimiter;
        let mut fields = Vec::new();
        // The field's bytes: octal and hex escapes give bytes, which must
        // form UTF-8 together with the rest.
        let mut cur: Vec<u8> = Vec::new();
        // The raw field (before unescaping), compared with the NULL text.
        let mut raw = String::new();
        let mut chars = text.chars().peekable();
        let bad = |msg: &str| {
            Error::new(
                ErrorKind::BadCopyFileFormat,
                format!("{msg} (COPY line {line})"),
            )
        };
        let push = |cur: &mut Vec<u8>, c: char| {
            let mut b = [0u8; 4];
            cur.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        };
        loop {
            match chars.next() {
                None => {
                    fields.push(self.text_value(cur, &raw, line)?);
                    break;
                }
                Some(c) if c == d => {
                    fields.push(self.text_value(std::mem::take(&mut cur), &raw, line)?);
                    raw.clear();
                }
                Some('\\') => {
                    raw.push('\\');
                    let Some(e) = chars.next() else {
                        return Err(bad("end-of-copy marker corrupt"));
                    };
                    raw.push(e);
                    match e {
                        'b' => cur.push(8),
                        'f' => cur.push(12),
                        'n' => cur.push(b'\n'),
                        'r' => cur.push(b'\r'),
                        't' => cur.push(b'\t'),
                        'v' => cur.push(11),
                        '0'..='7' => {
                            let mut n = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match chars.peek().and_then(|c| c.to_digit(8)) {
                                    Some(v) => {
                                        n = n * 8 + v;
                                        raw.extend(chars.next());
                                    }
                                    None => break,
                                }
                            }
                            cur.push((n & 0xff) as u8);
                        }
                        'x' if chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) => {
                            let mut n = 0;
                            for _ in 0..2 {
                                match chars.peek().and_then(|c| c.to_digit(16)) {
                                    Some(v) => {
                                        n = n * 16 + v;
                                        raw.extend(chars.next());
                                    }
                                    None => break,
                                }
                            }
                            cur.push(n as u8);
                        }
                        other => push(&mut cur, other),
                    }
                }
                Some(c) => {
                    raw.push(c);
                    push(&mut cur, c);
                }
            }
        }
        Ok(fields)
    }

    fn text_value(&self, value: Vec<u8>, raw: &str, line: u64) -> Result<Option<String>> {
        if raw == self.options.null {
            return Ok(None);
        }
        let invalid = || {
            Error::new(
                ErrorKind::CharacterNotInRepertoire,
                format!("invalid byte sequence for encoding \"UTF8\" (COPY line {line})"),
            )
        };
        if value.contains(&0) {
            return Err(invalid());
        }
        String::from_utf8(value).map(Some).map_err(|_| invalid())
    }

    fn csv_fields(&self, text: &str, line: u64) -> Result<Vec<Option<String>>> {
        let o = &self.options;
        let mut fields = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut value = String::new();
            let mut quoted = false;
            let mut raw = String::new();
            loop {
                match chars.peek().copied() {
                    None => break,
                    Some(c) if c == o.delimiter => break,
                    Some(c) if c == o.quote => {
                        chars.next();
                        quoted = true;
                        loop {
                            match chars.next() {
                                None => bail!(
                                    BadCopyFileFormat,
                                    "unterminated CSV quoted field (COPY line {line})"
                                ),
                                Some(c) if c == o.escape && chars.peek() == Some(&o.quote) => {
                                    chars.next();
                                    value.push(o.quote);
                                }
                                Some(c)
                                    if c == o.escape
                                        && o.escape != o.quote
                                        && chars.peek() == Some(&o.escape) =>
                                {
                                    chars.next();
                                    value.push(o.escape);
                                }
                                Some(c) if c == o.quote => break,
                                Some(c) => value.push(c),
                            }
                        }
                    }
                    Some(c) => {
                        chars.next();
                        raw.push(c);
                        value.push(c);
                    }
                }
            }
            fields.push(if !quoted && raw == o.null {
                None
            } else {
                Some(value)
            });
            if chars.next().is_none() {
                return Ok(fields);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Options {
        Options::from_ast(&[], &[]).unwrap()
    }

    fn csv() -> Options {
        Options::from_ast(&[ast::CopyOption::Format(ast::Ident::new("csv"))], &[]).unwrap()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn text_lines_split_anywhere_and_unescape() {
        let mut p = Parser::new(text());
        let mut rows = p.feed(b"1\ta\\tb\t\\N\n2\tx").unwrap();
        assert_eq!(rows.len(), 1);
        rows.extend(p.feed(b"\\\\y\t\\101\\x42\n\\.\nignored\n").unwrap());
        rows.extend(p.finish().unwrap());
        assert_eq!(
            rows,
            vec![
                (1, vec![s("1"), s("a\tb"), None]),
                (2, vec![s("2"), s("x\\y"), s("AB")])
            ]
        );
    }

    #[test]
    fn csv_quotes_nulls_header_and_multiline_fields() {
        let mut o = csv();
        o.header = true;
        let mut p = Parser::new(o);
        let mut rows = p.feed(b"id,name\n1,\"a,b\"\n2,,\"\"\n3,\"line\n").unwrap();
        rows.extend(p.feed(b"two \"\"q\"\"\"\n4,last").unwrap());
        rows.extend(p.finish().unwrap());
        assert_eq!(
            rows,
            vec![
                (2, vec![s("1"), s("a,b")]),
                (3, vec![s("2"), None, s("")]),
                (4, vec![s("3"), s("line\ntwo \"q\"")]),
                (6, vec![s("4"), s("last")]),
            ]
        );
        let mut p = Parser::new(csv());
        p.feed(b"1,\"open").unwrap();
        assert!(p.finish().is_err());
    }

    #[test]
    fn escapes_are_bytes_and_records_split_anywhere() {
        // \303\251 is é in UTF-8; a NUL or a broken sequence is refused.
        let mut p = Parser::new(text());
        let rows = p.feed(b"caf\\303\\251\t\\xe2\\x82\\xac\n").unwrap();
        assert_eq!(rows, vec![(1, vec![s("café"), s("€")])]);
        assert!(Parser::new(text()).feed(b"a\\000b\n").is_err());
        assert!(Parser::new(text()).feed(b"\\303\n").is_err());
        // A CSV record with multi-byte text, fed one byte at a time.
        let mut p = Parser::new(csv());
        let data = "1,\"é,\"\"ü\"\"\nline\"\n2,ß\n".as_bytes();
        let mut rows = Vec::new();
        for b in data {
            rows.extend(p.feed(std::slice::from_ref(b)).unwrap());
        }
        rows.extend(p.finish().unwrap());
        assert_eq!(
            rows,
            vec![
                (1, vec![s("1"), s("é,\"ü\"\nline")]),
                (3, vec![s("2"), s("ß")])
            ]
        );
    }

    #[test]
    fn non_ascii_options_are_refused() {
        let quote = ast::CopyOption::Quote('é');
        let format = ast::CopyOption::Format(ast::Ident::new("csv"));
        assert!(Options::from_ast(&[format, quote], &[]).is_err());
    }

    #[test]
    fn rows_format_back_to_what_parses() {
        for o in [text(), csv()] {
            let row = vec![s("a\tb,c"), None, s(""), s("q\"x\ny"), s("\\")];
            let mut line = String::new();
            o.format_row(&row, &mut line);
            let mut p = Parser::new(o.clone());
            let mut got = p.feed(line.as_bytes()).unwrap();
            got.extend(p.finish().unwrap());
            assert_eq!(got, vec![(1, row.clone())], "{line:?}");
        }
    }
}
