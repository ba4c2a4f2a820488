"""Keep the job tables vacuumed when PostgreSQL does not.

Every job row is rewritten three or four times in its first seconds (pending → ready → running →
completed), and each attempt row twice; every rewrite leaves a dead version behind, in the heap
and in each index. PostgreSQL's autovacuum removes them. A server running with ``autovacuum =
off`` (this project's CI machines do) lets them pile up, and every lookup by id then walks
them: in ``bench latency`` the pass statement's CPU in PostgreSQL grew run after run, and with
it ready → running latency (13 → 30 ms p50 over a minute at 250 jobs/s; 26,700 dead job rows
beside 10,680 live ones).

So while it leads, the scheduler asks once whether autovacuum is on and, if it is off, runs
``VACUUM (ANALYZE)`` on the churned tables every ``scheduler_vacuum_seconds``, on a connection
of its own (a VACUUM takes no lock that blocks readers or writers, and skips the pages the
visibility map knows are clean, so its cost follows the rows changed since the last one). A
warning says why. With autovacuum on this does nothing: the server's own schedule is better.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

log = logging.getLogger(__name__)

#: Tables whose rows are rewritten as jobs move (the others only grow).
CHURNED = ("jobs", "job_attempts", "workers")


async def autovacuum_on(dsn: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute("SHOW autovacuum")
        row = await cursor.fetchone()
    return row is not None and row[0] == "on"


async def vacuum(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(CHURNED)}")


async def keep_vacuumed(dsn: str, every: float) -> None:
    """Run until cancelled: vacuum every ``every`` seconds if the server's autovacuum is off."""
    if every <= 0:
        return
    try:
        if await autovacuum_on(dsn):
            return
    except psycopg.Error as exc:
        log.warning(
            "could not tell whether autovacuum is on; not vacuuming",
            extra={"action": "scheduler.vacuum_failed", "error": str(exc)},
        )
        return
    log.warning(
        "PostgreSQL's autovacuum is off: the scheduler vacuums the job tables itself",
        extra={"action": "scheduler.vacuum_self", "every_seconds": every},
    )
    while True:
        await asyncio.sleep(every)
        try:
            await vacuum(dsn)
        except psycopg.Error as exc:
            log.warning(
                "could not vacuum the job tables",
                extra={"action": "scheduler.vacuum_failed", "error": str(exc)},
            )
