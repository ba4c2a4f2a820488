"""The API's reads and writes. The API writes only what users ask for: new jobs, batches and
edges (one transaction), and cancellations (conditional updates). Every later transition belongs
to the scheduler."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import (
    JSON,
    ColumnElement,
    RowMapping,
    Table,
    and_,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import CANCELLABLE_AT_ONCE, JobStatus
from models.tables import Batch, Job, JobAttempt, JobDependency, JobLog, Worker

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
batches: Table = Batch.__table__  # type: ignore[attr-defined]
attempts_t: Table = JobAttempt.__table__  # type: ignore[attr-defined]
logs_t: Table = JobLog.__table__  # type: ignore[attr-defined]
workers_t: Table = Worker.__table__  # type: ignore[attr-defined]

#: Columns hashed to tell an idempotent replay from a conflicting reuse of the key.
HASHED = (
    "name",
    "type",
    "payload",
    "priority",
    "cpu_units",
    "memory_mb",
    "max_attempts",
    "initial_delay_seconds",
    "backoff_multiplier",
    "timeout_seconds",
    "run_at",
    "key",
)
WAITING = tuple(s.value for s in CANCELLABLE_AT_ONCE)


def request_hash(values: dict[str, Any], depends_on: Iterable[Any]) -> str:
    doc = {k: values[k] for k in HASHED}
    doc["depends_on"] = sorted(str(d) for d in depends_on)
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _insert(conn: AsyncConnection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def existing_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = await conn.execute(select(jobs.c.id).where(jobs.c.id.in_(chunk)))
        found.update(r[0] for r in rows)
    return found


_INSERT_ONCE: dict[tuple[str, str], Any] = {}


async def _insert_once(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row of ``table``; False when its idempotency key is already taken (a concurrent
    duplicate waits for the first to commit, then inserts nothing). The statement is built once
    per table and dialect, its values passed as parameters: building it per request (values
    inlined) was a fifth of the API's CPU per ``POST /jobs``. A row without a key can never
    conflict (the unique index is partial), so one statement serves both."""
    cache_key = (conn.dialect.name, table.name)
    stmt = _INSERT_ONCE.get(cache_key)
    if stmt is None:
        stmt = (
            _insert(conn, table)
            .on_conflict_do_nothing(
                index_elements=["idempotency_key"],
                index_where=table.c.idempotency_key.isnot(None),
            )
            .returning(table.c.id)
        )
        _INSERT_ONCE[cache_key] = stmt
    result = await conn.execute(stmt, values)
    return result.first() is not None


async def insert_job(
    conn: AsyncConnection, values: dict[str, Any], depends_on: Sequence[uuid.UUID]
) -> bool:
    """Insert one job and its edges; False when its idempotency key is already taken."""
    if not await _insert_once(conn, jobs, values):
        return False
    if depends_on:
        await conn.execute(
            edges.insert(), [{"job_id": values["id"], "depends_on_id": d} for d in depends_on]
        )
    return True


async def job_by_idempotency_key(conn: AsyncConnection, key: str) -> RowMapping | None:
    row = await conn.execute(select(jobs).where(jobs.c.idempotency_key == key))
    return row.mappings().first()


async def insert_batch(
    conn: AsyncConnection,
    batch: dict[str, Any],
    rows: list[dict[str, Any]],
    edge_rows: list[dict[str, Any]],
) -> bool:
    """Insert a batch with its jobs and edges; False when the batch's idempotency key is taken."""
    if not await _insert_once(conn, batches, batch):
        return False
    await insert_rows(conn, jobs, rows)
    await insert_rows(conn, edges, edge_rows)
    return True


async def insert_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (all with the same keys) in the open transaction: ``COPY`` on
    PostgreSQL, an ``executemany`` elsewhere. COPY streams the rows in one statement; the
    ``executemany`` it replaces sent one INSERT per row and was most of a 10,000-job batch."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        for start in range(0, len(rows), 2000):
            await conn.execute(table.insert(), rows[start : start + 2000])
        return
    columns = list(rows[0])
    json_columns = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert pg is not None
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        async with pg.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for i in json_columns:
                    if values[i] is not None:
                        values[i] = orjson.dumps(values[i]).decode()
                await copy.write_row(values)
    except psycopg.Error as exc:
        # As SQLAlchemy would have raised it (IntegrityError → 409, OperationalError → 503).
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


async def batch_by_idempotency_key(conn: AsyncConnection, key: str) -> RowMapping | None:
    row = await conn.execute(select(batches).where(batches.c.idempotency_key == key))
    return row.mappings().first()


async def get_job(conn: AsyncConnection, job_id: uuid.UUID) -> RowMapping | None:
    row = await conn.execute(select(jobs).where(jobs.c.id == job_id))
    return row.mappings().first()


async def dependencies_of(
    conn: AsyncConnection, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    out: dict[uuid.UUID, list[uuid.UUID]] = {j: [] for j in job_ids}
    if not job_ids:
        return out
    rows = await conn.execute(
        select(edges.c.job_id, edges.c.depends_on_id).where(edges.c.job_id.in_(job_ids))
    )
    for job_id, dep in rows:
        out[job_id].append(dep)
    return out


async def dependents_of(conn: AsyncConnection, job_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.execute(select(edges.c.job_id).where(edges.c.depends_on_id == job_id))
    return [r[0] for r in rows]


async def unfinished_dependencies(conn: AsyncConnection, job_id: uuid.UUID) -> list[RowMapping]:
    rows = await conn.execute(
        select(jobs.c.id, jobs.c.name, jobs.c.status)
        .join(edges, edges.c.depends_on_id == jobs.c.id)
        .where(edges.c.job_id == job_id, jobs.c.status != JobStatus.COMPLETED.value)
    )
    return list(rows.mappings())


@dataclass(frozen=True)
class ListFilter:
    statuses: list[str]
    type: str | None
    priority: int | None
    batch_id: uuid.UUID | None
    created_after: datetime | None
    created_before: datetime | None


async def list_jobs(
    conn: AsyncConnection,
    flt: ListFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """Newest first, keyset-paginated on (created_at, id) so page N costs what page 1 does."""
    conds: list[ColumnElement[bool]] = []
    if flt.statuses:
        conds.append(jobs.c.status.in_(flt.statuses))
    if flt.type is not None:
        conds.append(jobs.c.type == flt.type)
    if flt.priority is not None:
        conds.append(jobs.c.priority == flt.priority)
    if flt.batch_id is not None:
        conds.append(jobs.c.batch_id == flt.batch_id)
    if flt.created_after is not None:
        conds.append(jobs.c.created_at >= flt.created_after)
    if flt.created_before is not None:
        conds.append(jobs.c.created_at < flt.created_before)
    if after is not None:
        conds.append(_key() < _key_of(after))
    stmt = (
        select(jobs)
        .where(and_(True, *conds))
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).mappings())


def _key() -> Any:
    """A job's page key, (created_at, id): every list of jobs is ordered and cut by it."""
    return tuple_(jobs.c.created_at, jobs.c.id)


def _key_of(key: tuple[datetime, uuid.UUID]) -> Any:
    return tuple_(literal(key[0], jobs.c.created_at.type), literal(key[1], jobs.c.id.type))


def _descendants_cte(root: uuid.UUID) -> Any:
    """Every job downstream of ``root`` that is still waiting (a recursive walk of the edges)."""
    base = select(edges.c.job_id.label("id")).where(edges.c.depends_on_id == root)
    cte = base.cte("downstream", recursive=True)
    step = select(edges.c.job_id).join(cte, edges.c.depends_on_id == cte.c.id)
    return cte.union(step)


async def cancel_waiting(
    conn: AsyncConnection, job: RowMapping, now: datetime, reason: str
) -> dict[uuid.UUID, str]:
    """Cancel a job that has not started, and everything downstream of it; returns the jobs
    cancelled with their types (empty when the job left its waiting state first)."""
    won = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job["id"], jobs.c.status.in_(WAITING))
        .values(
            status=JobStatus.CANCELLED.value, status_reason=reason, finished_at=now, updated_at=now
        )
        .returning(jobs.c.id)
    )
    if won.first() is None:
        return {}
    downstream = _descendants_cte(job["id"])
    why = f"upstream job {job['name']} ({job['id']}) was cancelled"
    rows = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(select(downstream.c.id)), jobs.c.status.in_(WAITING))
        .values(
            status=JobStatus.CANCELLED.value, status_reason=why, finished_at=now, updated_at=now
        )
        .returning(jobs.c.id, jobs.c.type)
    )
    return {job["id"]: job["type"], **{r[0]: r[1] for r in rows}}


async def request_stop(conn: AsyncConnection, job_id: uuid.UUID, now: datetime) -> bool:
    """Mark a running job for cancellation; the scheduler tells its worker."""
    won = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, now), updated_at=now)
        .returning(jobs.c.id)
    )
    return won.first() is not None


async def get_batch(conn: AsyncConnection, batch_id: uuid.UUID) -> RowMapping | None:
    row = await conn.execute(select(batches).where(batches.c.id == batch_id))
    return row.mappings().first()


async def batch_jobs(
    conn: AsyncConnection,
    batch_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int | None = None,
    status: JobStatus | None = None,
) -> list[RowMapping]:
    """The batch's jobs in submission order, from after ``after`` (one range of the index on
    (batch_id, created_at, id))."""
    conds: list[ColumnElement[bool]] = [jobs.c.batch_id == batch_id]
    if after is not None:
        conds.append(_key() > _key_of(after))
    if status is not None:
        conds.append(jobs.c.status == status.value)
    stmt = select(jobs).where(*conds).order_by(jobs.c.created_at, jobs.c.id).limit(limit)
    return list((await conn.execute(stmt)).mappings())


async def batch_totals(conn: AsyncConnection, batch_id: uuid.UUID) -> list[RowMapping]:
    """Per status of the batch's jobs: how many, the first start and the last end."""
    rows = await conn.execute(
        select(
            jobs.c.status,
            func.count().label("count"),
            func.min(jobs.c.started_at).label("started_at"),
            func.max(jobs.c.finished_at).label("finished_at"),
        )
        .where(jobs.c.batch_id == batch_id)
        .group_by(jobs.c.status)
    )
    return list(rows.mappings())


async def last_worker(conn: AsyncConnection, job_id: uuid.UUID) -> str | None:
    """The worker of the job's last attempt: the last entry of the job in the attempts'
    primary key (job_id, attempt)."""
    row = await conn.execute(
        select(attempts_t.c.worker_id)
        .where(attempts_t.c.job_id == job_id)
        .order_by(attempts_t.c.attempt.desc())
        .limit(1)
    )
    worker: str | None = row.scalar()
    return worker


async def job_attempts(conn: AsyncConnection, job_id: uuid.UUID) -> list[RowMapping]:
    rows = await conn.execute(
        select(attempts_t).where(attempts_t.c.job_id == job_id).order_by(attempts_t.c.attempt)
    )
    return list(rows.mappings())


async def log_lines(
    conn: AsyncConnection,
    job_id: uuid.UUID,
    *,
    after: tuple[int, int] | None,
    attempt: int | None,
    levels: list[str],
    limit: int,
) -> list[RowMapping]:
    conds: list[ColumnElement[bool]] = [logs_t.c.job_id == job_id]
    if attempt is not None:
        conds.append(logs_t.c.attempt == attempt)
    if levels:
        conds.append(logs_t.c.level.in_(levels))
    if after is not None:
        conds.append(
            tuple_(logs_t.c.attempt, logs_t.c.seq) > tuple_(literal(after[0]), literal(after[1]))
        )
    stmt = (
        select(logs_t.c.attempt, logs_t.c.seq, logs_t.c.ts, logs_t.c.level, logs_t.c.message)
        .where(*conds)
        .order_by(logs_t.c.attempt, logs_t.c.seq)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).mappings())


_STATUS_COLUMNS = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.status,
    jobs.c.attempts,
    jobs.c.updated_at,
    jobs.c.batch_id,
    jobs.c.worker_id,
    jobs.c.status_reason,
    jobs.c.error,
)


async def job_statuses(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[RowMapping]:
    """The current status of the given jobs (what a stream subscriber sees first)."""
    out: list[RowMapping] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = await conn.execute(select(*_STATUS_COLUMNS).where(jobs.c.id.in_(chunk)))
        out += rows.mappings()
    return out


async def batch_statuses(
    conn: AsyncConnection, batch_ids: Sequence[uuid.UUID]
) -> tuple[set[uuid.UUID], list[RowMapping]]:
    """Which of the batches exist, and the current status of their jobs."""
    found = await conn.execute(select(batches.c.id).where(batches.c.id.in_(batch_ids)))
    known = {r[0] for r in found}
    rows = await conn.execute(
        select(*_STATUS_COLUMNS)
        .where(jobs.c.batch_id.in_(batch_ids))
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    return known, list(rows.mappings())


async def list_workers(conn: AsyncConnection) -> list[RowMapping]:
    rows = await conn.execute(select(workers_t).order_by(workers_t.c.id))
    return list(rows.mappings())


_RESET = {
    "status": JobStatus.PENDING.value,
    "error": None,
    "result": None,
    "not_before": None,
    "worker_id": None,
    "cancel_requested_at": None,
    "finished_at": None,
}


async def resubmit(
    conn: AsyncConnection, job: RowMapping, now: datetime, with_descendants: bool
) -> list[uuid.UUID]:
    """Put a failed job back to ``pending`` with a fresh retry budget (and, if asked, every
    job downstream of it that was cancelled); returns the ids resubmitted, [] if it lost a race.
    """
    won = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job["id"], jobs.c.status == JobStatus.FAILED.value)
        .values(
            **_RESET,
            attempts_base=jobs.c.attempts,
            updated_at=now,
            status_reason="resubmitted by user",
        )
        .returning(jobs.c.id)
    )
    if won.first() is None:
        return []
    if not with_descendants:
        return [job["id"]]
    downstream = _descendants_cte(job["id"])
    rows = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(select(downstream.c.id)), jobs.c.status == JobStatus.CANCELLED.value)
        .values(
            **_RESET,
            attempts_base=jobs.c.attempts,
            updated_at=now,
            status_reason=f"resubmitted with upstream job {job['name']} ({job['id']})",
        )
        .returning(jobs.c.id)
    )
    return [job["id"], *(r[0] for r in rows)]
