-- TPC-C consistency conditions (clause 3.3.2), one query each; the driver
-- compares the columns of each row.

-- name: condition_1
-- W_YTD = sum(D_YTD) for every warehouse.
SELECT w.w_id, w.w_ytd, sum(d.d_ytd)
  FROM warehouse w JOIN district d ON d.d_w_id = w.w_id
 GROUP BY w.w_id, w.w_ytd;

-- name: condition_2
-- D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID) for every district.
SELECT d.d_w_id, d.d_id, d.d_next_o_id - 1,
       (SELECT max(o_id) FROM orders WHERE o_w_id = d.d_w_id AND o_d_id = d.d_id),
       (SELECT max(no_o_id) FROM new_order WHERE no_w_id = d.d_w_id AND no_d_id = d.d_id)
  FROM district d;

-- name: condition_3
-- max(NO_O_ID) - min(NO_O_ID) + 1 = the number of new_order rows, per district.
SELECT no_w_id, no_d_id, max(no_o_id) - min(no_o_id) + 1, count(*)
  FROM new_order GROUP BY no_w_id, no_d_id;

-- name: condition_4
-- sum(O_OL_CNT) = the number of order_line rows, per district.
SELECT o.o_w_id, o.o_d_id, o.total,
       (SELECT count(*) FROM order_line WHERE ol_w_id = o.o_w_id AND ol_d_id = o.o_d_id)
  FROM (SELECT o_w_id, o_d_id, sum(o_ol_cnt) AS total FROM orders GROUP BY o_w_id, o_d_id) o;
