//! The initial population (clause 4.3.3), written with blind puts in
//! transactions of [`BATCH`] puts; the items and each warehouse load on
//! their own thread.

use std::sync::Arc;

use txn::{Db, Placement, Txn};

use crate::now_micros;
use crate::random::{Random, last_name};
use crate::schema::*;

/// Puts per loading transaction.
const BATCH: usize = 1000;

/// A loading transaction, committed every [`BATCH`] puts.
struct Loader<'a> {
    db: &'a Arc<Db>,
    txn: Txn,
    puts: usize,
}

impl<'a> Loader<'a> {
    fn new(db: &'a Arc<Db>) -> Self {
        Loader {
            db,
            txn: db.begin(),
            puts: 0,
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Arc<[u8]>, placement: Placement) {
        self.txn.put(key, value, placement);
        self.puts += 1;
        if self.puts == BATCH {
            self.commit();
        }
    }

    fn commit(&mut self) {
        let txn = std::mem::replace(&mut self.txn, self.db.begin());
        self.puts = 0;
        // Loaders write disjoint keys and read nothing, so nothing can
        // conflict with them.
        if let Err(e) = txn.commit() {
            panic!("loading transaction failed: {e}");
        }
    }

    /// Commits what is left.
    fn finish(mut self) {
        if self.puts > 0 {
            self.commit();
        }
    }
}

/// Loads the items and `warehouses` warehouses into `db`.
pub fn load(db: &Arc<Db>, warehouses: i64) {
    std::thread::scope(|s| {
        s.spawn(|| load_items(db));
        for w in 1..=warehouses {
            s.spawn(move || load_warehouse(db, w));
        }
    });
}

fn load_items(db: &Arc<Db>) {
    let mut rng = Random::new(0x17E4);
    let mut out = Loader::new(db);
    for i in 1..=ITEMS {
        let item = Item {
            im_id: rng.int(1, 10_000),
            name: rng.astring(14, 24),
            price: rng.int(100, 10_000),
            data: rng.data_with_original(),
        };
        out.put(
            key(ITEM, PRIMARY, &[i]),
            item.encode(),
            Placement::Replicated,
        );
    }
    out.finish();
}

/// One warehouse: its row, stock, districts, customers with their history,
/// and orders with their lines and new orders.
fn load_warehouse(db: &Arc<Db>, w: i64) {
    let mut rng = Random::new(0x3A7E_0000 + w as u64);
    let mut out = Loader::new(db);
    let home = placement(w);
    let now = now_micros();
    let warehouse = Warehouse {
        name: rng.astring(6, 10),
        street_1: rng.astring(10, 20),
        street_2: rng.astring(10, 20),
        city: rng.astring(10, 20),
        state: rng.astring(2, 2),
        zip: rng.zip(),
        tax: rng.int(0, 2000),
        ytd: 30_000_000,
    };
    out.put(key(WAREHOUSE, PRIMARY, &[w]), warehouse.encode(), home);
    for i in 1..=ITEMS {
        let stock = Stock {
            quantity: rng.int(10, 100),
            dists: rng.astring(240, 240),
            ytd: 0,
            order_cnt: 0,
            remote_cnt: 0,
            data: rng.data_with_original(),
        };
        out.put(key(STOCK, PRIMARY, &[w, i]), stock.encode(), home);
    }
    for d in 1..=DISTRICTS {
        let district = District {
            name: rng.astring(6, 10),
            street_1: rng.astring(10, 20),
            street_2: rng.astring(10, 20),
            city: rng.astring(10, 20),
            state: rng.astring(2, 2),
            zip: rng.zip(),
            tax: rng.int(0, 2000),
            ytd: 3_000_000,
            next_o_id: ORDERS_LOADED + 1,
        };
        out.put(key(DISTRICT, PRIMARY, &[w, d]), district.encode(), home);
        load_customers(&mut out, &mut rng, w, d, now);
        load_orders(&mut out, &mut rng, w, d, now);
    }
    out.finish();
}

fn load_customers(out: &mut Loader<'_>, rng: &mut Random, w: i64, d: i64, now: i64) {
    let home = placement(w);
    for c in 1..=CUSTOMERS {
        let last = if c <= 1000 {
            last_name((c - 1) as u32)
        } else {
            rng.load_last_name()
        };
        let customer = Customer {
            first: rng.astring(8, 16),
            middle: "OE".into(),
            last,
            street_1: rng.astring(10, 20),
            street_2: rng.astring(10, 20),
            city: rng.astring(10, 20),
            state: rng.astring(2, 2),
            zip: rng.zip(),
            phone: rng.nstring(16, 16),
            since: now,
            credit: if rng.percent(10) { "BC" } else { "GC" }.into(),
            credit_lim: 5_000_000,
            discount: rng.int(0, 5000),
            balance: -1000,
            ytd_payment: 1000,
            payment_cnt: 1,
            delivery_cnt: 0,
            data: rng.astring(300, 500),
        };
        let by_name = customer_name_key(w, d, &customer.last, &customer.first, c);
        out.put(by_name, key_only(), home);
        out.put(key(CUSTOMER, PRIMARY, &[w, d, c]), customer.encode(), home);
        let history = History {
            c_id: c,
            c_d_id: d,
            c_w_id: w,
            d_id: d,
            date: now,
            amount: 1000,
            data: rng.astring(12, 24),
        };
        let h_id = (d - 1) * CUSTOMERS + c;
        out.put(key(HISTORY, PRIMARY, &[w, h_id]), history.encode(), home);
    }
}

fn load_orders(out: &mut Loader<'_>, rng: &mut Random, w: i64, d: i64, now: i64) {
    let home = placement(w);
    // O_C_ID is a random permutation of the customer ids.
    let mut customers: Vec<i64> = (1..=CUSTOMERS).collect();
    for i in (1..customers.len()).rev() {
        customers.swap(i, rng.int(0, i as i64) as usize);
    }
    for (o, &c) in (1..=ORDERS_LOADED).zip(&customers) {
        let delivered = o < FIRST_NEW_ORDER;
        let order = Order {
            c_id: c,
            entry_d: now,
            carrier_id: delivered.then(|| rng.int(1, 10)),
            ol_cnt: rng.int(5, 15),
            all_local: 1,
        };
        for number in 1..=order.ol_cnt {
            let line = OrderLine {
                i_id: rng.int(1, ITEMS),
                supply_w_id: w,
                delivery_d: delivered.then_some(now),
                quantity: 5,
                amount: if delivered { 0 } else { rng.int(1, 999_999) },
                dist_info: rng.astring(24, 24),
            };
            out.put(
                key(ORDER_LINE, PRIMARY, &[w, d, o, number]),
                line.encode(),
                home,
            );
        }
        out.put(key(ORDERS, SECONDARY, &[w, d, c, o]), key_only(), home);
        out.put(key(ORDERS, PRIMARY, &[w, d, o]), order.encode(), home);
        if !delivered {
            out.put(key(NEW_ORDER, PRIMARY, &[w, d, o]), key_only(), home);
        }
    }
}
