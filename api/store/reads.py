"""The API's reads: jobs, their edges, batches, attempts, log lines, workers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Table,
    and_,
    func,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import attempts_t, batches, edges, jobs, logs_t, progress_t, workers_t
from models.batch_report import batches_totals
from models.enums import JobStatus

__all__ = ["batches_totals"]  # moved below the scheduler, which reports batches too


def of_tenant(table: Table, tenant: str | None) -> ColumnElement[bool]:
    """Rows of ``table`` that belong to ``tenant`` (every row for None: an admin's view).
    Every read of jobs and batches goes through it, so another tenant's row is as absent as
    a row that does not exist."""
    return true() if tenant is None else table.c.tenant == tenant


async def get_job(
    conn: AsyncConnection, job_id: uuid.UUID, tenant: str | None
) -> RowMapping | None:
    row = await conn.execute(select(jobs).where(jobs.c.id == job_id, of_tenant(jobs, tenant)))
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
    tenant: str | None
    statuses: list[str]
    type: str | None
    priority: int | None
    batch_id: uuid.UUID | None
    created_after: datetime | None
    created_before: datetime | None
    schedule_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None


async def list_jobs(
    conn: AsyncConnection,
    flt: ListFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """Newest first, keyset-paginated on (created_at, id) so page N costs what page 1 does."""
    conds: list[ColumnElement[bool]] = []
    if flt.tenant is not None:
        conds.append(jobs.c.tenant == flt.tenant)
    if flt.statuses:
        conds.append(jobs.c.status.in_(flt.statuses))
    if flt.type is not None:
        conds.append(jobs.c.type == flt.type)
    if flt.priority is not None:
        conds.append(jobs.c.priority == flt.priority)
    if flt.batch_id is not None:
        conds.append(jobs.c.batch_id == flt.batch_id)
    if flt.schedule_id is not None:
        conds.append(jobs.c.schedule_id == flt.schedule_id)
    if flt.parent_id is not None:
        conds.append(jobs.c.parent_id == flt.parent_id)
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


async def get_batch(
    conn: AsyncConnection, batch_id: uuid.UUID, tenant: str | None
) -> RowMapping | None:
    row = await conn.execute(
        select(batches).where(batches.c.id == batch_id, of_tenant(batches, tenant))
    )
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


async def list_batches(
    conn: AsyncConnection,
    tenant: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """Batches newest first, keyset-paginated on (created_at, id) like jobs."""
    conds: list[ColumnElement[bool]] = [of_tenant(batches, tenant)]
    if after is not None:
        key = tuple_(batches.c.created_at, batches.c.id)
        at = tuple_(
            literal(after[0], batches.c.created_at.type), literal(after[1], batches.c.id.type)
        )
        conds.append(key < at)
    stmt = (
        select(batches)
        .where(*conds)
        .order_by(batches.c.created_at.desc(), batches.c.id.desc())
        .limit(limit)
    )
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


async def progress_of(conn: AsyncConnection, job_id: uuid.UUID) -> RowMapping | None:
    """The latest progress the job reported, if any (read after the job's own, scoped row)."""
    row = await conn.execute(select(progress_t).where(progress_t.c.job_id == job_id))
    return row.mappings().first()


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
    jobs.c.tenant,
)


async def job_statuses(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], tenant: str | None
) -> list[RowMapping]:
    """The current status of the given jobs (what a stream subscriber sees first)."""
    out: list[RowMapping] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = await conn.execute(
            select(*_STATUS_COLUMNS).where(jobs.c.id.in_(chunk), of_tenant(jobs, tenant))
        )
        out += rows.mappings()
    return out


async def batch_statuses(
    conn: AsyncConnection, batch_ids: Sequence[uuid.UUID], tenant: str | None
) -> tuple[set[uuid.UUID], list[RowMapping]]:
    """Which of the batches exist (for ``tenant``), and the current status of their jobs."""
    found = await conn.execute(
        select(batches.c.id).where(batches.c.id.in_(batch_ids), of_tenant(batches, tenant))
    )
    known = {r[0] for r in found}
    if not known:
        return known, []
    rows = await conn.execute(
        select(*_STATUS_COLUMNS)
        .where(jobs.c.batch_id.in_(known))
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    return known, list(rows.mappings())


async def list_workers(conn: AsyncConnection) -> list[RowMapping]:
    rows = await conn.execute(select(workers_t).order_by(workers_t.c.id))
    return list(rows.mappings())
