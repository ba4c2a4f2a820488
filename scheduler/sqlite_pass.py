"""A pass's writes on SQLite (the embedded default, and any database without the PostgreSQL
statement of :mod:`scheduler.pass_sql`): the statements of one transaction, with the same
conditions (``WHERE status = from AND attempts = n``) and the same ``RETURNING`` of the
dispatch fields. Job columns come from :data:`scheduler.rows.JOB_COLUMNS`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.enums import WorkerState
from models.tables import BreakerRow
from scheduler import store
from scheduler.pass_store import Won
from scheduler.rows import JOB_COLUMNS, JobWrite, PassWrite
from scheduler.store import Loaded, attempts_t, jobs, workers_t
from scheduler.values import Placement

breakers_t = BreakerRow.__table__  # type: ignore[attr-defined]


class SqlitePassStore:
    """The pass as statements of one transaction (the embedded default, and any database
    without the PostgreSQL statement)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        #: Unused: one process owns an SQLite file, so nothing else could lead.
        self.epoch: int | None = None

    async def read_pending(
        self, ids: Sequence[uuid.UUID] | None, known: Container[uuid.UUID], limit: int
    ) -> Loaded:
        async with self.engine.connect() as conn:
            return await store.load_pending(conn, ids, known, limit=limit)

    async def write(self, w: PassWrite) -> Won:
        async with self.engine.begin() as conn:
            won = await apply(conn, w.jobs, w.now)
            await drop_attempts(conn, w.attempts.drops)
            opened = [p for p in w.placements if p.job_id in won]
            await insert_attempts(conn, [_opened(p, w.now) for p in opened])
            await finish_attempts(conn, w.attempts.closes)
            await release_attempts(conn, w.attempts.releases, w.now)
            await upsert_workers(conn, w.workers)
            await mark_workers(conn, w.gone, WorkerState.OFFLINE.value)
            await keep_breakers(conn, w.breakers, w.now)
        return won

    async def close(self) -> None:
        return None


def _opened(p: Placement, now: datetime) -> dict[str, Any]:
    return {
        "job_id": p.job_id,
        "attempt": p.attempt,
        "worker_id": p.worker_id,
        "cpu_units": p.cpu_units,
        "memory_mb": p.memory_mb,
        "started_at": now,
    }


_RETURNING = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.name,
    jobs.c.payload,
    jobs.c.timeout_seconds,
    jobs.c.batch_id,
    jobs.c.cpu_units,
    # What the attempt asks for: the user's memory_mb, or what a memory kill raised it to.
    func.coalesce(jobs.c.memory_escalated_mb, jobs.c.memory_mb).label("memory_mb"),
    jobs.c.tenant,
)


#: The columns of :data:`scheduler.rows.JOB_COLUMNS` that are not a plain copy, as SQLAlchemy
#: expressions (the same rules as their PostgreSQL ``pg_set``).
_SET: dict[str, Callable[[JobWrite], Any]] = {
    "error": lambda w: None if w.status == "completed" else func.coalesce(w.error, jobs.c.error),
    "started_at": lambda w: func.coalesce(jobs.c.started_at, w.started_at),
    "memory_escalated_mb": lambda w: func.coalesce(
        w.memory_escalated_mb, jobs.c.memory_escalated_mb
    ),
    "memory_escalations": lambda w: func.coalesce(w.memory_escalations, jobs.c.memory_escalations),
}
assert set(_SET) == {c.field for c in JOB_COLUMNS if c.pg_set}


def _job_values(w: JobWrite) -> dict[str, Any]:
    return {
        c.column: _SET[c.field](w) if c.field in _SET else getattr(w, c.field) for c in JOB_COLUMNS
    }


async def apply(
    conn: AsyncConnection, writes: Sequence[JobWrite], now: datetime
) -> dict[uuid.UUID, RowMapping]:
    """Apply the writes that still match; returns the rows that changed (with dispatch fields).

    A write loses when someone else moved the job first (the API cancelled it); the caller then
    drops whatever depended on it (no dispatch is published for a job that is not running).
    """
    if not writes:
        return {}
    return await _apply_each(conn, writes, now)


async def _apply_each(
    conn: AsyncConnection, writes: Iterable[JobWrite], now: datetime
) -> dict[uuid.UUID, RowMapping]:
    won: dict[uuid.UUID, RowMapping] = {}
    for w in writes:
        stmt = (
            update(jobs)
            .where(
                jobs.c.id == w.id,
                jobs.c.status == w.from_status,
                jobs.c.attempts == w.from_attempts,
            )
            .values(**_job_values(w), updated_at=now)
            .returning(*_RETURNING)
        )
        row = (await conn.execute(stmt)).mappings().first()
        if row is not None:
            won[row["id"]] = row
    return won


async def insert_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """History rows for attempts that start (one multi-row insert)."""
    if rows:
        await conn.execute(attempts_t.insert(), rows)


async def drop_attempts(conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Delete still-open attempt rows of dispatches that reached no worker."""
    for job_id, attempt in keys:
        await conn.execute(
            delete(attempts_t).where(
                attempts_t.c.job_id == job_id,
                attempts_t.c.attempt == attempt,
                attempts_t.c.finished_at.is_(None),
            )
        )


async def finish_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Close history rows: end, duration, outcome, error, result, failure class, peak memory.
    A row already closed stays as it is."""
    if not rows:
        return
    stmt = (
        update(attempts_t)
        .where(
            attempts_t.c.job_id == bindparam("b_job_id"),
            attempts_t.c.attempt == bindparam("b_attempt"),
            attempts_t.c.finished_at.is_(None),
        )
        .values(
            started_at=func.coalesce(bindparam("b_started_at"), attempts_t.c.started_at),
            finished_at=bindparam("b_finished_at"),
            duration_seconds=bindparam("b_duration"),
            outcome=bindparam("b_outcome"),
            error=bindparam("b_error"),
            result=bindparam("b_result"),
            released_at=bindparam("b_released_at"),
            failure_class=bindparam("b_failure_class"),
            peak_memory_mb=bindparam("b_peak_memory_mb"),
        )
    )
    await conn.execute(stmt, rows)


async def release_attempts(
    conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, int]], now: datetime
) -> None:
    """Ended attempts whose capacity is free at last (a lingering thread returned)."""
    for job_id, attempt in keys:
        await conn.execute(
            update(attempts_t)
            .where(
                attempts_t.c.job_id == job_id,
                attempts_t.c.attempt == attempt,
                attempts_t.c.released_at.is_(None),
            )
            .values(released_at=now)
        )


async def upsert_workers(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Workers as of their last heartbeat; outcome counters are added, not replaced."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(workers_t)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "hostname": excluded.hostname,
            "cpu_units": excluded.cpu_units,
            "memory_mb": excluded.memory_mb,
            "state": excluded.state,
            "job_types": excluded.job_types,
            "started_at": excluded.started_at,
            "last_heartbeat": excluded.last_heartbeat,
            "draining": excluded.draining,
            "resources": excluded.resources,
            "labels": excluded.labels,
            "jobs_succeeded": workers_t.c.jobs_succeeded + excluded.jobs_succeeded,
            "jobs_failed": workers_t.c.jobs_failed + excluded.jobs_failed,
        },
    )
    for row in rows:
        await conn.execute(stmt.values(**row))


async def mark_workers(conn: AsyncConnection, ids: Sequence[str], state: str) -> None:
    if ids:
        await conn.execute(update(workers_t).where(workers_t.c.id.in_(ids)).values(state=state))


async def keep_breakers(conn: AsyncConnection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Upsert the changed breakers' rows."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(breakers_t)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_type"],
        set_={
            "state": excluded.state,
            "opened_at": excluded.opened_at,
            "cooldown_seconds": excluded.cooldown_seconds,
            "forced": excluded.forced,
            "updated_at": excluded.updated_at,
        },
    )
    for row in rows:
        await conn.execute(stmt.values(**row, updated_at=now))
