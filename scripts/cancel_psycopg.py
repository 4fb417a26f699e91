"""psycopg 3's conn.cancel() from another thread, against each URL given:
the running statement must end within a second with QueryCanceled
(SQLSTATE 57014), and the connection must serve the next statement.
Run by scripts/psycopg against Mako and PostgreSQL 15 alike."""

import sys
import threading
import time

import psycopg

LONG = "SELECT count(*) FROM slow a, slow b, slow c WHERE a.v + b.v + c.v < 0"


def check(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE slow (id INT PRIMARY KEY, v INT)")
        rows = ",".join(f"({i}, {i})" for i in range(1000))
        conn.execute(f"INSERT INTO slow VALUES {rows}")
        sent = []

        def cancel_later():
            time.sleep(0.7)
            sent.append(time.monotonic())
            conn.cancel()

        canceller = threading.Thread(target=cancel_later)
        canceller.start()
        try:
            conn.execute(LONG)
            raise AssertionError(f"{url}: the statement was not cancelled")
        except psycopg.errors.QueryCanceled as e:
            took = time.monotonic() - sent[0]
            assert e.sqlstate == "57014", e.sqlstate
        canceller.join()
        assert took < 1.0, f"{url}: cancel took {took:.3f} s"
        assert conn.execute("SELECT 1").fetchone()[0] == 1
        print(f"cancelled in {took * 1000:.0f} ms, then served: {url}")


for url in sys.argv[1:]:
    check(url)
