"""Keep the job tables vacuumed when PostgreSQL does not.

Every job row is rewritten three or four times in its first seconds (pending → ready → running →
completed), and each attempt row twice; every rewrite leaves a dead version behind, in the heap
and in each index. PostgreSQL's autovacuum removes them. A server running with ``autovacuum =
off`` (this project's CI machines do) lets them pile up, and every lookup by id then walks
them: in ``bench latency`` the pass statement's CPU in PostgreSQL grew run after run, and with
it ready → running latency (13 → 30 ms p50 over a minute at 250 jobs/s; 26,700 dead job rows
beside 10,680 live ones).

So while it leads, the scheduler asks once whether autovacuum is on and, if it is off, runs
``VACUUM`` on the churned tables every ``scheduler_vacuum_seconds``, on a connection of its own
(a VACUUM takes no lock that blocks readers or writers, and skips the pages the visibility map
knows are clean, so its cost follows the rows changed since the last one). A warning says why.
With autovacuum on this does nothing: the server's own schedule is better.

``ANALYZE`` follows autovacuum's own rule instead of the timer: a table is analyzed once the
rows changed since its last analysis exceed ``autovacuum_analyze_threshold`` +
``autovacuum_analyze_scale_factor`` × its rows (50 + 10 % by default). An ANALYZE samples
30,000 rows whatever the change: with 1,000,000 jobs it took ~210 ms against ~27 ms for the
VACUUM, so analyzing every 10 s cost a steady 2 % of a core on a big table for statistics that
had not moved. (``bench pass`` A/B, two pairs: no difference in pass latency either way beyond
its run-to-run noise; this is background CPU saved, not a latency fix.)
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


#: The churned tables whose statistics are stale by autovacuum's rule.
_STALE = """
SELECT c.relname FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.relname = ANY(%s) AND s.n_mod_since_analyze >
      current_setting('autovacuum_analyze_threshold')::float8
      + current_setting('autovacuum_analyze_scale_factor')::float8 * GREATEST(c.reltuples, 0)
ORDER BY c.relname
"""


async def vacuum(dsn: str) -> list[str]:
    """VACUUM the churned tables, then ANALYZE those autovacuum would; returns the latter."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"VACUUM {', '.join(CHURNED)}")
        cursor = await conn.execute(_STALE, (list(CHURNED),))
        stale = [row[0] for row in await cursor.fetchall()]
        if stale:
            await conn.execute(f"ANALYZE {', '.join(stale)}")
    return stale


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
