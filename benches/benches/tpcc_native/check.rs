//! Consistency conditions 1-4 of clause 3.3.2, checked after a run with one
//! read-only transaction per warehouse and per district.

use std::sync::Arc;

use txn::{Db, Entry, Error, KeyRange, Result, Txn};

use crate::schema::*;

/// One condition's outcome.
pub struct Condition {
    /// What the condition states.
    pub statement: &'static str,
    /// The first violation found, if any.
    pub violation: Option<String>,
}

/// Checks conditions 1-4 on warehouses `1..=warehouses`.
pub fn check(db: &Arc<Db>, warehouses: i64) -> Result<Vec<Condition>> {
    let mut conditions = [
        "3.3.2.1 W_YTD = sum(D_YTD)",
        "3.3.2.2 D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID)",
        "3.3.2.3 max(NO_O_ID) - min(NO_O_ID) + 1 = count(new_order)",
        "3.3.2.4 sum(O_OL_CNT) = count(order_line)",
    ]
    .map(|statement| Condition {
        statement,
        violation: None,
    });
    let mut report = |n: usize, what: String| {
        conditions[n].violation.get_or_insert(what);
    };
    for w in 1..=warehouses {
        let mut txn = db.begin();
        let warehouse: Warehouse = read(&mut txn, w, &key(WAREHOUSE, PRIMARY, &[w]))?;
        let districts = scan(&mut txn, w, &range(DISTRICT, PRIMARY, &[w]))?;
        txn.commit()?;
        let d_ytd: i64 = districts.iter().map(|(_, v)| District::decode(v).ytd).sum();
        if warehouse.ytd != d_ytd {
            report(
                0,
                format!("warehouse {w}: W_YTD {} ≠ {d_ytd}", warehouse.ytd),
            );
        }

        for d in 1..=DISTRICTS {
            let mut txn = db.begin();
            let district: District = read(&mut txn, w, &key(DISTRICT, PRIMARY, &[w, d]))?;
            let orders = scan(&mut txn, w, &range(ORDERS, PRIMARY, &[w, d]))?;
            let new_orders = scan(&mut txn, w, &range(NEW_ORDER, PRIMARY, &[w, d]))?;
            let lines = scan(&mut txn, w, &range(ORDER_LINE, PRIMARY, &[w, d]))?;
            txn.commit()?;

            let at = format!("district ({w}, {d})");
            let last_id = |rows: &[Entry]| rows.last().map(|(k, _)| last_int(k));
            let max_o = last_id(&orders);
            let max_no = last_id(&new_orders);
            let min_no = new_orders.first().map(|(k, _)| last_int(k));
            let last_o = Some(district.next_o_id - 1);
            if max_o != last_o || max_no != last_o {
                report(
                    1,
                    format!(
                        "{at}: D_NEXT_O_ID - 1 = {last_o:?}, max(O_ID) = {max_o:?}, max(NO_O_ID) = {max_no:?}"
                    ),
                );
            }
            if let (Some(min), Some(max)) = (min_no, max_no)
                && max - min + 1 != new_orders.len() as i64
            {
                report(2, format!("{at}: {max} - {min} + 1 ≠ {}", new_orders.len()));
            }
            let ol_cnt: i64 = orders.iter().map(|(_, v)| Order::decode(v).ol_cnt).sum();
            if ol_cnt != lines.len() as i64 {
                report(3, format!("{at}: sum(O_OL_CNT) {ol_cnt} ≠ {}", lines.len()));
            }
        }
    }
    Ok(conditions.into())
}

/// Reads a row of warehouse `w` that must exist.
fn read<R: Row>(txn: &mut Txn, w: i64, key: &[u8]) -> Result<R> {
    match txn.get(key, placement(w))? {
        Some(v) => Ok(R::decode(&v)),
        None => Err(Error::internal(format!("row {key:?} is missing"))),
    }
}

/// The rows of warehouse `w` in `range`, in key order.
fn scan(txn: &mut Txn, w: i64, range: &KeyRange) -> Result<Vec<Entry>> {
    txn.scan(range, scan_placement(w), None)
}
