-- Stock-Level (TPC-C clause 2.8, read-only): how many distinct items of
-- the district's last 20 orders are below a stock threshold.

-- name: next_order_id
SELECT d_next_o_id FROM district WHERE d_w_id = $1 AND d_id = $2;

-- name: low_stock
-- $1 w_id, $2 d_id, $3 next order id, $4 next order id - 20, $5 threshold
SELECT count(DISTINCT s_i_id)
  FROM order_line, stock
 WHERE ol_w_id = $1 AND ol_d_id = $2 AND ol_o_id < $3 AND ol_o_id >= $4
   AND s_w_id = $1 AND s_i_id = ol_i_id AND s_quantity < $5;
