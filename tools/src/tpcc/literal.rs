//! The five TPC-C transactions as many TPC-C implementations written for
//! MySQL and PostgreSQL send them (`mako tpcc run --style literal`): each
//! statement is SQL text with its values written in, sent with the simple
//! query protocol (parsed and planned every time, nothing prepared), rows
//! locked with `SELECT … FOR UPDATE`, `now()` for timestamps, customer and
//! warehouse read in one join, customers by last name counted before they
//! are listed, the last order found by `ORDER BY … DESC` without `LIMIT`,
//! and Stock-Level as a join of the district's recent order lines with
//! stock. Same inputs and outcomes as [`super::txns`] (the consistency
//! conditions hold after either), different SQL: a planner that only
//! handles the prepared style's statements well shows here.

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::txns::{Ending, NewOrderInputs, PaymentInputs, Terminal};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// The rows of one statement.
async fn rows(client: &Client, sql: &str) -> Result<Vec<SimpleQueryRow>> {
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect())
}

/// Column `i` of `row`, parsed (NULL and bad text read as the default).
fn col<T: std::str::FromStr + Default>(row: &SimpleQueryRow, i: usize) -> T {
    row.get(i).and_then(|s| s.parse().ok()).unwrap_or_default()
}

/// Column `i` of `row` as text.
fn text(row: &SimpleQueryRow, i: usize) -> String {
    row.get(i).unwrap_or("").to_string()
}

/// A string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `body` in a serializable transaction: BEGIN, the body, COMMIT; on
/// any error ROLLBACK and the error.
macro_rules! transaction {
    ($client:expr, $body:block) => {{
        $client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await?;
        let outcome: Result<Ending> = async { $body }.await;
        match outcome {
            Ok(Ending::Committed) => {
                $client.batch_execute("COMMIT").await?;
                Ok(Ending::Committed)
            }
            Ok(Ending::RolledBack) => {
                $client.batch_execute("ROLLBACK").await?;
                Ok(Ending::RolledBack)
            }
            Err(e) => {
                let _ = $client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }};
}

/// The middle customer (rounded up) with a last name, by first name
/// (clause 2.5.2.2): counted, then listed.
async fn customer_by_name(
    client: &Client,
    w: i32,
    d: i32,
    last: &str,
    columns: &str,
) -> Result<Option<SimpleQueryRow>> {
    let n: i64 = col(
        &rows(
            client,
            &format!(
                "SELECT count(c_id) FROM customer WHERE c_w_id = {w} AND c_d_id = {d} AND c_last = {}",
                quote(last)
            ),
        )
        .await?[0],
        0,
    );
    if n == 0 {
        return Ok(None);
    }
    let list = rows(
        client,
        &format!(
            "SELECT {columns} FROM customer WHERE c_w_id = {w} AND c_d_id = {d} AND c_last = {} ORDER BY c_first",
            quote(last)
        ),
    )
    .await?;
    let k = (n as usize).div_ceil(2) - 1;
    Ok(list.into_iter().nth(k))
}

/// New-Order (clause 2.4).
pub async fn new_order(client: &mut Client, term: &mut Terminal) -> Result<Ending> {
    let w = term.w_id;
    let NewOrderInputs {
        d,
        c,
        lines,
        items,
        all_local,
    } = term.new_order_inputs();
    let client = &*client;
    transaction!(client, {
        let cw = rows(
            client,
            &format!(
                "SELECT c_discount, c_last, c_credit, w_tax FROM customer, warehouse \
                 WHERE w_id = {w} AND c_w_id = w_id AND c_d_id = {d} AND c_id = {c}"
            ),
        )
        .await?;
        let discount: f64 = col(&cw[0], 0);
        let w_tax: f64 = col(&cw[0], 3);
        let dr = rows(
            client,
            &format!(
                "SELECT d_next_o_id, d_tax FROM district WHERE d_w_id = {w} AND d_id = {d} FOR UPDATE"
            ),
        )
        .await?;
        let o_id: i32 = col(&dr[0], 0);
        let d_tax: f64 = col(&dr[0], 1);
        client
            .batch_execute(&format!(
                "UPDATE district SET d_next_o_id = {} WHERE d_w_id = {w} AND d_id = {d}",
                o_id + 1
            ))
            .await?;
        client
            .batch_execute(&format!(
                "INSERT INTO orders (o_id, o_d_id, o_w_id, o_c_id, o_entry_d, o_ol_cnt, o_all_local) \
                 VALUES ({o_id}, {d}, {w}, {c}, now(), {lines}, {all_local})"
            ))
            .await?;
        client
            .batch_execute(&format!(
                "INSERT INTO new_order (no_o_id, no_d_id, no_w_id) VALUES ({o_id}, {d}, {w})"
            ))
            .await?;
        let mut total = 0.0;
        for (n, (i_id, supply, qty)) in items.iter().enumerate() {
            let item = rows(
                client,
                &format!("SELECT i_price, i_name, i_data FROM item WHERE i_id = {i_id}"),
            )
            .await?;
            let Some(item) = item.first() else {
                return Ok(Ending::RolledBack);
            };
            let price: f64 = col(item, 0);
            let stock = rows(
                client,
                &format!(
                    "SELECT s_quantity, s_data, s_dist_{d:02} FROM stock \
                     WHERE s_i_id = {i_id} AND s_w_id = {supply} FOR UPDATE"
                ),
            )
            .await?;
            let quantity: i32 = col(&stock[0], 0);
            let dist_info = text(&stock[0], 2);
            let new_quantity = if quantity - qty >= 10 {
                quantity - qty
            } else {
                quantity - qty + 91
            };
            client
                .batch_execute(&format!(
                    "UPDATE stock SET s_quantity = {new_quantity}, s_ytd = s_ytd + {qty}, \
                     s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + {} \
                     WHERE s_i_id = {i_id} AND s_w_id = {supply}",
                    (*supply != w) as i32
                ))
                .await?;
            let amount = price * f64::from(*qty);
            total += amount;
            client
                .batch_execute(&format!(
                    "INSERT INTO order_line (ol_o_id, ol_d_id, ol_w_id, ol_number, ol_i_id, \
                     ol_supply_w_id, ol_quantity, ol_amount, ol_dist_info) \
                     VALUES ({o_id}, {d}, {w}, {}, {i_id}, {supply}, {qty}, {amount:.2}, {})",
                    n + 1,
                    quote(&dist_info)
                ))
                .await?;
        }
        let _display = total * (1.0 - discount) * (1.0 + w_tax + d_tax);
        Ok(Ending::Committed)
    })
}

/// Payment (clause 2.5).
pub async fn payment(client: &mut Client, term: &mut Terminal, h_id: i64) -> Result<Ending> {
    let w = term.w_id;
    let PaymentInputs {
        d,
        c_w,
        c_d,
        by_name,
        last,
        c_id,
        cents,
    } = term.payment_inputs();
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let client = &*client;
    transaction!(client, {
        client
            .batch_execute(&format!(
                "UPDATE warehouse SET w_ytd = w_ytd + {amount} WHERE w_id = {w}"
            ))
            .await?;
        let wr = rows(
            client,
            &format!(
                "SELECT w_street_1, w_street_2, w_city, w_state, w_zip, w_name FROM warehouse WHERE w_id = {w}"
            ),
        )
        .await?;
        let w_name = text(&wr[0], 5);
        client
            .batch_execute(&format!(
                "UPDATE district SET d_ytd = d_ytd + {amount} WHERE d_w_id = {w} AND d_id = {d}"
            ))
            .await?;
        let dr = rows(
            client,
            &format!(
                "SELECT d_street_1, d_street_2, d_city, d_state, d_zip, d_name FROM district \
                 WHERE d_w_id = {w} AND d_id = {d}"
            ),
        )
        .await?;
        let d_name = text(&dr[0], 5);
        let c = if by_name {
            match customer_by_name(client, c_w, c_d, &last, "c_id").await? {
                Some(r) => col(&r, 0),
                None => c_id,
            }
        } else {
            c_id
        };
        let cr = rows(
            client,
            &format!(
                "SELECT c_first, c_middle, c_last, c_street_1, c_street_2, c_city, c_state, c_zip, \
                 c_phone, c_credit, c_credit_lim, c_discount, c_balance, c_ytd_payment, c_since \
                 FROM customer WHERE c_w_id = {c_w} AND c_d_id = {c_d} AND c_id = {c} FOR UPDATE"
            ),
        )
        .await?;
        let credit = text(&cr[0], 9);
        let set = if credit == "BC" {
            let data = text(
                &rows(
                    client,
                    &format!(
                        "SELECT c_data FROM customer WHERE c_w_id = {c_w} AND c_d_id = {c_d} AND c_id = {c}"
                    ),
                )
                .await?[0],
                0,
            );
            let mut new_data = format!("{c} {c_d} {c_w} {d} {w} {amount} | {data}");
            new_data.truncate(
                new_data
                    .char_indices()
                    .nth(500)
                    .map_or(new_data.len(), |(i, _)| i),
            );
            format!(", c_data = {}", quote(&new_data))
        } else {
            String::new()
        };
        client
            .batch_execute(&format!(
                "UPDATE customer SET c_balance = c_balance - {amount}, \
                 c_ytd_payment = c_ytd_payment + {amount}, c_payment_cnt = c_payment_cnt + 1{set} \
                 WHERE c_w_id = {c_w} AND c_d_id = {c_d} AND c_id = {c}"
            ))
            .await?;
        client
            .batch_execute(&format!(
                "INSERT INTO history (h_id, h_c_id, h_c_d_id, h_c_w_id, h_d_id, h_w_id, h_date, h_amount, h_data) \
                 VALUES ({h_id}, {c}, {c_d}, {c_w}, {d}, {w}, now(), {amount}, {})",
                quote(&format!("{w_name}    {d_name}"))
            ))
            .await?;
        Ok(Ending::Committed)
    })
}

/// Order-Status (clause 2.6).
pub async fn order_status(client: &mut Client, term: &mut Terminal) -> Result<Ending> {
    let w = term.w_id;
    let d = term.rng.int(1, 10) as i32;
    let by_name = term.rng.percent(60);
    let last = term.rng.run_last_name();
    let c_id = term.customer_id();
    let client = &*client;
    transaction!(client, {
        let c: i32 = if by_name {
            match customer_by_name(client, w, d, &last, "c_balance, c_first, c_middle, c_id")
                .await?
            {
                Some(r) => col(&r, 3),
                None => c_id,
            }
        } else {
            rows(
                client,
                &format!(
                    "SELECT c_balance, c_first, c_middle, c_last FROM customer \
                     WHERE c_w_id = {w} AND c_d_id = {d} AND c_id = {c_id}"
                ),
            )
            .await?;
            c_id
        };
        let orders = rows(
            client,
            &format!(
                "SELECT o_id, o_carrier_id, o_entry_d FROM orders \
                 WHERE o_w_id = {w} AND o_d_id = {d} AND o_c_id = {c} ORDER BY o_id DESC"
            ),
        )
        .await?;
        if let Some(o) = orders.first() {
            let o_id: i32 = col(o, 0);
            rows(
                client,
                &format!(
                    "SELECT ol_i_id, ol_supply_w_id, ol_quantity, ol_amount, ol_delivery_d \
                     FROM order_line WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id = {o_id}"
                ),
            )
            .await?;
        }
        Ok(Ending::Committed)
    })
}

/// Delivery (clause 2.7), all ten districts in one transaction.
pub async fn delivery(client: &mut Client, term: &mut Terminal) -> Result<Ending> {
    let w = term.w_id;
    let carrier = term.rng.int(1, 10) as i32;
    let client = &*client;
    transaction!(client, {
        for d in 1..=10i32 {
            let oldest = rows(
                client,
                &format!(
                    "SELECT no_o_id FROM new_order WHERE no_d_id = {d} AND no_w_id = {w} \
                     ORDER BY no_o_id ASC LIMIT 1 FOR UPDATE"
                ),
            )
            .await?;
            let Some(o) = oldest.first() else {
                continue;
            };
            let o_id: i32 = col(o, 0);
            client
                .batch_execute(&format!(
                    "DELETE FROM new_order WHERE no_o_id = {o_id} AND no_d_id = {d} AND no_w_id = {w}"
                ))
                .await?;
            let c: i32 = col(
                &rows(
                    client,
                    &format!(
                        "SELECT o_c_id FROM orders WHERE o_id = {o_id} AND o_d_id = {d} AND o_w_id = {w}"
                    ),
                )
                .await?[0],
                0,
            );
            client
                .batch_execute(&format!(
                    "UPDATE orders SET o_carrier_id = {carrier} WHERE o_id = {o_id} AND o_d_id = {d} AND o_w_id = {w}"
                ))
                .await?;
            client
                .batch_execute(&format!(
                    "UPDATE order_line SET ol_delivery_d = now() \
                     WHERE ol_o_id = {o_id} AND ol_d_id = {d} AND ol_w_id = {w}"
                ))
                .await?;
            let total = text(
                &rows(
                    client,
                    &format!(
                        "SELECT SUM(ol_amount) FROM order_line \
                         WHERE ol_o_id = {o_id} AND ol_d_id = {d} AND ol_w_id = {w}"
                    ),
                )
                .await?[0],
                0,
            );
            let total = if total.is_empty() { "0".into() } else { total };
            client
                .batch_execute(&format!(
                    "UPDATE customer SET c_balance = c_balance + {total}, c_delivery_cnt = c_delivery_cnt + 1 \
                     WHERE c_id = {c} AND c_d_id = {d} AND c_w_id = {w}"
                ))
                .await?;
        }
        Ok(Ending::Committed)
    })
}

/// Stock-Level (clause 2.8).
pub async fn stock_level(client: &mut Client, term: &mut Terminal) -> Result<Ending> {
    let (w, d) = (term.w_id, term.d_id);
    let threshold = term.rng.int(10, 20);
    let client = &*client;
    transaction!(client, {
        let next: i32 = col(
            &rows(
                client,
                &format!("SELECT d_next_o_id FROM district WHERE d_id = {d} AND d_w_id = {w}"),
            )
            .await?[0],
            0,
        );
        rows(
            client,
            &format!(
                "SELECT COUNT(DISTINCT (s_i_id)) FROM order_line, stock \
                 WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id < {next} AND ol_o_id >= {} \
                 AND s_w_id = {w} AND s_i_id = ol_i_id AND s_quantity < {threshold}",
                next - 20
            ),
        )
        .await?;
        Ok(Ending::Committed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape() {
        assert_eq!(quote("O'Brien"), "'O''Brien'");
    }
}
