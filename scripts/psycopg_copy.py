"""COPY through psycopg 3 (cursor.copy) against each URL given (Mako and
PostgreSQL 15 alike; run by scripts/psycopg): write_row of 2500 rows with
tabs, NULLs, timestamptz and numeric in text format; COPY (query) TO
STDOUT read back with rows(); CSV inside a transaction; a duplicate key
fails the whole COPY (nothing of it stays). Both must answer the same."""

import datetime

import psycopg
from drivers import same_everywhere


def answers(url):
    out = []
    day = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS drv_copy")
        conn.execute(
            "CREATE TABLE drv_copy (id int PRIMARY KEY, name text, at timestamptz, amount numeric(8,2))"
        )
        with conn.cursor() as cur:
            with cur.copy("COPY drv_copy (id, name, at, amount) FROM STDIN") as copy:
                for i in range(2500):
                    copy.write_row((i, f"n\t{i}" if i % 7 else None, day, i / 4))
            out.append(cur.rowcount)
            with cur.copy(
                "COPY (SELECT id, name, amount FROM drv_copy WHERE id < 3 ORDER BY id) TO STDOUT"
            ) as copy:
                out.append(list(copy.rows()))
            with conn.transaction():
                with cur.copy("COPY drv_copy (id, name) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write('9000,"x,y"\n9001,\n')
            out.append(conn.execute("SELECT count(*), sum(amount) FROM drv_copy").fetchone())
            try:
                with cur.copy("COPY drv_copy (id) FROM STDIN") as copy:
                    copy.write("9002\n9000\n")
            except psycopg.Error as e:
                out.append(e.sqlstate)
            out.append(conn.execute("SELECT count(*) FROM drv_copy").fetchone())
        conn.execute("DROP TABLE drv_copy")
    return out


def main():
    same_everywhere(
        answers,
        lambda r: r[0] == 2500 and r[3] == "23505",
        "COPY FROM STDIN / TO STDOUT through psycopg: same on every server",
    )


if __name__ == "__main__":
    main()
