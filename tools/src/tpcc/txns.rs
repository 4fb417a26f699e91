//! The five TPC-C transactions, driving the SQL of `testdata/tpcc/`.
//!
//! Each runs in one SERIALIZABLE transaction and returns how it ended; a
//! serialization failure (40001) or deadlock (40P01) comes back as an
//! error for the caller to retry.

use std::time::SystemTime;

use rust_decimal::Decimal;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::Statements;
use super::random::Random;

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Committed.
    Committed,
    /// A New-Order that named an unused item and was rolled back, as the
    /// specification requires of 1% of them.
    RolledBack,
}

/// The statements of every profile, prepared on one connection.
pub struct Profiles {
    /// New-Order.
    pub new_order: Statements,
    /// Payment.
    pub payment: Statements,
    /// Order-Status.
    pub order_status: Statements,
    /// Delivery.
    pub delivery: Statements,
    /// Stock-Level.
    pub stock_level: Statements,
}

impl Profiles {
    /// Prepares all statements on `client`.
    pub async fn prepare(client: &Client) -> Result<Profiles, tokio_postgres::Error> {
        use super::{files, prepare};
        Ok(Profiles {
            new_order: prepare(client, files::NEW_ORDER).await?,
            payment: prepare(client, files::PAYMENT).await?,
            order_status: prepare(client, files::ORDER_STATUS).await?,
            delivery: prepare(client, files::DELIVERY).await?,
            stock_level: prepare(client, files::STOCK_LEVEL).await?,
        })
    }
}

/// New-Order's inputs.
pub(super) struct NewOrderInputs {
    /// The district.
    pub d: i32,
    /// The customer.
    pub c: i32,
    /// The number of lines.
    pub lines: i32,
    /// Each line's item, supplying warehouse and quantity.
    pub items: Vec<(i32, i32, i32)>,
    /// 1 when every line is supplied by the home warehouse.
    pub all_local: i32,
}

/// Payment's inputs.
pub(super) struct PaymentInputs {
    /// The district.
    pub d: i32,
    /// The customer's warehouse.
    pub c_w: i32,
    /// The customer's district.
    pub c_d: i32,
    /// Whether the customer is found by last name.
    pub by_name: bool,
    /// That last name.
    pub last: String,
    /// Otherwise the customer's id.
    pub c_id: i32,
    /// The amount, in cents.
    pub cents: i64,
}

/// What a terminal needs to pick inputs.
pub struct Terminal {
    /// The home warehouse.
    pub w_id: i32,
    /// The district Stock-Level reports on (fixed per terminal).
    pub d_id: i32,
    /// The number of warehouses.
    pub warehouses: i32,
    /// Random inputs.
    pub rng: Random,
}

impl Terminal {
    pub(super) fn other_warehouse(&mut self) -> i32 {
        if self.warehouses == 1 {
            return self.w_id;
        }
        loop {
            let w = self.rng.int(1, self.warehouses as i64) as i32;
            if w != self.w_id {
                return w;
            }
        }
    }

    /// Payment's inputs (clause 2.5.1): district, the customer's
    /// warehouse and district (15% remote), by last name (60%) or id, and
    /// the amount in cents.
    pub(super) fn payment_inputs(&mut self) -> PaymentInputs {
        let w = self.w_id;
        let d = self.rng.int(1, 10) as i32;
        let (c_w, c_d) = if self.rng.percent(85) {
            (w, d)
        } else {
            (self.other_warehouse(), self.rng.int(1, 10) as i32)
        };
        PaymentInputs {
            d,
            c_w,
            c_d,
            by_name: self.rng.percent(60),
            last: self.rng.run_last_name(),
            c_id: self.customer_id(),
            cents: self.rng.int(100, 500_000),
        }
    }

    /// New-Order's inputs (clause 2.4.1): district, customer, and the
    /// lines, 1% of orders ending with an unused item, 1% of lines
    /// supplied by another warehouse.
    pub(super) fn new_order_inputs(&mut self) -> NewOrderInputs {
        let w = self.w_id;
        let d = self.rng.int(1, 10) as i32;
        let c = self.customer_id();
        let lines = self.rng.int(5, 15) as i32;
        let rollback = self.rng.int(1, 100) == 1;
        let mut items = Vec::new();
        let mut all_local = 1;
        for n in 1..=lines {
            let mut i_id = self.rng.item_id() as i32;
            if rollback && n == lines {
                i_id = 100_001; // unused: the order rolls back
            }
            let supply = if self.rng.percent(1) {
                self.other_warehouse()
            } else {
                w
            };
            if supply != w {
                all_local = 0;
            }
            items.push((i_id, supply, self.rng.int(1, 10) as i32));
        }
        NewOrderInputs {
            d,
            c,
            lines,
            items,
            all_local,
        }
    }

    pub(super) fn customer_id(&mut self) -> i32 {
        self.rng.customer_id() as i32
    }
}

async fn begin(client: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
}

/// The customer in the middle (rounded up) of those with a last name,
/// ordered by first name (clause 2.5.2.2).
async fn customer_by_name(
    t: &Transaction<'_>,
    s: &Statements,
    w: i32,
    d: i32,
    last: &str,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let rows = t
        .query(s.get("customers_by_last_name"), &[&w, &d, &last])
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows[rows.len().div_ceil(2) - 1].get(0)))
}

/// New-Order (clause 2.4).
pub async fn new_order(
    client: &mut Client,
    p: &Profiles,
    term: &mut Terminal,
) -> Result<Ending, tokio_postgres::Error> {
    let s = &p.new_order;
    let w = term.w_id;
    let NewOrderInputs {
        d,
        c,
        lines,
        items,
        all_local,
    } = term.new_order_inputs();
    let now = SystemTime::now();
    let t = begin(client).await?;
    let row = t
        .query_one(s.get("customer_and_warehouse"), &[&w, &d, &c])
        .await?;
    let discount: Decimal = row.get(0);
    let w_tax: Decimal = row.get(3);
    let row = t.query_one(s.get("district"), &[&w, &d]).await?;
    let o_id: i32 = row.get(0);
    let d_tax: Decimal = row.get(1);
    t.execute(s.get("bump_next_order_id"), &[&w, &d]).await?;
    t.execute(
        s.get("insert_order"),
        &[&o_id, &d, &w, &c, &now, &lines, &all_local],
    )
    .await?;
    t.execute(s.get("insert_new_order"), &[&o_id, &d, &w])
        .await?;
    let mut total = Decimal::ZERO;
    for (n, (i_id, supply, qty)) in items.iter().enumerate() {
        let Some(item) = t.query_opt(s.get("item"), &[i_id]).await? else {
            t.rollback().await?;
            return Ok(Ending::RolledBack);
        };
        let price: Decimal = item.get(0);
        let stock = t.query_one(s.get("stock"), &[i_id, supply]).await?;
        let quantity: i32 = stock.get(0);
        let dist_info: String = stock.get(1 + d as usize);
        let new_quantity = if quantity - qty >= 10 {
            quantity - qty
        } else {
            quantity - qty + 91
        };
        let remote: i32 = (*supply != w) as i32;
        t.execute(
            s.get("update_stock"),
            &[&new_quantity, qty, &remote, i_id, supply],
        )
        .await?;
        let amount = price * Decimal::from(*qty);
        total += amount;
        let number = n as i32 + 1;
        t.execute(
            s.get("insert_order_line"),
            &[
                &o_id, &d, &w, &number, i_id, supply, qty, &amount, &dist_info,
            ],
        )
        .await?;
    }
    // The total the terminal would display (clause 2.4.2.2).
    let _display = total * (Decimal::ONE - discount) * (Decimal::ONE + w_tax + d_tax);
    t.commit().await?;
    Ok(Ending::Committed)
}

/// Payment (clause 2.5).
pub async fn payment(
    client: &mut Client,
    p: &Profiles,
    term: &mut Terminal,
    h_id: i64,
) -> Result<Ending, tokio_postgres::Error> {
    let s = &p.payment;
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
    let amount = Decimal::new(cents, 2);
    let now = SystemTime::now();
    let t = begin(client).await?;
    t.execute(s.get("bump_warehouse_ytd"), &[&amount, &w])
        .await?;
    let wr = t.query_one(s.get("warehouse"), &[&w]).await?;
    let w_name: String = wr.get(0);
    t.execute(s.get("bump_district_ytd"), &[&amount, &w, &d])
        .await?;
    let dr = t.query_one(s.get("district"), &[&w, &d]).await?;
    let d_name: String = dr.get(0);
    let c = if by_name {
        match customer_by_name(&t, s, c_w, c_d, &last).await? {
            Some(c) => c,
            None => c_id,
        }
    } else {
        c_id
    };
    let cr = t.query_one(s.get("customer"), &[&c_w, &c_d, &c]).await?;
    let credit: String = cr.get(9);
    if credit == "BC" {
        let data: String = t
            .query_one(s.get("customer_data"), &[&c_w, &c_d, &c])
            .await?
            .get(0);
        let mut new_data = format!("{c} {c_d} {c_w} {d} {w} {amount} | {data}");
        new_data.truncate(
            new_data
                .char_indices()
                .nth(500)
                .map_or(new_data.len(), |(i, _)| i),
        );
        t.execute(
            s.get("pay_bad_credit"),
            &[&amount, &c_w, &c_d, &c, &new_data],
        )
        .await?;
    } else {
        t.execute(s.get("pay"), &[&amount, &c_w, &c_d, &c]).await?;
    }
    let h_data = format!("{w_name}    {d_name}");
    t.execute(
        s.get("insert_history"),
        &[&h_id, &c, &c_d, &c_w, &d, &w, &now, &amount, &h_data],
    )
    .await?;
    t.commit().await?;
    Ok(Ending::Committed)
}

/// Order-Status (clause 2.6).
pub async fn order_status(
    client: &mut Client,
    p: &Profiles,
    term: &mut Terminal,
) -> Result<Ending, tokio_postgres::Error> {
    let s = &p.order_status;
    let w = term.w_id;
    let d = term.rng.int(1, 10) as i32;
    let by_name = term.rng.percent(60);
    let last = term.rng.run_last_name();
    let c_id = term.customer_id();
    let t = begin(client).await?;
    let c = if by_name {
        customer_by_name(&t, s, w, d, &last).await?.unwrap_or(c_id)
    } else {
        c_id
    };
    t.query_one(s.get("customer"), &[&w, &d, &c]).await?;
    if let Some(order) = t.query_opt(s.get("last_order"), &[&w, &d, &c]).await? {
        let o_id: i32 = order.get(0);
        t.query(s.get("order_lines"), &[&w, &d, &o_id]).await?;
    }
    t.commit().await?;
    Ok(Ending::Committed)
}

/// Delivery (clause 2.7), all ten districts in one transaction.
pub async fn delivery(
    client: &mut Client,
    p: &Profiles,
    term: &mut Terminal,
) -> Result<Ending, tokio_postgres::Error> {
    let s = &p.delivery;
    let w = term.w_id;
    let carrier = term.rng.int(1, 10) as i32;
    let now = SystemTime::now();
    let t = begin(client).await?;
    for d in 1..=10i32 {
        let Some(row) = t.query_opt(s.get("oldest_new_order"), &[&w, &d]).await? else {
            continue;
        };
        let o_id: i32 = row.get(0);
        t.execute(s.get("delete_new_order"), &[&w, &d, &o_id])
            .await?;
        let c: i32 = t
            .query_one(s.get("order_customer"), &[&w, &d, &o_id])
            .await?
            .get(0);
        t.execute(s.get("set_carrier"), &[&carrier, &w, &d, &o_id])
            .await?;
        t.execute(s.get("deliver_lines"), &[&now, &w, &d, &o_id])
            .await?;
        let total: Option<Decimal> = t
            .query_one(s.get("order_total"), &[&w, &d, &o_id])
            .await?
            .get(0);
        let total = total.unwrap_or(Decimal::ZERO);
        t.execute(s.get("credit_customer"), &[&total, &w, &d, &c])
            .await?;
    }
    t.commit().await?;
    Ok(Ending::Committed)
}

/// Stock-Level (clause 2.8).
pub async fn stock_level(
    client: &mut Client,
    p: &Profiles,
    term: &mut Terminal,
) -> Result<Ending, tokio_postgres::Error> {
    let s = &p.stock_level;
    let (w, d) = (term.w_id, term.d_id);
    let threshold = term.rng.int(10, 20) as i32;
    let t = begin(client).await?;
    let next: i32 = t.query_one(s.get("next_order_id"), &[&w, &d]).await?.get(0);
    let low = next - 20;
    t.query_one(s.get("low_stock"), &[&w, &d, &next, &low, &threshold])
        .await?;
    t.commit().await?;
    Ok(Ending::Committed)
}
