//! `mako tpcc load`: the initial population (TPC-C clause 4.3.3), loaded in
//! parallel with multi-row INSERTs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use super::random::{Random, last_name};
use super::{connect, describe, is_mako, schema_statements};

/// Rows per INSERT statement.
const BATCH: usize = 500;

/// A piece of the population one connection loads.
#[derive(Clone, Copy, Debug)]
enum Unit {
    /// Items `from..from + 10000`.
    Items(i32),
    /// A warehouse and its districts.
    Warehouse(i32),
    /// Stock of warehouse `w` for items `from..from + 10000`.
    Stock(i32, i32),
    /// Customers and their history rows of one district.
    Customers(i32, i32),
    /// Orders, order lines and new orders of one district.
    Orders(i32, i32),
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Accumulates rows of one table and sends them in batches.
struct Inserter<'a> {
    client: &'a tokio_postgres::Client,
    head: String,
    rows: Vec<String>,
    sent: usize,
    progress: &'a ProgressBar,
}

impl<'a> Inserter<'a> {
    fn new(client: &'a tokio_postgres::Client, table: &str, progress: &'a ProgressBar) -> Self {
        Inserter {
            client,
            head: format!("INSERT INTO {table} VALUES "),
            rows: Vec::new(),
            sent: 0,
            progress,
        }
    }

    async fn push(&mut self, row: String) -> Result<(), String> {
        self.rows.push(row);
        if self.rows.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let sql = format!("{}{}", self.head, self.rows.join(","));
        // A batch is retried where any client would retry: a conflict
        // (40001), or a server that does not serve for a moment (57P03: a
        // replica group's leader whose lease lapsed on a loaded machine,
        // or an election). Nothing was written then; a retry that finds
        // its rows (23505) after an unknown outcome (40003) was applied.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut unknown = false;
        loop {
            let Err(e) = self.client.batch_execute(&sql).await else {
                break;
            };
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            match code.as_str() {
                "23505" if unknown => break,
                "40001" | "57P03" | "40003" if std::time::Instant::now() < deadline => {
                    unknown |= code == "40003";
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                _ => return Err(describe(&e)),
            }
        }
        self.sent += self.rows.len();
        self.progress.inc(self.rows.len() as u64);
        self.rows.clear();
        Ok(())
    }
}

/// The current time as a SQL timestamp literal (UTC, whole seconds).
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    quote(&format_utc(secs))
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since 1970 (UTC), with the civil
/// calendar computed from the day number (H. Hinnant's days-to-civil).
fn format_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

async fn load_unit(
    client: &tokio_postgres::Client,
    unit: Unit,
    rng: &mut Random,
    progress: &ProgressBar,
) -> Result<(), String> {
    let now = timestamp();
    match unit {
        Unit::Items(from) => {
            let mut ins = Inserter::new(client, "item", progress);
            for i in from..from + 10_000 {
                let row = format!(
                    "({i},{},{},{},{})",
                    rng.int(1, 10_000),
                    quote(&rng.astring(14, 24)),
                    money(rng.int(100, 10_000)),
                    quote(&rng.data_with_original())
                );
                ins.push(row).await?;
            }
            ins.flush().await
        }
        Unit::Warehouse(w) => {
            let row = format!(
                "({w},{},{},{},{},{},{},0.{:04},300000.00)",
                quote(&rng.astring(6, 10)),
                quote(&rng.astring(10, 20)),
                quote(&rng.astring(10, 20)),
                quote(&rng.astring(10, 20)),
                quote(&rng.astring(2, 2)),
                quote(&rng.zip()),
                rng.int(0, 2000)
            );
            let mut ins = Inserter::new(client, "warehouse", progress);
            ins.push(row).await?;
            ins.flush().await?;
            let mut ins = Inserter::new(client, "district", progress);
            for d in 1..=10 {
                let row = format!(
                    "({d},{w},{},{},{},{},{},{},0.{:04},30000.00,3001)",
                    quote(&rng.astring(6, 10)),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(2, 2)),
                    quote(&rng.zip()),
                    rng.int(0, 2000)
                );
                ins.push(row).await?;
            }
            ins.flush().await
        }
        Unit::Stock(w, from) => {
            let mut ins = Inserter::new(client, "stock", progress);
            for i in from..from + 10_000 {
                let dists: Vec<String> = (0..10).map(|_| quote(&rng.astring(24, 24))).collect();
                let row = format!(
                    "({i},{w},{},{},0,0,0,{})",
                    rng.int(10, 100),
                    dists.join(","),
                    quote(&rng.data_with_original())
                );
                ins.push(row).await?;
            }
            ins.flush().await
        }
        Unit::Customers(w, d) => {
            let mut ins = Inserter::new(client, "customer", progress);
            for c in 1..=3000 {
                let last = if c <= 1000 {
                    last_name(c as u32 - 1)
                } else {
                    rng.load_last_name()
                };
                let credit = if rng.percent(10) { "BC" } else { "GC" };
                let row = format!(
                    "({c},{d},{w},{},'OE',{},{},{},{},{},{},{},{now},'{credit}',50000.00,0.{:04},-10.00,10.00,1,0,{})",
                    quote(&rng.astring(8, 16)),
                    quote(&last),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(10, 20)),
                    quote(&rng.astring(2, 2)),
                    quote(&rng.zip()),
                    quote(&rng.nstring(16, 16)),
                    rng.int(0, 5000),
                    quote(&rng.astring(300, 500))
                );
                ins.push(row).await?;
            }
            ins.flush().await?;
            let mut ins = Inserter::new(client, "history", progress);
            for c in 1..=3000i64 {
                let h_id = ((w as i64 - 1) * 10 + d as i64 - 1) * 3000 + c;
                let row = format!(
                    "({h_id},{c},{d},{w},{d},{w},{now},10.00,{})",
                    quote(&rng.astring(12, 24))
                );
                ins.push(row).await?;
            }
            ins.flush().await
        }
        Unit::Orders(w, d) => {
            // O_C_ID is a random permutation of the customer ids.
            let mut customers: Vec<i32> = (1..=3000).collect();
            for i in (1..customers.len()).rev() {
                let j = rng.int(0, i as i64) as usize;
                customers.swap(i, j);
            }
            let mut orders = Inserter::new(client, "orders", progress);
            let mut lines = Inserter::new(client, "order_line", progress);
            let mut new_orders = Inserter::new(client, "new_order", progress);
            for o in 1..=3000i32 {
                let ol_cnt = rng.int(5, 15);
                let delivered = o < 2101;
                let carrier = if delivered {
                    rng.int(1, 10).to_string()
                } else {
                    "NULL".into()
                };
                orders
                    .push(format!(
                        "({o},{d},{w},{},{now},{carrier},{ol_cnt},1)",
                        customers[o as usize - 1]
                    ))
                    .await?;
                for n in 1..=ol_cnt {
                    let (delivery, amount) = if delivered {
                        (now.clone(), "0.00".to_string())
                    } else {
                        ("NULL".into(), money(rng.int(1, 999_999)))
                    };
                    lines
                        .push(format!(
                            "({o},{d},{w},{n},{},{w},{delivery},5,{amount},{})",
                            rng.int(1, 100_000),
                            quote(&rng.astring(24, 24))
                        ))
                        .await?;
                }
                if !delivered {
                    new_orders.push(format!("({o},{d},{w})")).await?;
                }
            }
            orders.flush().await?;
            lines.flush().await?;
            new_orders.flush().await
        }
    }
}

/// Rows the population of `warehouses` has, roughly (order lines vary).
fn expected_rows(warehouses: i32) -> u64 {
    100_000 + warehouses as u64 * (1 + 10 + 100_000 + 30_000 * 2 + 30_000 + 300_000 + 9_000)
}

/// Creates the schema (dropping an existing one) and loads `warehouses`
/// warehouses with `connections` parallel connections.
pub async fn load(
    url: &str,
    warehouses: i32,
    connections: usize,
    foreign_keys: bool,
) -> Result<(), String> {
    if warehouses < 1 {
        return Err("--warehouses must be at least 1".into());
    }
    let admin = connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {}", describe(&e)))?;
    let mako = is_mako(&admin).await.map_err(|e| describe(&e))?;
    for t in [
        "order_line",
        "new_order",
        "orders",
        "history",
        "customer",
        "district",
        "stock",
        "item",
        "warehouse",
    ] {
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
            .await
            .map_err(|e| describe(&e))?;
    }
    for stmt in schema_statements(mako) {
        admin
            .batch_execute(&stmt)
            .await
            .map_err(|e| format!("{}: {stmt}", describe(&e)))?;
    }
    let mut units = VecDeque::new();
    for w in 1..=warehouses {
        units.push_back(Unit::Warehouse(w));
        for d in 1..=10 {
            units.push_back(Unit::Orders(w, d));
            units.push_back(Unit::Customers(w, d));
        }
        for from in (1..=100_000).step_by(10_000) {
            units.push_back(Unit::Stock(w, from));
        }
    }
    for from in (1..=100_000).step_by(10_000) {
        units.push_back(Unit::Items(from));
    }
    let units = Arc::new(Mutex::new(units));
    let progress = ProgressBar::new(expected_rows(warehouses));
    progress.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..connections.max(1) {
        let (units, progress, url) = (units.clone(), progress.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await.map_err(|e| describe(&e))?;
            let mut rng = Random::new(0x7C0C_0000 + n as u64);
            loop {
                let next = units.lock().expect("queue").pop_front();
                let Some(unit) = next else {
                    return Ok::<(), String>(());
                };
                load_unit(&client, unit, &mut rng, &progress)
                    .await
                    .map_err(|e| format!("{unit:?}: {e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    progress.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut total = 0i64;
    println!(
        "loaded {warehouses} warehouse(s) into {} in {secs:.1} s:",
        if mako { "Mako" } else { "the server" }
    );
    for t in [
        "warehouse",
        "district",
        "customer",
        "history",
        "orders",
        "new_order",
        "order_line",
        "item",
        "stock",
    ] {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .map_err(|e| describe(&e))?
            .get(0);
        total += n;
        println!("  {t:<11} {n:>9} rows");
    }
    println!(
        "  total       {total:>9} rows, {:.0} rows/s",
        total as f64 / secs
    );
    if foreign_keys {
        let start = Instant::now();
        for stmt in super::plain_statements(super::files::FOREIGN_KEYS) {
            admin
                .batch_execute(&stmt)
                .await
                .map_err(|e| format!("{}: {stmt}", describe(&e)))?;
        }
        println!(
            "added the foreign keys (checking the rows loaded) in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_796_601_599), "2026-12-06 23:59:59");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    }
}
