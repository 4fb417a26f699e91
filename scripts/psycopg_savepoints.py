"""Nested transactions as psycopg 3 runs them (conn.transaction() inside
conn.transaction() is SAVEPOINT / RELEASE / ROLLBACK TO), against each URL
given (Mako and PostgreSQL 15 alike; run by scripts/psycopg):
- an inner block that raises rolls back only its own writes;
- an error inside an inner block (a duplicate key) is recovered from by
  the rollback to its savepoint, and the outer transaction commits;
- three levels deep, prepared statements inside.
Both servers must give the same answers."""


import psycopg
from drivers import same_everywhere
from psycopg import errors


class Undo(Exception):
    pass


def answers(url):
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS drv_sp")
        conn.execute("CREATE TABLE drv_sp (id int PRIMARY KEY, v text)")
        with conn.transaction():
            conn.execute("INSERT INTO drv_sp VALUES (1, 'outer')")
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO drv_sp VALUES (2, 'inner')")
                    raise Undo()
            except Undo:
                pass
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO drv_sp VALUES (1, 'dup')")
            except errors.UniqueViolation:
                out.append("duplicate rolled back")
            with conn.transaction():
                conn.execute("INSERT INTO drv_sp VALUES (3, 'kept')")
                for i in range(10, 17):
                    try:
                        with conn.transaction():
                            conn.execute(
                                "INSERT INTO drv_sp VALUES (%s, %s)", (i, "deep"), prepare=True
                            )
                            if i % 2:
                                raise Undo()
                    except Undo:
                        pass
        out.append(conn.execute("SELECT id, v FROM drv_sp ORDER BY id").fetchall())
        conn.execute("DROP TABLE drv_sp")
    return out


def main():
    same_everywhere(
        answers,
        lambda r: r[0] == "duplicate rolled back",
        "nested transactions (savepoints): same on every server",
    )


if __name__ == "__main__":
    main()
