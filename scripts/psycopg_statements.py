"""Prepared statements as psycopg 3 uses them, against each URL given (Mako
and PostgreSQL 15 alike; run by scripts/psycopg):
- a statement run five times or more is prepared on the server; after a
  schema change (a new unique index, a new column) it sees the new
  definition: the index is enforced, the column takes its default;
- the 40001 retry loop's shape: statements prepared inside a transaction,
  then rollback() (psycopg sends DEALLOCATE ALL when it must) and the
  connection goes on; DISCARD ALL forgets them too;
- foreign keys: a violation is 23503 through prepared statements too.
Both servers must give the same answers."""


import psycopg
from drivers import same_everywhere
from psycopg import errors


def answers(url):
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS drv_stmt_child")
        conn.execute("DROP TABLE IF EXISTS drv_stmt")
        conn.execute("CREATE TABLE drv_stmt (a int PRIMARY KEY, b int)")
        for i in range(1, 8):
            conn.execute("INSERT INTO drv_stmt VALUES (%s, %s)", (i, i), prepare=True)
        conn.execute("CREATE UNIQUE INDEX drv_stmt_b ON drv_stmt (b)")
        try:
            conn.execute("INSERT INTO drv_stmt VALUES (%s, %s)", (10, 1), prepare=True)
            out.append("duplicate inserted")
        except errors.UniqueViolation:
            out.append("unique violation")
        conn.execute("ALTER TABLE drv_stmt ADD COLUMN c int DEFAULT 7")
        conn.execute("INSERT INTO drv_stmt VALUES (%s, %s)", (11, 11), prepare=True)
        out.append(conn.execute("SELECT a, b, c FROM drv_stmt WHERE a = 11").fetchall())

        conn.execute(
            "CREATE TABLE drv_stmt_child (id int PRIMARY KEY, a int REFERENCES drv_stmt ON DELETE CASCADE)"
        )
        for i in range(1, 7):
            conn.execute("INSERT INTO drv_stmt_child VALUES (%s, %s)", (i, i), prepare=True)
        try:
            conn.execute("INSERT INTO drv_stmt_child VALUES (%s, %s)", (99, 99), prepare=True)
            out.append("orphan inserted")
        except errors.ForeignKeyViolation:
            out.append("foreign key violation")
        conn.execute("DELETE FROM drv_stmt WHERE a <= %s", (3,), prepare=True)
        out.append(conn.execute("SELECT count(*) FROM drv_stmt_child").fetchone())

    with psycopg.connect(url) as conn:
        for attempt in range(3):
            for i in range(8):
                conn.execute("SELECT b FROM drv_stmt WHERE a = %s", (i,), prepare=True)
            conn.rollback()
        out.append(conn.execute("SELECT count(*) FROM drv_stmt").fetchone())
        conn.execute("DEALLOCATE ALL")
        conn.commit()
        conn.autocommit = True
        conn.execute("DISCARD ALL")
        for i in range(6):
            conn.execute("SELECT b FROM drv_stmt WHERE a = %s", (i,), prepare=True)
        out.append(conn.execute("SELECT b FROM drv_stmt WHERE a = %s", (5,), prepare=True).fetchone())
        conn.execute("DROP TABLE drv_stmt_child")
        conn.execute("DROP TABLE drv_stmt")
    return out


def main():
    same_everywhere(
        answers,
        lambda r: r[0] == "unique violation" and r[2] == "foreign key violation",
        "prepared statements, schema changes, DEALLOCATE, foreign keys: same on every server",
    )


if __name__ == "__main__":
    main()
