-- Payment (TPC-C clause 2.5): a customer pays; the warehouse's, district's
-- and customer's year-to-date figures move, and a history row records it.
-- 60% find the customer by last name, 15% pay through a remote warehouse.

-- name: bump_warehouse_ytd
UPDATE warehouse SET w_ytd = w_ytd + $1 WHERE w_id = $2;

-- name: warehouse
SELECT w_name, w_street_1, w_street_2, w_city, w_state, w_zip FROM warehouse WHERE w_id = $1;

-- name: bump_district_ytd
UPDATE district SET d_ytd = d_ytd + $1 WHERE d_w_id = $2 AND d_id = $3;

-- name: district
SELECT d_name, d_street_1, d_street_2, d_city, d_state, d_zip FROM district WHERE d_w_id = $1 AND d_id = $2;

-- name: customers_by_last_name
-- The driver takes the one in the middle (rounded up) of this ordering.
SELECT c_id FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_last = $3 ORDER BY c_first;

-- name: customer
SELECT c_first, c_middle, c_last, c_street_1, c_street_2, c_city, c_state, c_zip, c_phone,
       c_credit, c_credit_lim, c_discount, c_balance, c_since
  FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3;

-- name: customer_data
SELECT c_data FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3;

-- name: pay
-- $1 amount, $2 w_id, $3 d_id, $4 c_id
UPDATE customer
   SET c_balance = c_balance - $1, c_ytd_payment = c_ytd_payment + $1, c_payment_cnt = c_payment_cnt + 1
 WHERE c_w_id = $2 AND c_d_id = $3 AND c_id = $4;

-- name: pay_bad_credit
-- As pay, and $5 is the new c_data (the payment prepended, cut to 500).
UPDATE customer
   SET c_balance = c_balance - $1, c_ytd_payment = c_ytd_payment + $1, c_payment_cnt = c_payment_cnt + 1, c_data = $5
 WHERE c_w_id = $2 AND c_d_id = $3 AND c_id = $4;

-- name: insert_history
INSERT INTO history (h_id, h_c_id, h_c_d_id, h_c_w_id, h_d_id, h_w_id, h_date, h_amount, h_data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);
