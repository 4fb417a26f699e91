//! The five transactions (clauses 2.4-2.8) as stored procedures on
//! `txn::Txn`, and the terminal that draws their inputs.
//!
//! Each procedure reads and writes rows and index entries directly and
//! commits; a retryable error means the caller runs the same request again.
//! Reads do not wait for concurrent commits, so a procedure may see a
//! half-installed commit (say, an index entry whose row is not there yet);
//! it then checks its reads, which fails retryably, before calling that an
//! invariant violation.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::ops::Bound;
use std::sync::Arc;

use txn::{Db, Error, KeyRange, Placement, Result, Txn};

use crate::now_micros;
use crate::random::Random;
use crate::schema::*;

/// A transaction profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Clause 2.4: enter an order of 5-15 lines.
    NewOrder,
    /// Clause 2.5: record a customer's payment.
    Payment,
    /// Clause 2.6: a customer's latest order.
    OrderStatus,
    /// Clause 2.7: deliver the oldest undelivered order of every district.
    Delivery,
    /// Clause 2.8: recently sold items that are low in stock.
    StockLevel,
}

impl Kind {
    /// Every profile, in the order reports list them.
    pub const ALL: [Kind; 5] = [
        Kind::NewOrder,
        Kind::Payment,
        Kind::OrderStatus,
        Kind::Delivery,
        Kind::StockLevel,
    ];

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::NewOrder => "New-Order",
            Kind::Payment => "Payment",
            Kind::OrderStatus => "Order-Status",
            Kind::Delivery => "Delivery",
            Kind::StockLevel => "Stock-Level",
        }
    }
}

/// How a completed transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It committed.
    Committed,
    /// A New-Order named an unused item and rolled back, as 1% must.
    RolledBack,
}

/// How Payment and Order-Status find their customer.
#[derive(Debug)]
pub enum Who {
    /// By C_ID.
    Id(i64),
    /// By C_LAST: the one at position ceil(n/2) of the n namesakes sorted
    /// by C_FIRST.
    LastName(String),
}

/// One line of a New-Order.
#[derive(Debug)]
pub struct Line {
    /// OL_I_ID.
    item: i64,
    /// OL_SUPPLY_W_ID.
    supply_w: i64,
    /// OL_QUANTITY.
    quantity: i64,
}

/// The inputs of one transaction; retries run the same request again.
#[derive(Debug)]
pub enum Request {
    /// New-Order for customer (w, d, c).
    NewOrder {
        w: i64,
        d: i64,
        c: i64,
        lines: Vec<Line>,
    },
    /// Payment of `amount` cents at district (w, d) by customer (c_w, c_d,
    /// who); `h_id` keys the history row.
    Payment {
        w: i64,
        d: i64,
        c_w: i64,
        c_d: i64,
        who: Who,
        amount: i64,
        h_id: i64,
    },
    /// Order-Status of customer (w, d, who).
    OrderStatus { w: i64, d: i64, who: Who },
    /// Delivery of warehouse `w` by `carrier`.
    Delivery { w: i64, carrier: i64 },
    /// Stock-Level of district (w, d) below `threshold`.
    StockLevel { w: i64, d: i64, threshold: i64 },
}

/// Draws the requests of one thread, which acts as the terminals of its
/// home warehouse without keying or think time.
pub struct Terminal {
    /// The home warehouse.
    w: i64,
    /// W, for choosing remote warehouses.
    warehouses: i64,
    /// The district of this terminal's Stock-Level (fixed, clause 2.8.1).
    stock_level_d: i64,
    /// The input source.
    rng: Random,
    /// The last history key used; the thread number in the high bits keeps
    /// it apart from other threads and from the loaded rows.
    next_h_id: i64,
}

impl Terminal {
    /// The terminal of thread `thread`, whose home warehouse is
    /// `thread + 1`.
    pub fn new(thread: usize, warehouses: i64) -> Self {
        Terminal {
            w: thread as i64 + 1,
            warehouses,
            stock_level_d: thread as i64 % DISTRICTS + 1,
            rng: Random::new(0x7CC0 + thread as u64),
            next_h_id: (thread as i64 + 1) << 40,
        }
    }

    /// The next request, from the mix 45/43/4/4/4 (clause 5.2.3).
    pub fn next_request(&mut self) -> Request {
        let w = self.w;
        let rng = &mut self.rng;
        let d = rng.int(1, DISTRICTS);
        match rng.int(1, 100) {
            1..=45 => {
                let c = rng.customer_id();
                let count = rng.int(5, 15);
                let rollback = rng.percent(1);
                let lines = (1..=count)
                    .map(|n| Line {
                        item: if rollback && n == count {
                            ITEMS + 1
                        } else {
                            rng.item_id()
                        },
                        supply_w: if self.warehouses > 1 && rng.percent(1) {
                            rng.other_warehouse(w, self.warehouses)
                        } else {
                            w
                        },
                        quantity: rng.int(1, 10),
                    })
                    .collect();
                Request::NewOrder { w, d, c, lines }
            }
            46..=88 => {
                let (c_w, c_d) = if self.warehouses > 1 && rng.percent(15) {
                    (
                        rng.other_warehouse(w, self.warehouses),
                        rng.int(1, DISTRICTS),
                    )
                } else {
                    (w, d)
                };
                let who = choose_customer(rng);
                self.next_h_id += 1;
                Request::Payment {
                    w,
                    d,
                    c_w,
                    c_d,
                    who,
                    amount: rng.int(100, 500_000),
                    h_id: self.next_h_id,
                }
            }
            89..=92 => Request::OrderStatus {
                w,
                d,
                who: choose_customer(rng),
            },
            93..=96 => Request::Delivery {
                w,
                carrier: rng.int(1, 10),
            },
            _ => Request::StockLevel {
                w,
                d: self.stock_level_d,
                threshold: rng.int(10, 20),
            },
        }
    }
}

/// 60% by last name, else by id (clauses 2.5.1.2 and 2.6.1.2).
fn choose_customer(rng: &mut Random) -> Who {
    if rng.percent(60) {
        Who::LastName(rng.run_last_name())
    } else {
        Who::Id(rng.customer_id())
    }
}

impl Request {
    /// The request's profile.
    pub fn kind(&self) -> Kind {
        match self {
            Request::NewOrder { .. } => Kind::NewOrder,
            Request::Payment { .. } => Kind::Payment,
            Request::OrderStatus { .. } => Kind::OrderStatus,
            Request::Delivery { .. } => Kind::Delivery,
            Request::StockLevel { .. } => Kind::StockLevel,
        }
    }

    /// Runs the request as one transaction.
    pub fn execute(&self, db: &Arc<Db>) -> Result<Outcome> {
        let txn = db.begin();
        match self {
            Request::NewOrder { w, d, c, lines } => new_order(txn, *w, *d, *c, lines),
            Request::Payment {
                w,
                d,
                c_w,
                c_d,
                who,
                amount,
                h_id,
            } => payment(txn, (*w, *d), (*c_w, *c_d, who), *amount, *h_id),
            Request::OrderStatus { w, d, who } => order_status(txn, *w, *d, who),
            Request::Delivery { w, carrier } => delivery(txn, *w, *carrier),
            Request::StockLevel { w, d, threshold } => stock_level(txn, *w, *d, *threshold),
        }
    }
}

/// The error for a row the population guarantees but a read did not find:
/// a read that raced a commit (retryable), or else a bug.
fn missing(txn: &Txn, what: &str) -> Error {
    match txn.check_reads() {
        Err(e) => e,
        Ok(()) => Error::internal(format!("{what} is missing")),
    }
}

/// Reads a row that must exist.
fn read<R: Row>(txn: &mut Txn, key: &[u8], placement: Placement) -> Result<R> {
    match txn.get(key, placement)? {
        Some(v) => Ok(R::decode(&v)),
        None => Err(missing(txn, &format!("row {key:?}"))),
    }
}

/// Clause 2.4.2.
fn new_order(mut txn: Txn, w: i64, d: i64, c: i64, lines: &[Line]) -> Result<Outcome> {
    let home = placement(w);
    let now = now_micros();
    let warehouse: Warehouse = read(&mut txn, &key(WAREHOUSE, PRIMARY, &[w]), home)?;
    let district_key = key(DISTRICT, PRIMARY, &[w, d]);
    let mut district: District = read(&mut txn, &district_key, home)?;
    let o = district.next_o_id;
    district.next_o_id += 1;
    txn.put(district_key, district.encode(), home);
    let customer: Customer = read(&mut txn, &key(CUSTOMER, PRIMARY, &[w, d, c]), home)?;

    let order = Order {
        c_id: c,
        entry_d: now,
        carrier_id: None,
        ol_cnt: lines.len() as i64,
        all_local: lines.iter().all(|l| l.supply_w == w) as i64,
    };
    txn.put(key(ORDERS, PRIMARY, &[w, d, o]), order.encode(), home);
    txn.put(key(NEW_ORDER, PRIMARY, &[w, d, o]), key_only(), home);
    txn.put(key(ORDERS, SECONDARY, &[w, d, c, o]), key_only(), home);

    let mut total = 0;
    for (number, line) in (1..).zip(lines) {
        let Some(item) = txn.get(&key(ITEM, PRIMARY, &[line.item]), Placement::Replicated)? else {
            // Clause 2.4.2.3: an unused item rolls the whole order back.
            txn.rollback();
            return Ok(Outcome::RolledBack);
        };
        let item = Item::decode(&item);
        let stock_key = key(STOCK, PRIMARY, &[line.supply_w, line.item]);
        let supplier = placement(line.supply_w);
        let mut stock: Stock = read(&mut txn, &stock_key, supplier)?;
        stock.quantity -= line.quantity;
        if stock.quantity < 10 {
            stock.quantity += 91;
        }
        stock.ytd += line.quantity;
        stock.order_cnt += 1;
        if line.supply_w != w {
            stock.remote_cnt += 1;
        }
        let amount = line.quantity * item.price;
        total += amount;
        let order_line = OrderLine {
            i_id: line.item,
            supply_w_id: line.supply_w,
            delivery_d: None,
            quantity: line.quantity,
            amount,
            dist_info: stock.dist_info(d).to_owned(),
        };
        txn.put(stock_key, stock.encode(), supplier);
        txn.put(
            key(ORDER_LINE, PRIMARY, &[w, d, o, number]),
            order_line.encode(),
            home,
        );
    }
    // The terminal output: the total after discount and taxes, in 10^-8
    // cents (rates are in basis points).
    black_box(total * (10_000 - customer.discount) * (10_000 + warehouse.tax + district.tax));
    txn.commit()?;
    Ok(Outcome::Committed)
}

/// Finds a customer of district (w, d) by id or by last name; returns its
/// id, key and row.
fn find_customer(txn: &mut Txn, w: i64, d: i64, who: &Who) -> Result<(i64, Vec<u8>, Customer)> {
    let c = match who {
        Who::Id(c) => *c,
        Who::LastName(last) => {
            let range = txn::prefix_range(&customer_name_prefix(w, d, last));
            let namesakes = txn.scan(&range, scan_placement(w), None)?;
            if namesakes.is_empty() {
                return Err(missing(txn, &format!("customer named {last}")));
            }
            last_int(&namesakes[(namesakes.len() - 1) / 2].0)
        }
    };
    let key = key(CUSTOMER, PRIMARY, &[w, d, c]);
    let customer = read(txn, &key, placement(w))?;
    Ok((c, key, customer))
}

/// Clause 2.5.2; the customer is (c_w, c_d, who).
fn payment(
    mut txn: Txn,
    (w, d): (i64, i64),
    (c_w, c_d, who): (i64, i64, &Who),
    amount: i64,
    h_id: i64,
) -> Result<Outcome> {
    let home = placement(w);
    let warehouse_key = key(WAREHOUSE, PRIMARY, &[w]);
    let mut warehouse: Warehouse = read(&mut txn, &warehouse_key, home)?;
    warehouse.ytd += amount;
    txn.put(warehouse_key, warehouse.encode(), home);
    let district_key = key(DISTRICT, PRIMARY, &[w, d]);
    let mut district: District = read(&mut txn, &district_key, home)?;
    district.ytd += amount;
    txn.put(district_key, district.encode(), home);

    let (c, customer_key, mut customer) = find_customer(&mut txn, c_w, c_d, who)?;
    customer.balance -= amount;
    customer.ytd_payment += amount;
    customer.payment_cnt += 1;
    if customer.credit == "BC" {
        // Clause 2.5.2.2: the payment, amount in dollars, ahead of C_DATA.
        let dollars = format!("{}.{:02}", amount / 100, amount % 100);
        let mut data = format!("{c} {c_d} {c_w} {d} {w} {dollars}|");
        data.push_str(&customer.data);
        data.truncate(500);
        customer.data = data;
    }
    txn.put(customer_key, customer.encode(), placement(c_w));
    let history = History {
        c_id: c,
        c_d_id: c_d,
        c_w_id: c_w,
        d_id: d,
        date: now_micros(),
        amount,
        data: format!("{}    {}", warehouse.name, district.name),
    };
    txn.put(key(HISTORY, PRIMARY, &[w, h_id]), history.encode(), home);
    txn.commit()?;
    Ok(Outcome::Committed)
}

/// Clause 2.6.2.
fn order_status(mut txn: Txn, w: i64, d: i64, who: &Who) -> Result<Outcome> {
    let (c, _, customer) = find_customer(&mut txn, w, d, who)?;
    let by_customer = range(ORDERS, SECONDARY, &[w, d, c]);
    let latest = txn.scan_ordered(&by_customer, scan_placement(w), Some(1), true)?;
    let Some((entry, _)) = latest.first() else {
        return Err(missing(
            &txn,
            &format!("an order of customer ({w}, {d}, {c})"),
        ));
    };
    let o = last_int(entry);
    let order: Order = read(&mut txn, &key(ORDERS, PRIMARY, &[w, d, o]), placement(w))?;
    let lines = txn.scan(
        &range(ORDER_LINE, PRIMARY, &[w, d, o]),
        scan_placement(w),
        None,
    )?;
    let lines: Vec<OrderLine> = lines.iter().map(|(_, v)| OrderLine::decode(v)).collect();
    black_box((customer.balance, order, lines));
    txn.commit()?;
    Ok(Outcome::Committed)
}

/// Clause 2.7.4, all ten districts in one transaction. A district without
/// undelivered orders is skipped.
fn delivery(mut txn: Txn, w: i64, carrier: i64) -> Result<Outcome> {
    let home = placement(w);
    let now = now_micros();
    for d in 1..=DISTRICTS {
        let oldest = txn.scan(
            &range(NEW_ORDER, PRIMARY, &[w, d]),
            scan_placement(w),
            Some(1),
        )?;
        let Some((new_order_key, _)) = oldest.into_iter().next() else {
            continue;
        };
        let o = last_int(&new_order_key);
        txn.delete(new_order_key, home);
        let order_key = key(ORDERS, PRIMARY, &[w, d, o]);
        let mut order: Order = read(&mut txn, &order_key, home)?;
        order.carrier_id = Some(carrier);
        let c = order.c_id;
        txn.put(order_key, order.encode(), home);
        let lines = range(ORDER_LINE, PRIMARY, &[w, d, o]);
        let mut sum = 0;
        for (line_key, value) in txn.scan(&lines, scan_placement(w), None)? {
            let mut line = OrderLine::decode(&value);
            line.delivery_d = Some(now);
            sum += line.amount;
            txn.put(line_key, line.encode(), home);
        }
        let customer_key = key(CUSTOMER, PRIMARY, &[w, d, c]);
        let mut customer: Customer = read(&mut txn, &customer_key, home)?;
        customer.balance += sum;
        customer.delivery_cnt += 1;
        txn.put(customer_key, customer.encode(), home);
    }
    txn.commit()?;
    Ok(Outcome::Committed)
}

/// Clause 2.8.2: distinct items of the district's last 20 orders whose
/// stock is below `threshold`.
fn stock_level(mut txn: Txn, w: i64, d: i64, threshold: i64) -> Result<Outcome> {
    let home = placement(w);
    let district: District = read(&mut txn, &key(DISTRICT, PRIMARY, &[w, d]), home)?;
    let next = district.next_o_id;
    let recent = KeyRange {
        start: Bound::Included(key(ORDER_LINE, PRIMARY, &[w, d, next - 20])),
        end: Bound::Excluded(key(ORDER_LINE, PRIMARY, &[w, d, next])),
    };
    let items: BTreeSet<i64> = txn
        .scan(&recent, scan_placement(w), None)?
        .iter()
        .map(|(_, v)| OrderLine::decode(v).i_id)
        .collect();
    let mut low = 0;
    for i in items {
        let stock: Stock = read(&mut txn, &key(STOCK, PRIMARY, &[w, i]), home)?;
        if stock.quantity < threshold {
            low += 1;
        }
    }
    black_box(low);
    txn.commit()?;
    Ok(Outcome::Committed)
}
