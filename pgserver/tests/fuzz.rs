//! A seeded, bounded fuzzer against the real binary: random SQL
//! (expressions of random shape and depth over a small schema, long lists
//! and chains, random statements, mangled text) in both protocols, and
//! random protocol garbage on raw sockets. It fails when the server dies,
//! when a statement gets no answer within the watchdog's time, when a
//! connection breaks without an error on well-formed messages, or when the
//! server's memory grows past a bound.
//!
//! `FUZZ_SEED` replays one run (the seed is printed); `FUZZ_CASES` sets
//! the number of SQL statements (default 2000; garbage streams are a
//! sixth of that).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;

use common::{Mako, Rng, connect, peak_rss_kib};

/// The longest any one statement may take to answer.
const WATCHDOG: Duration = Duration::from_secs(20);

const COLUMNS: &[&str] = &["a", "b", "c", "d", "e", "f1.a", "x", "y", "z"];

/// FROM clauses over the fuzz schema.
const FROMS: &[&str] = &[
    "f1",
    "f2",
    "f1, f2",
    "f1 JOIN f2 ON a = x",
    "f1 LEFT JOIN f2 ON a = y",
];

fn literal(r: &mut Rng) -> String {
    match r.below(12) {
        0 => "NULL".into(),
        1 => r.pick(&["true", "false"]).into(),
        2 => format!("{}", r.next() as i64),
        3 => format!("{}", r.below(100) as i64 - 50),
        4 => format!("{}.{}", r.below(100_000), r.below(1000)),
        5 => r
            .pick(&[
                "'NaN'::float8",
                "'Infinity'::float8",
                "1e308",
                "-1e-308",
                "0.0",
            ])
            .into(),
        6 => format!("'{}'", "ab'c".repeat(r.below(4)).replace('\'', "''")),
        7 => r
            .pick(&[
                "'2024-01-02 03:04:05'",
                "'x'",
                "''",
                "'%_'",
                "'\\\\'",
                "E'\\n'",
            ])
            .into(),
        8 => format!("{}::numeric", r.next() as i64),
        9 => "2147483647".into(),
        10 => "-9223372036854775808".into(),
        _ => format!("'{}'", "é".repeat(r.below(50))),
    }
}

fn expr(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(25) {
        return if r.chance(50) {
            r.pick(COLUMNS).into()
        } else {
            literal(r)
        };
    }
    let d = depth - 1;
    match r.below(16) {
        0 | 1 => format!(
            "({} {} {})",
            expr(r, d),
            r.pick(&[
                "+", "-", "*", "/", "%", "||", "=", "<>", "<", ">=", "AND", "OR"
            ]),
            expr(r, d)
        ),
        2 => format!("(NOT {})", expr(r, d)),
        3 => format!("(-{})", expr(r, d)),
        4 => format!(
            "{}({})",
            r.pick(&[
                "abs", "length", "upper", "lower", "round", "ceil", "floor", "trim"
            ]),
            expr(r, d)
        ),
        5 => format!(
            "{}({}, {})",
            r.pick(&["coalesce", "nullif", "mod", "round", "strpos", "concat"]),
            expr(r, d),
            expr(r, d)
        ),
        6 => format!("substr({}, {}, {})", expr(r, d), expr(r, d), expr(r, d)),
        7 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            expr(r, d),
            expr(r, d),
            expr(r, d)
        ),
        8 => format!(
            "CAST({} AS {})",
            expr(r, d),
            r.pick(&[
                "INT",
                "BIGINT",
                "SMALLINT",
                "TEXT",
                "NUMERIC(5,2)",
                "FLOAT8",
                "BOOLEAN",
                "VARCHAR(3)",
                "TIMESTAMP",
            ])
        ),
        9 => {
            let n = if r.chance(10) { 2_000 } else { 1 + r.below(6) };
            let items: Vec<String> = (0..n).map(|_| literal(r)).collect();
            format!("({} IN ({}))", expr(r, d), items.join(", "))
        }
        10 => format!("({} BETWEEN {} AND {})", expr(r, d), expr(r, d), expr(r, d)),
        11 => format!("({} LIKE {})", expr(r, d), expr(r, d)),
        12 => format!(
            "({} IS {}NULL)",
            expr(r, d),
            if r.chance(50) { "NOT " } else { "" }
        ),
        13 => format!("(SELECT max(a) FROM f1 WHERE {})", expr(r, d)),
        14 => {
            // A long flat chain.
            let max = if r.chance(10) { 3_000 } else { 20 };
            let n = 2 + r.below(max);
            let op = r.pick(&[" + ", " || ", " AND ", " OR "]);
            let items: Vec<String> = (0..n).map(|_| literal(r)).collect();
            format!("({})", items.join(op))
        }
        _ => format!("EXISTS (SELECT 1 FROM f2 WHERE {})", expr(r, d)),
    }
}

/// A numeric expression that usually binds (type-aware, unlike [`expr`],
/// so that execution is exercised and not only the binder's errors).
fn num(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(30) {
        return match r.below(6) {
            0 => r.pick(&["a", "c", "d", "x", "y"]).into(),
            1 => "NULL".into(),
            2 => format!("{}", r.next() as i32),
            3 => format!("{}.{}", r.below(1000), r.below(100)),
            _ => format!("{}", r.below(20)),
        };
    }
    let d = depth - 1;
    match r.below(8) {
        0..=2 => format!(
            "({} {} {})",
            num(r, d),
            r.pick(&["+", "-", "*", "/", "%"]),
            num(r, d)
        ),
        3 => format!("abs({})", num(r, d)),
        4 => format!("coalesce({}, {})", num(r, d), num(r, d)),
        5 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            boolean(r, d),
            num(r, d),
            num(r, d)
        ),
        6 => format!("length({})", text(r, d)),
        _ => format!("(SELECT count(*) FROM f2 WHERE {})", boolean(r, d)),
    }
}

fn text(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(30) {
        return match r.below(3) {
            0 => r.pick(&["b", "z"]).into(),
            1 => format!("'t{}'", r.below(10)),
            _ => "NULL".into(),
        };
    }
    let d = depth - 1;
    match r.below(5) {
        0 => format!("({} || {})", text(r, d), text(r, d)),
        1 => format!("upper({})", text(r, d)),
        2 => format!("substr({}, {}, {})", text(r, d), num(r, d), num(r, d)),
        3 => format!("CAST({} AS TEXT)", num(r, d)),
        _ => format!("coalesce({}, 'none')", text(r, d)),
    }
}

fn boolean(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(20) {
        return match r.below(4) {
            0 => "e".into(),
            1 => r.pick(&["true", "false", "NULL"]).into(),
            _ => format!(
                "({} {} {})",
                num(r, 0),
                r.pick(&["=", "<", ">=", "<>"]),
                num(r, 0)
            ),
        };
    }
    let d = depth - 1;
    match r.below(8) {
        0 | 1 => format!(
            "({} {} {})",
            boolean(r, d),
            r.pick(&["AND", "OR"]),
            boolean(r, d)
        ),
        2 => format!("(NOT {})", boolean(r, d)),
        3 => format!(
            "({} {} {})",
            num(r, d),
            r.pick(&["=", "<", ">", "<="]),
            num(r, d)
        ),
        4 => format!("({} LIKE 'b%')", text(r, d)),
        5 => format!("({} IS NULL)", num(r, d)),
        6 => {
            let max = if r.chance(10) { 1_000 } else { 8 };
            let n = 1 + r.below(max);
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("({} IN ({}))", num(r, d), items.join(", "))
        }
        _ => format!("({} BETWEEN {} AND {})", num(r, d), num(r, d), num(r, d)),
    }
}

/// A statement that usually binds, over the fuzz schema.
fn typed_statement(r: &mut Rng) -> String {
    let depth = 1 + r.below(5);
    match r.below(7) {
        0..=2 => {
            let from = r.pick(FROMS);
            let mut s = format!(
                "SELECT {}, {}, {} FROM {from} WHERE {}",
                num(r, depth),
                text(r, depth),
                boolean(r, depth),
                boolean(r, depth)
            );
            if r.chance(40) {
                s += " ORDER BY 1, 2";
            }
            if r.chance(30) {
                s += &format!(" LIMIT {}", r.below(20));
            }
            s
        }
        3 => format!(
            "SELECT {}, count(*), sum({}), max({}) FROM f1 GROUP BY 1 HAVING count(*) > {}",
            num(r, 1),
            num(r, depth),
            text(r, depth),
            r.below(3)
        ),
        4 => format!(
            "UPDATE f1 SET c = {}, b = {} WHERE {}",
            num(r, depth),
            text(r, depth),
            boolean(r, depth)
        ),
        5 => format!(
            "INSERT INTO f2 VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
            r.below(100),
            r.below(100),
            text(r, depth)
        ),
        _ => format!("DELETE FROM f2 WHERE {} AND x > 40", boolean(r, depth)),
    }
}

fn statement(r: &mut Rng) -> String {
    if r.chance(60) {
        return typed_statement(r);
    }
    let depth = 1 + r.below(6);
    let stmt = match r.below(10) {
        0..=3 => {
            let cols: Vec<String> = (0..1 + r.below(3)).map(|_| expr(r, depth)).collect();
            let from = r.pick(FROMS);
            let mut s = format!("SELECT {} FROM {from}", cols.join(", "));
            if r.chance(60) {
                s += &format!(" WHERE {}", expr(r, depth));
            }
            if r.chance(20) {
                s += " GROUP BY 1";
            }
            if r.chance(30) {
                s += &format!(" ORDER BY {}", 1 + r.below(cols.len()));
            }
            if r.chance(30) {
                s += &format!(" LIMIT {}", literal(r));
            }
            s
        }
        4 => format!(
            "INSERT INTO f1 VALUES ({}, {}, {}, {}, {})",
            expr(r, 2),
            expr(r, 2),
            expr(r, 2),
            expr(r, 2),
            expr(r, 2)
        ),
        5 => format!(
            "UPDATE f1 SET b = {} WHERE {}",
            expr(r, depth),
            expr(r, depth)
        ),
        6 => format!("DELETE FROM f2 WHERE {}", expr(r, depth)),
        7 => {
            let max = if r.chance(10) { 2_000 } else { 10 };
            let n = 2 + r.below(max);
            let parts: Vec<String> = (0..n).map(|_| format!("SELECT {}", literal(r))).collect();
            parts.join(r.pick(&[" UNION ", " UNION ALL ", " EXCEPT ", " INTERSECT "]))
        }
        8 => format!(
            "SELECT count(*), sum(a), min(b), max(c) FROM f1 WHERE {}",
            expr(r, depth)
        ),
        _ => {
            // Deep nesting of one kind.
            let n = 1 + r.below(200);
            let (open, close) = *[("(", ")"), ("abs(", ")"), ("(SELECT ", ")"), ("NOT (", ")")]
                .get(r.below(4))
                .unwrap();
            format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
        }
    };
    if r.chance(10) { mangle(r, &stmt) } else { stmt }
}

/// Cuts, duplicates or garbles a piece of a statement.
fn mangle(r: &mut Rng, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let at = r.below(chars.len());
    let mut out: String = chars[..at].iter().collect();
    match r.below(4) {
        0 => {}
        1 => out.push_str(r.pick(&["(", ")", "'", ",", "SELECT", "$1", "::", ";", "\"", "\\"])),
        2 => out.extend(chars[at..].iter().take(r.below(10))),
        _ => out.push_str(&"(".repeat(r.below(100))),
    }
    out.extend(chars[at..].iter());
    out
}

/// Sends random bytes after (or instead of) a valid startup: the server
/// must answer or close, never die.
fn garbage(r: &mut Rng, port: u16) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        panic!("cannot connect to the server")
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut bytes = Vec::new();
    if r.chance(70) {
        // A valid StartupMessage (protocol 3.0, user=mako).
        let body = b"\x00\x03\x00\x00user\x00mako\x00\x00";
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(body);
    }
    if r.chance(50) {
        // Well-formed messages with random fields: past the server's
        // checks, to pgwire's handling and ours.
        for _ in 0..1 + r.below(8) {
            bytes.extend_from_slice(&well_formed(r));
        }
        let _ = s.write_all(&bytes);
        let mut sink = [0u8; 4096];
        let _ = s.read(&mut sink);
        return;
    }
    for _ in 0..1 + r.below(5) {
        let kind = *[
            b'Q', b'P', b'B', b'E', b'D', b'S', b'H', b'C', b'd', b'f', b'c', b'X', b'p', 0,
        ]
        .get(r.below(14))
        .unwrap();
        let len = match r.below(6) {
            0 => r.next() as u32,   // absurd lengths
            1 => 0x7fff_ffff,       // the largest a client may declare
            2 => r.below(4) as u32, // shorter than the length field
            _ => 4 + r.below(300) as u32,
        };
        bytes.push(kind);
        bytes.extend_from_slice(&len.to_be_bytes());
        let body = (len as usize).saturating_sub(4).min(300);
        for _ in 0..body {
            bytes.push(if r.chance(30) { 0 } else { r.next() as u8 });
        }
    }
    let _ = s.write_all(&bytes);
    let mut sink = [0u8; 4096];
    let _ = s.read(&mut sink);
}

/// A message laid out as the protocol says, with random contents: names
/// of statements and portals that may not exist, parameter counts and
/// formats that may not match, any message type in any state.
fn well_formed(r: &mut Rng) -> Vec<u8> {
    let name = |r: &mut Rng| -> Vec<u8> {
        let mut n = match r.below(3) {
            0 => Vec::new(),
            1 => b"s1".to_vec(),
            _ => format!("p{}", r.below(1000)).into_bytes(),
        };
        n.push(0);
        n
    };
    let sql = |r: &mut Rng| -> Vec<u8> {
        let mut q = [
            "SELECT 1",
            "SELECT $1",
            "SELECT $1::int + $2",
            "INSERT INTO f1 VALUES ($1, $2)",
            "BEGIN",
            "COMMIT",
            "",
            "SELEC",
            "SELECT * FROM f1 WHERE a = $1",
        ][r.below(9)]
        .as_bytes()
        .to_vec();
        q.push(0);
        q
    };
    let i16s = |r: &mut Rng, n: usize, vals: &[i16]| -> Vec<u8> {
        let mut b = (n as i16).to_be_bytes().to_vec();
        for _ in 0..n {
            b.extend_from_slice(&vals[r.below(vals.len())].to_be_bytes());
        }
        b
    };
    let (ty, body): (u8, Vec<u8>) = match r.below(11) {
        0 => (b'Q', sql(r)),
        1 => {
            let mut b = name(r);
            b.extend(sql(r));
            let n = r.below(4);
            b.extend_from_slice(&(n as i16).to_be_bytes());
            for _ in 0..n {
                let oid: i32 = [0, 16, 20, 23, 25, 1700, 701, 9999, -1][r.below(9)];
                b.extend_from_slice(&oid.to_be_bytes());
            }
            (b'P', b)
        }
        2 => {
            let mut b = name(r);
            b.extend(name(r));
            let nf = r.below(4);
            b.extend(i16s(r, nf, &[0, 1, 2, -1]));
            let np = r.below(4);
            b.extend_from_slice(&(np as i16).to_be_bytes());
            for _ in 0..np {
                if r.chance(20) {
                    b.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let len = r.below(12);
                    b.extend_from_slice(&(len as i32).to_be_bytes());
                    for _ in 0..len {
                        b.push(if r.chance(50) {
                            b'0' + r.below(10) as u8
                        } else {
                            r.next() as u8
                        });
                    }
                }
            }
            let nr = r.below(3);
            b.extend(i16s(r, nr, &[0, 1, 7]));
            (b'B', b)
        }
        3 | 4 => {
            let mut b = vec![if r.chance(50) { b'S' } else { b'P' }];
            b.extend(name(r));
            (if r.chance(50) { b'D' } else { b'C' }, b)
        }
        5 => {
            let mut b = name(r);
            b.extend_from_slice(&[0i32, 1, -1, 100][r.below(4)].to_be_bytes());
            (b'E', b)
        }
        6 => (b'd', (0..r.below(20)).map(|_| r.next() as u8).collect()),
        7 => (b'c', Vec::new()),
        8 => (b'f', b"stop\0".to_vec()),
        9 => (b'H', Vec::new()),
        _ => (b'S', Vec::new()),
    };
    let mut m = vec![ty];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend(body);
    m
}

#[test]
fn random_sql_and_garbage_never_crash_or_hang_the_server() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    println!("FUZZ_SEED={seed} FUZZ_CASES={cases}");
    let mut r = Rng(seed);
    let mut mako = Mako::start(2);
    let port = mako.port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (answered, errors) = rt.block_on(async {
        let mut c = connect(port).await;
        c.batch_execute(
            "CREATE TABLE f1 (a INT PRIMARY KEY, b TEXT, c NUMERIC(10,2), d FLOAT8, e BOOLEAN);
             CREATE TABLE f2 (x INT, y INT, z TEXT, PRIMARY KEY (x, y));
             SET statement_timeout = '5s'",
        )
        .await
        .unwrap();
        for i in 0..50 {
            c.batch_execute(&format!(
                "INSERT INTO f1 VALUES ({i}, 'b{i}', {i}.5, {i}e3, {}); INSERT INTO f2 VALUES ({i}, {}, 'z{i}')",
                i % 2 == 0,
                i % 7
            ))
            .await
            .unwrap();
        }
        let (mut answered, mut errors) = (0, 0);
        let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
        for case in 0..cases {
            let sql = statement(&mut r);
            let extended = r.chance(30);
            let started = Instant::now();
            let result = tokio::time::timeout(WATCHDOG, async {
                if extended {
                    c.query(&sql, &[]).await.map(|_| ())
                } else {
                    c.simple_query(&sql).await.map(|_| ())
                }
            })
            .await;
            let short: String = sql.chars().take(300).collect();
            match result {
                Err(_) => panic!(
                    "case {case} (FUZZ_SEED={seed}): no answer within {WATCHDOG:?}: {short}"
                ),
                Ok(Ok(())) => answered += 1,
                Ok(Err(e)) if e.code().is_some() => {
                    errors += 1;
                    let code = e.code().unwrap().code().to_owned();
                    // XX000 is an internal error: a bug, not the input's
                    // fault.
                    assert_ne!(
                        code, "XX000",
                        "case {case} (FUZZ_SEED={seed}): internal error {e:?} on: {short}"
                    );
                    *codes.entry(code).or_insert(0) += 1;
                    // A failed statement inside a transaction would fail
                    // the rest; none is open, but be sure.
                    let _ = c.batch_execute("ROLLBACK").await;
                }
                Ok(Err(e)) => panic!(
                    "case {case} (FUZZ_SEED={seed}): the connection broke ({e}) after {:?} on: {short}",
                    started.elapsed()
                ),
            }
            if case % 6 == 5 {
                garbage(&mut r, port);
            }
            if case % 100 == 99 {
                // A fresh connection answers at once.
                c = connect(port).await;
                c.batch_execute("SET statement_timeout = '5s'").await.unwrap();
                c.simple_query("SELECT 1").await.unwrap();
            }
        }
        println!("SQLSTATEs: {codes:?}");
        (answered, errors)
    });
    println!("{answered} statements answered, {errors} errors");
    assert!(mako.is_running(), "the server died: {:?}", mako.log());
    rt.block_on(async {
        let c = connect(port).await;
        c.simple_query("SELECT count(*) FROM f1").await.unwrap();
    });
    let peak = peak_rss_kib(mako.pid());
    assert!(peak < 2 * 1024 * 1024, "peak RSS {peak} KiB");
    // Malformed messages are refused before pgwire decodes them, so no
    // panic at all is expected, ours or a dependency's.
    let log = mako.log();
    let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked at")).collect();
    assert!(
        panics.is_empty(),
        "the server panicked (FUZZ_SEED={seed}): {panics:?}"
    );
}
