"""asyncpg as applications use it, against each URL given (Mako and
PostgreSQL 15 alike; run by scripts/psycopg):
- a pool: every release runs asyncpg's reset query
  (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`);
- executemany of a prepared INSERT with timestamptz parameters;
- nested transactions (savepoints): the inner one fails on a duplicate key
  and rolls back alone.
Both servers must give the same answers."""

import asyncio
import datetime

import asyncpg
from drivers import same_everywhere


async def answers(url):
    out = []
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    async with pool.acquire() as c:
        await c.execute("DROP TABLE IF EXISTS drv_apg")
        await c.execute("CREATE TABLE drv_apg (id int PRIMARY KEY, v text, at timestamptz)")
        day = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        await c.executemany(
            "INSERT INTO drv_apg VALUES ($1, $2, $3)",
            [(i, f"v{i}", day + datetime.timedelta(hours=i)) for i in range(5)],
        )
    for _ in range(3):  # each release resets the connection
        async with pool.acquire() as c:
            out.append(await c.fetchval("SELECT count(*) FROM drv_apg"))
    async with pool.acquire() as c:
        async with c.transaction():
            await c.execute("INSERT INTO drv_apg VALUES (10, 'x', now())")
            try:
                async with c.transaction():
                    await c.execute("INSERT INTO drv_apg VALUES (10, 'dup', now())")
            except asyncpg.UniqueViolationError:
                out.append("nested rolled back")
        row = await c.fetchrow("SELECT count(*), max(at) FROM drv_apg WHERE id < 10")
        out.append((row[0], row[1].isoformat()))
        out.append(await c.fetchval("SELECT count(*) FROM drv_apg"))
        await c.execute("DROP TABLE drv_apg")
    await pool.close()
    return out


def main():
    same_everywhere(
        lambda url: asyncio.run(answers(url)),
        lambda r: "nested rolled back" in r,
        "asyncpg pool, executemany, nested transactions: same on every server",
    )


if __name__ == "__main__":
    main()
