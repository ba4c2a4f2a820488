"""Writing log lines: one insert per batch, duplicates ignored by (job, attempt, seq)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from models.messages import JobProgress, LogLine
from models.tables import Job, JobLog, JobProgressRow

logs_t: Table = JobLog.__table__  # type: ignore[attr-defined]
jobs_t: Table = Job.__table__  # type: ignore[attr-defined]
progress_t: Table = JobProgressRow.__table__  # type: ignore[attr-defined]


#: One statement for a batch of lines on PostgreSQL: the rows as arrays, lines of jobs that
#: no longer exist left out, duplicates ignored. Atomic on its own, so the logger runs it in
#: autocommit: one round trip, where BEGIN, a read of the known jobs, the insert and COMMIT were
#: four (on the path of every job in a chain, whose worker waits for the logger).
_INSERT_ARRAYS = """
INSERT INTO job_logs (job_id, attempt, seq, ts, level, message)
SELECT v.job_id, v.attempt, v.seq, v.ts, v.level, v.message
FROM unnest(
    %(job_id)s::uuid[], %(attempt)s::int[], %(seq)s::bigint[], %(ts)s::timestamptz[],
    %(level)s::text[], %(message)s::text[]
) AS v(job_id, attempt, seq, ts, level, message)
WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.id = v.job_id)
ON CONFLICT (job_id, attempt, seq) DO NOTHING
RETURNING 1
"""


async def insert_lines(conn: AsyncConnection, lines: Sequence[LogLine]) -> int:
    """Store lines of jobs that exist, once each; returns how many were new."""
    if not lines:
        return 0
    if conn.dialect.name == "postgresql":
        result = await conn.exec_driver_sql(
            _INSERT_ARRAYS,
            {
                "job_id": [ln.job_id for ln in lines],
                "attempt": [ln.attempt for ln in lines],
                "seq": [ln.seq for ln in lines],
                "ts": [ln.ts for ln in lines],
                "level": [ln.level.lower()[:16] for ln in lines],
                "message": [ln.message for ln in lines],
            },
        )
        return len(result.all())
    job_ids = list({line.job_id for line in lines})
    known = {r[0] for r in await conn.execute(select(jobs_t.c.id).where(jobs_t.c.id.in_(job_ids)))}
    rows: list[dict[str, Any]] = [
        {
            "job_id": ln.job_id,
            "attempt": ln.attempt,
            "seq": ln.seq,
            "ts": ln.ts,
            "level": ln.level.lower()[:16],
            "message": ln.message,
        }
        for ln in lines
        if ln.job_id in known
    ]
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(logs_t)
        .on_conflict_do_nothing(index_elements=["job_id", "attempt", "seq"])
        .returning(logs_t.c.seq)  # rowcount of an executemany is not reliable; count rows
    )
    result = await conn.execute(stmt, rows)
    return len(result.all())


async def keep_progress(conn: AsyncConnection, reports: Sequence[JobProgress]) -> int:
    """Keep the latest progress of each job, of jobs that exist: a report replaces the row
    only if it is newer (a later attempt, or later in the same one). Returns how many rows
    were written."""
    latest: dict[Any, JobProgress] = {}
    for p in reports:
        have = latest.get(p.job_id)
        if have is None or (p.attempt, p.ts) >= (have.attempt, have.ts):
            latest[p.job_id] = p
    if not latest:
        return 0
    known = await existing_jobs(conn, list(latest))
    rows = [
        {
            "job_id": p.job_id,
            "attempt": p.attempt,
            "fraction": p.fraction,
            "message": p.message,
            "updated_at": p.ts,
        }
        for p in latest.values()
        if p.job_id in known
    ]
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(progress_t)
    new, old = insert.excluded, progress_t.c
    stmt = insert.on_conflict_do_update(
        index_elements=["job_id"],
        set_={c: new[c] for c in ("attempt", "fraction", "message", "updated_at")},
        where=tuple_(new.attempt, new.updated_at) >= tuple_(old.attempt, old.updated_at),
    )
    await conn.execute(stmt, rows)
    return len(rows)


async def stored_counts(
    conn: AsyncConnection, attempts: Sequence[tuple[Any, int]]
) -> dict[tuple[Any, int], int]:
    """How many lines each of these (job, attempt) has stored (committed by anyone, or in this
    transaction); attempts of jobs that do not exist are absent."""
    if not attempts:
        return {}
    job_ids = list({job for job, _ in attempts})
    rows = await conn.execute(
        select(logs_t.c.job_id, logs_t.c.attempt, func.count())
        .where(logs_t.c.job_id.in_(job_ids))
        .group_by(logs_t.c.job_id, logs_t.c.attempt)
    )
    wanted = set(attempts)
    return {(r[0], r[1]): r[2] for r in rows if (r[0], r[1]) in wanted}


async def existing_jobs(conn: AsyncConnection, job_ids: Sequence[Any]) -> set[Any]:
    rows = await conn.execute(select(jobs_t.c.id).where(jobs_t.c.id.in_(list(job_ids))))
    return {r[0] for r in rows}


async def delete_older_than(conn: AsyncConnection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` lines older than ``cutoff`` (retention, in small batches)."""
    oldest = (
        select(logs_t.c.job_id, logs_t.c.attempt, logs_t.c.seq)
        .where(logs_t.c.ts < cutoff)
        .limit(limit)
    )
    key = tuple_(logs_t.c.job_id, logs_t.c.attempt, logs_t.c.seq)
    result = await conn.execute(delete(logs_t).where(key.in_(oldest)))
    return max(result.rowcount, 0)
