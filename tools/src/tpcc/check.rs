//! `mako tpcc check`: the consistency conditions of clause 3.3.2 (1 to 4).

use super::{connect, describe, files, named_statements};

/// One condition's outcome.
pub struct Outcome {
    /// "condition_1" etc.
    pub name: &'static str,
    /// Rows checked.
    pub rows: usize,
    /// Rows where the compared values differ, described.
    pub violations: Vec<String>,
}

/// Runs every condition; each query returns key columns followed by values
/// that must all be equal.
pub async fn check(url: &str) -> Result<Vec<Outcome>, String> {
    let client = connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {}", describe(&e)))?;
    let key_columns = |name: &str| if name == "condition_1" { 1 } else { 2 };
    let mut out = Vec::new();
    for (name, sql) in named_statements(files::CHECK) {
        let rows = client
            .simple_query(&sql)
            .await
            .map_err(|e| format!("{name}: {}", describe(&e)))?;
        let mut checked = 0;
        let mut violations = Vec::new();
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                checked += 1;
                let keys = key_columns(name);
                let values: Vec<Option<&str>> = (keys..r.len()).map(|i| r.get(i)).collect();
                // Compare numerically: "300000.00" = "300000" and 3000 = 3000.0.
                let parsed: Vec<Option<f64>> = values
                    .iter()
                    .map(|v| v.and_then(|s| s.parse().ok()))
                    .collect();
                if parsed.windows(2).any(|w| w[0] != w[1]) {
                    let key: Vec<&str> = (0..keys).map(|i| r.get(i).unwrap_or("NULL")).collect();
                    violations.push(format!("at ({}): {:?}", key.join(", "), values));
                }
            }
        }
        out.push(Outcome {
            name,
            rows: checked,
            violations,
        });
    }
    Ok(out)
}

/// Prints the outcomes; true when all pass.
pub fn print(outcomes: &[Outcome]) -> bool {
    let mut ok = true;
    for o in outcomes {
        let pass = o.violations.is_empty() && o.rows > 0;
        ok &= pass;
        println!(
            "{} {}: {} rows checked",
            if pass { "PASS" } else { "FAIL" },
            o.name,
            o.rows
        );
        for v in o.violations.iter().take(5) {
            println!("    {v}");
        }
    }
    ok
}
