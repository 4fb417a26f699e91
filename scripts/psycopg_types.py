"""Date and time values through psycopg 3, in text and binary formats,
against each URL given (Mako and PostgreSQL 15 alike): Python's date,
datetime (naive and with an offset) and timedelta go in as parameters and
come back equal, the server's clock functions answer with the right Python
types, and both servers give the same answers. Run by scripts/psycopg."""

import datetime as dt
import sys

import psycopg

D = dt.date(2024, 2, 29)
TS = dt.datetime(2024, 1, 3, 4, 5, 6, 789000)
TZ = dt.datetime(2024, 1, 3, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
IV = dt.timedelta(days=3, seconds=7200, microseconds=5)


def answers(url):
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS drv_times")
        conn.execute(
            "CREATE TABLE drv_times (id int PRIMARY KEY, d date, ts timestamp,"
            " tz timestamptz, iv interval)"
        )
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            cur.execute("DELETE FROM drv_times")
            cur.execute("INSERT INTO drv_times VALUES (%s, %s, %s, %s, %s)", (1, D, TS, TZ, IV))
            cur.execute(
                "SELECT d, ts, tz, iv, d - %s, ts + %s, tz - %s FROM drv_times"
                " WHERE d = %s AND ts = %s AND tz = %s",
                (dt.date(2024, 1, 1), IV, IV, D, TS, TZ),
            )
            row = cur.fetchone()
            assert row is not None, f"{url}: the row was not found by its own values"
            assert row[:4] == (D, TS, TZ, IV), f"{url} binary={binary}: {row[:4]}"
            out.append(row)
            cur.execute("SELECT now(), current_date, localtimestamp, now() - now()")
            now, today, local, zero = cur.fetchone()
            assert isinstance(now, dt.datetime) and now.tzinfo is not None, now
            assert isinstance(today, dt.date) and not isinstance(today, dt.datetime), today
            assert isinstance(local, dt.datetime) and local.tzinfo is None, local
            assert zero == dt.timedelta(0), zero
            assert abs(now - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5), now
        conn.execute("DROP TABLE drv_times")
    return out


def main():
    results = [answers(url) for url in sys.argv[1:]]
    for url, r in zip(sys.argv[2:], results[1:]):
        assert r == results[0], f"{sys.argv[1]} answered {results[0]}, {url} answered {r}"
    print(f"psycopg date/time round trips: same answers from {len(results)} servers")


if __name__ == "__main__":
    main()
