//! The nine TPC-C tables (clause 1.3) as keys and compact binary rows.
//!
//! Keys follow the keyspace of `kv::keys`: `<table id><index id>` then the
//! key columns in keycode's order-preserving encoding. Every key starts with
//! a warehouse id, whose encoding is hashed for placement, except the item
//! table, which is replicated (as in the SQL schema). Index 1 holds the rows;
//! the two secondary indexes TPC-C needs are index 2 of their table, with
//! every column in the key and an empty value:
//!
//! | table | primary key | secondary index 2 |
//! |---|---|---|
//! | warehouse | w | |
//! | district | w, d | |
//! | customer | w, d, c | w, d, c_last, c_first, c (lookup by last name) |
//! | history | w, h_id (TPC-C gives it no key; h_id is unique per writer) | |
//! | orders | w, d, o | w, d, c, o (a customer's latest order) |
//! | new_order | w, d, o | |
//! | order_line | w, d, o, number | |
//! | item | i | |
//! | stock | w, i | |
//!
//! Row values are the non-key columns in declaration order: integers as
//! 8-byte little-endian (money in cents, rates in basis points, times in
//! microseconds since the Unix epoch), nullable integers with a presence
//! byte, strings with a 2-byte length prefix.

use std::sync::Arc;

use kv::keycode::{KeyPart, decode, encode_int, encode_text};
use kv::keys::{IndexId, PRIMARY_INDEX, TableId, index_prefix, partition_hash};
use txn::{KeyRange, Placement, ScanPlacement, prefix_range};

/// Table ids, in the user range of the keyspace.
pub const WAREHOUSE: TableId = 1000;
/// See [`WAREHOUSE`].
pub const DISTRICT: TableId = 1001;
/// See [`WAREHOUSE`].
pub const CUSTOMER: TableId = 1002;
/// See [`WAREHOUSE`].
pub const HISTORY: TableId = 1003;
/// See [`WAREHOUSE`].
pub const ORDERS: TableId = 1004;
/// See [`WAREHOUSE`].
pub const NEW_ORDER: TableId = 1005;
/// See [`WAREHOUSE`].
pub const ORDER_LINE: TableId = 1006;
/// See [`WAREHOUSE`].
pub const ITEM: TableId = 1007;
/// See [`WAREHOUSE`].
pub const STOCK: TableId = 1008;

/// The index holding a table's rows.
pub const PRIMARY: IndexId = PRIMARY_INDEX;
/// Customers by (w, d, c_last, c_first, c); orders by (w, d, c, o).
pub const SECONDARY: IndexId = 2;

/// Districts per warehouse (clause 4.3.3.1).
pub const DISTRICTS: i64 = 10;
/// Customers per district.
pub const CUSTOMERS: i64 = 3000;
/// Orders per district at load.
pub const ORDERS_LOADED: i64 = 3000;
/// The first loaded order that is still undelivered (the last 900 are).
pub const FIRST_NEW_ORDER: i64 = 2101;
/// Items, and stock rows per warehouse.
pub const ITEMS: i64 = 100_000;
/// Length of each S_DIST_xx string.
pub const DIST_INFO_LEN: usize = 24;

/// A key of `(table, index)` made of integer columns.
pub fn key(table: TableId, index: IndexId, cols: &[i64]) -> Vec<u8> {
    let mut k = index_prefix(table, index);
    k.reserve(9 * cols.len());
    for &c in cols {
        encode_int(&mut k, c);
    }
    k
}

/// The customer-by-name index entry of a customer.
pub fn customer_name_key(w: i64, d: i64, last: &str, first: &str, c: i64) -> Vec<u8> {
    let mut k = customer_name_prefix(w, d, last);
    encode_text(&mut k, first);
    encode_int(&mut k, c);
    k
}

/// The prefix of every customer-by-name entry with last name `last`. Text
/// encodings are terminated, so no longer name shares it.
pub fn customer_name_prefix(w: i64, d: i64, last: &str) -> Vec<u8> {
    let mut k = key(CUSTOMER, SECONDARY, &[w, d]);
    encode_text(&mut k, last);
    k
}

/// Every key starting with the integer columns `cols`.
pub fn range(table: TableId, index: IndexId, cols: &[i64]) -> KeyRange {
    prefix_range(&key(table, index, cols))
}

/// The last key column, an integer (the id a secondary index entry points
/// to, or the order id of a new_order row).
pub fn last_int(key: &[u8]) -> i64 {
    let mut tail = &key[key.len().saturating_sub(9)..];
    match decode(&mut tail) {
        Ok(KeyPart::Int(v)) => v,
        other => panic!("key does not end with an integer: {other:?}"),
    }
}

/// The partition hash of warehouse `w`'s rows: that of its encoded id.
fn partition(w: i64) -> u64 {
    let mut col = Vec::with_capacity(9);
    encode_int(&mut col, w);
    partition_hash(&col)
}

/// Where the rows of warehouse `w` live.
pub fn placement(w: i64) -> Placement {
    Placement::Partitioned(partition(w))
}

/// Scans within the rows of warehouse `w`.
pub fn scan_placement(w: i64) -> ScanPlacement {
    ScanPlacement::Partitioned(partition(w))
}

/// The value of a new_order row or a secondary index entry, whose columns
/// are all in the key.
pub fn key_only() -> Arc<[u8]> {
    Arc::from(&[][..])
}

/// A column type of the row encoding.
trait Field: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn take(input: &mut &[u8]) -> Self;
}

fn take_bytes<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    assert!(input.len() >= n, "row shorter than its schema");
    let (head, tail) = input.split_at(n);
    *input = tail;
    head
}

impl Field for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }

    fn take(input: &mut &[u8]) -> Self {
        i64::from_le_bytes(take_bytes(input, 8).try_into().expect("8 bytes"))
    }
}

impl Field for Option<i64> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => {
                out.push(1);
                v.put(out);
            }
            None => out.push(0),
        }
    }

    fn take(input: &mut &[u8]) -> Self {
        (take_bytes(input, 1)[0] == 1).then(|| i64::take(input))
    }
}

impl Field for String {
    fn put(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.len()).expect("row strings are short");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.as_bytes());
    }

    fn take(input: &mut &[u8]) -> Self {
        let len = u16::from_le_bytes(take_bytes(input, 2).try_into().expect("2 bytes"));
        let bytes = take_bytes(input, len as usize).to_vec();
        String::from_utf8(bytes).expect("row strings are UTF-8")
    }
}

/// A row value: its non-key columns.
pub trait Row: Sized {
    /// The value stored under the row's key.
    fn encode(&self) -> Arc<[u8]>;
    /// The row stored in `bytes` (which this benchmark wrote).
    fn decode(bytes: &[u8]) -> Self;
}

/// Declares row structs and their [`Row`] encoding, fields in order.
macro_rules! rows {
    ($($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* })*) => {$(
        $(#[$doc])*
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl Row for $name {
            fn encode(&self) -> Arc<[u8]> {
                let mut out = Vec::with_capacity(64);
                $(Field::put(&self.$field, &mut out);)*
                Arc::from(out)
            }

            fn decode(mut bytes: &[u8]) -> Self {
                let input = &mut bytes;
                let row = $name { $($field: Field::take(input),)* };
                assert!(input.is_empty(), "row longer than its schema");
                row
            }
        }
    )*};
}

rows! {
    /// A warehouse; key (w).
    Warehouse {
        /// W_NAME.
        name: String,
        /// W_STREET_1.
        street_1: String,
        /// W_STREET_2.
        street_2: String,
        /// W_CITY.
        city: String,
        /// W_STATE.
        state: String,
        /// W_ZIP.
        zip: String,
        /// W_TAX, in basis points.
        tax: i64,
        /// W_YTD, in cents.
        ytd: i64,
    }

    /// A district; key (w, d).
    District {
        /// D_NAME.
        name: String,
        /// D_STREET_1.
        street_1: String,
        /// D_STREET_2.
        street_2: String,
        /// D_CITY.
        city: String,
        /// D_STATE.
        state: String,
        /// D_ZIP.
        zip: String,
        /// D_TAX, in basis points.
        tax: i64,
        /// D_YTD, in cents.
        ytd: i64,
        /// D_NEXT_O_ID: the id the next New-Order takes.
        next_o_id: i64,
    }

    /// A customer; key (w, d, c).
    Customer {
        /// C_FIRST.
        first: String,
        /// C_MIDDLE.
        middle: String,
        /// C_LAST.
        last: String,
        /// C_STREET_1.
        street_1: String,
        /// C_STREET_2.
        street_2: String,
        /// C_CITY.
        city: String,
        /// C_STATE.
        state: String,
        /// C_ZIP.
        zip: String,
        /// C_PHONE.
        phone: String,
        /// C_SINCE.
        since: i64,
        /// C_CREDIT: "GC" or "BC" (bad credit: Payment records in C_DATA).
        credit: String,
        /// C_CREDIT_LIM, in cents.
        credit_lim: i64,
        /// C_DISCOUNT, in basis points.
        discount: i64,
        /// C_BALANCE, in cents.
        balance: i64,
        /// C_YTD_PAYMENT, in cents.
        ytd_payment: i64,
        /// C_PAYMENT_CNT.
        payment_cnt: i64,
        /// C_DELIVERY_CNT.
        delivery_cnt: i64,
        /// C_DATA, 300-500 characters.
        data: String,
    }

    /// A payment record; key (w, h_id).
    History {
        /// H_C_ID.
        c_id: i64,
        /// H_C_D_ID.
        c_d_id: i64,
        /// H_C_W_ID.
        c_w_id: i64,
        /// H_D_ID.
        d_id: i64,
        /// H_DATE.
        date: i64,
        /// H_AMOUNT, in cents.
        amount: i64,
        /// H_DATA.
        data: String,
    }

    /// An order; key (w, d, o).
    Order {
        /// O_C_ID.
        c_id: i64,
        /// O_ENTRY_D.
        entry_d: i64,
        /// O_CARRIER_ID, set by Delivery.
        carrier_id: Option<i64>,
        /// O_OL_CNT.
        ol_cnt: i64,
        /// O_ALL_LOCAL: 1 when every line is supplied by the home warehouse.
        all_local: i64,
    }

    /// An order line; key (w, d, o, number).
    OrderLine {
        /// OL_I_ID.
        i_id: i64,
        /// OL_SUPPLY_W_ID.
        supply_w_id: i64,
        /// OL_DELIVERY_D, set by Delivery.
        delivery_d: Option<i64>,
        /// OL_QUANTITY.
        quantity: i64,
        /// OL_AMOUNT, in cents.
        amount: i64,
        /// OL_DIST_INFO.
        dist_info: String,
    }

    /// An item; key (i), replicated.
    Item {
        /// I_IM_ID.
        im_id: i64,
        /// I_NAME.
        name: String,
        /// I_PRICE, in cents.
        price: i64,
        /// I_DATA.
        data: String,
    }

    /// The stock of one item in one warehouse; key (w, i).
    Stock {
        /// S_QUANTITY.
        quantity: i64,
        /// S_DIST_01 to S_DIST_10, each [`DIST_INFO_LEN`] characters, in
        /// one string.
        dists: String,
        /// S_YTD.
        ytd: i64,
        /// S_ORDER_CNT.
        order_cnt: i64,
        /// S_REMOTE_CNT.
        remote_cnt: i64,
        /// S_DATA.
        data: String,
    }
}

impl Stock {
    /// S_DIST_xx for district `d`.
    pub fn dist_info(&self, d: i64) -> &str {
        let at = (d as usize - 1) * DIST_INFO_LEN;
        &self.dists[at..at + DIST_INFO_LEN]
    }
}
