-- New-Order (TPC-C clause 2.4): a customer orders 5 to 15 items. The
-- district hands out the order id; each line decrements its item's stock.
-- 1% of orders name an unused item and are rolled back by the driver.

-- name: customer_and_warehouse
-- $1 w_id, $2 d_id, $3 c_id
SELECT c_discount, c_last, c_credit, w_tax
  FROM customer, warehouse
 WHERE w_id = $1 AND c_w_id = w_id AND c_d_id = $2 AND c_id = $3;

-- name: district
SELECT d_next_o_id, d_tax FROM district WHERE d_w_id = $1 AND d_id = $2;

-- name: bump_next_order_id
UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = $1 AND d_id = $2;

-- name: insert_order
-- $1 o_id, $2 d_id, $3 w_id, $4 c_id, $5 entry date, $6 line count, $7 all local
INSERT INTO orders (o_id, o_d_id, o_w_id, o_c_id, o_entry_d, o_ol_cnt, o_all_local)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: insert_new_order
INSERT INTO new_order (no_o_id, no_d_id, no_w_id) VALUES ($1, $2, $3);

-- name: item
SELECT i_price, i_name, i_data FROM item WHERE i_id = $1;

-- name: stock
-- $1 item, $2 supplying warehouse; the district's s_dist_xx is chosen by the driver
SELECT s_quantity, s_data, s_dist_01, s_dist_02, s_dist_03, s_dist_04, s_dist_05,
       s_dist_06, s_dist_07, s_dist_08, s_dist_09, s_dist_10
  FROM stock WHERE s_i_id = $1 AND s_w_id = $2;

-- name: update_stock
-- $1 new quantity, $2 ordered quantity, $3 1 if remote else 0, $4 item, $5 warehouse
UPDATE stock
   SET s_quantity = $1, s_ytd = s_ytd + $2, s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + $3
 WHERE s_i_id = $4 AND s_w_id = $5;

-- name: insert_order_line
INSERT INTO order_line (ol_o_id, ol_d_id, ol_w_id, ol_number, ol_i_id, ol_supply_w_id, ol_quantity, ol_amount, ol_dist_info)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);
