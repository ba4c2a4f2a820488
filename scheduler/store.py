"""The scheduler's database reads and writes.

Reads touch only active jobs (the partial index ``ix_jobs_active``) and the edges of the jobs
asked for, so their cost never grows with finished rows. A pass's writes are
:mod:`scheduler.sqlite_pass` (statements of one transaction) and :mod:`scheduler.pass_sql`
(PostgreSQL: one statement).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import ACTIVE_STATUSES, FINAL_STATUSES, JobStatus
from models.tables import Job, JobAttempt, JobDependency, Worker
from scheduler.rows import ts
from scheduler.values import JobSpec, UpstreamFailure

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
attempts_t: Table = JobAttempt.__table__  # type: ignore[attr-defined]
workers_t: Table = Worker.__table__  # type: ignore[attr-defined]

ACTIVE = sorted(s.value for s in ACTIVE_STATUSES)
_CHUNK = 5_000
#: What a job's spec is read from (here, and by :mod:`scheduler.pass_sql`).
SPEC_COLUMNS = (
    jobs.c.id,
    jobs.c.name,
    jobs.c.type,
    jobs.c.priority,
    jobs.c.cpu_units,
    jobs.c.memory_mb,
    jobs.c.max_attempts,
    jobs.c.initial_delay_seconds,
    jobs.c.backoff_multiplier,
    jobs.c.run_at,
    jobs.c.created_at,
    jobs.c.status,
    jobs.c.attempts,
    jobs.c.not_before,
    jobs.c.worker_id,
    jobs.c.batch_id,
    jobs.c.cancel_requested_at,
    jobs.c.attempts_base,
    jobs.c.tenant,
    jobs.c.timeout_seconds,
    jobs.c.resources,
    jobs.c.labels,
    jobs.c.memory_escalated_mb,
    jobs.c.memory_escalations,
)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Jobs read for the core, plus what the shell keeps beside it."""

    specs: list[JobSpec]
    batch_of: dict[uuid.UUID, uuid.UUID]
    cancel_requested: list[uuid.UUID]


async def _edges_of(
    conn: AsyncConnection, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for start in range(0, len(job_ids), _CHUNK):
        chunk = job_ids[start : start + _CHUNK]
        rows = await conn.execute(
            select(edges.c.job_id, edges.c.depends_on_id).where(edges.c.job_id.in_(chunk))
        )
        for job_id, dep in rows:
            out.setdefault(job_id, []).append(dep)
    return out


async def _statuses(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RowMapping]:
    out: dict[uuid.UUID, RowMapping] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = await conn.execute(
            select(jobs.c.id, jobs.c.name, jobs.c.status, jobs.c.error).where(jobs.c.id.in_(chunk))
        )
        out.update({r["id"]: r for r in rows.mappings()})
    return out


async def _specs(conn: AsyncConnection, rows: list[RowMapping]) -> Loaded:
    ids = [r["id"] for r in rows]
    deps_of = await _edges_of(conn, ids)
    mine = set(ids)
    outside = sorted({d for ds in deps_of.values() for d in ds if d not in mine})
    known = await _statuses(conn, outside)

    def deps(job_id: uuid.UUID) -> list[Upstream]:
        out: list[Upstream] = []
        for dep in deps_of.get(job_id, ()):
            other = known.get(dep)
            if other is None:
                out.append((dep, None, None, None))
            else:
                out.append((dep, other["status"], other["name"], other["error"]))
        return out

    return loaded_from(rows, deps)


#: A dependency as read: its id, and its status, name and error (``None`` when not known).
Upstream = tuple[uuid.UUID, str | None, str | None, str | None]


def loaded_from(
    rows: Sequence[Mapping[Any, Any]], deps: Callable[[uuid.UUID], Iterable[Upstream]]
) -> Loaded:
    """Specs from job rows and each job's dependencies (ids with their status if known)."""
    specs: list[JobSpec] = []
    for r in rows:
        depends: list[uuid.UUID] = []
        failure: UpstreamFailure | None = None
        for dep, status_text, name, error in deps(r["id"]):
            status = JobStatus(status_text) if status_text is not None else None
            if status not in FINAL_STATUSES:
                depends.append(dep)  # active: the core waits for it
            elif status is not JobStatus.COMPLETED and failure is None:
                failure = UpstreamFailure(dep, name or "", status, error)
        specs.append(_spec(r, depends, failure))
    return Loaded(
        specs=specs,
        batch_of={r["id"]: r["batch_id"] for r in rows if r["batch_id"] is not None},
        cancel_requested=[
            r["id"]
            for r in rows
            if r["cancel_requested_at"] is not None and r["status"] == JobStatus.RUNNING.value
        ],
    )


def _spec(
    r: Mapping[str, Any], depends: list[uuid.UUID], failure: UpstreamFailure | None
) -> JobSpec:
    return JobSpec(
        id=r["id"],
        name=r["name"],
        type=r["type"],
        priority=r["priority"],
        cpu_units=r["cpu_units"],
        # A kill for memory raised what it asks for; the user's request stays in memory_mb.
        memory_mb=r["memory_escalated_mb"] or r["memory_mb"],
        max_attempts=r["max_attempts"],
        initial_delay_seconds=r["initial_delay_seconds"],
        backoff_multiplier=r["backoff_multiplier"],
        run_at=ts(r["run_at"]),
        created_at=ts(r["created_at"]) or 0.0,
        depends_on=tuple(depends),
        upstream_failure=failure,
        status=JobStatus(r["status"]),
        tenant=r["tenant"],
        attempts=r["attempts"],
        not_before=ts(r["not_before"]),
        worker_id=r["worker_id"],
        attempts_base=r["attempts_base"],
        timeout_seconds=r["timeout_seconds"],
        started_at=ts(r.get("attempt_started_at")),
        resources=r["resources"] or {},
        labels=r["labels"] or {},
        batch_id=r["batch_id"],
        memory_escalations=r["memory_escalations"] or 0,
    )


#: Successful runs a starting scheduler learns run times from.
RECENT_RUNS = 5_000


async def recent_runs(
    conn: AsyncConnection, limit: int = RECENT_RUNS
) -> list[tuple[str, str, float]]:
    """The last ``limit`` successful runs, oldest first: (type, tenant, seconds)."""
    rows = await conn.execute(
        select(jobs.c.type, jobs.c.tenant, attempts_t.c.started_at, attempts_t.c.finished_at)
        .join(jobs, jobs.c.id == attempts_t.c.job_id)
        .where(attempts_t.c.outcome == "succeeded", attempts_t.c.finished_at.is_not(None))
        .order_by(attempts_t.c.finished_at.desc())
        .limit(limit)
    )
    out = []
    for job_type, tenant, started, finished in rows:
        if started is not None:
            out.append((job_type, tenant, max((finished - started).total_seconds(), 0.0)))
    out.reverse()
    return out


async def load_active(conn: AsyncConnection) -> Loaded:
    """Every active job, for a rebuild at start-up (or after a failed write)."""
    # A running job's predicted end counts from its attempt's start, not from this rebuild.
    current = (attempts_t.c.job_id == jobs.c.id) & (attempts_t.c.attempt == jobs.c.attempts)
    rows = await conn.execute(
        select(*SPEC_COLUMNS, attempts_t.c.started_at.label("attempt_started_at"))
        .select_from(jobs.outerjoin(attempts_t, current))
        .where(jobs.c.status.in_(ACTIVE))
    )
    return await _specs(conn, list(rows.mappings()))


async def load_lingering(conn: AsyncConnection) -> list[RowMapping]:
    """Ended attempts whose code still holds capacity (timed-out threads not yet returned)."""
    rows = await conn.execute(
        select(
            attempts_t.c.job_id,
            attempts_t.c.attempt,
            attempts_t.c.worker_id,
            attempts_t.c.cpu_units,
            attempts_t.c.memory_mb,
            jobs.c.resources,
        )
        .join(jobs, jobs.c.id == attempts_t.c.job_id)
        .where(attempts_t.c.released_at.is_(None), attempts_t.c.finished_at.is_not(None))
    )
    return list(rows.mappings())


async def load_pending(
    conn: AsyncConnection,
    ids: Sequence[uuid.UUID] | None,
    known: Container[uuid.UUID],
    limit: int,
) -> Loaded:
    """New (``pending``) jobs: the ones named, or (fallback poll) any the core does not hold."""
    stmt = select(*SPEC_COLUMNS).where(jobs.c.status == JobStatus.PENDING.value)
    if ids is not None:
        rows: list[RowMapping] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows += list((await conn.execute(stmt.where(jobs.c.id.in_(chunk)))).mappings())
    else:
        rows = list((await conn.execute(stmt.limit(limit))).mappings())
    return await _specs(conn, [r for r in rows if r["id"] not in known])


async def final_statuses(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RowMapping]:
    """Name, status and error of the given jobs (to settle dependencies the core lacks)."""
    return await _statuses(conn, ids)


async def cancel_requests(conn: AsyncConnection) -> list[uuid.UUID]:
    """Running jobs a user asked to cancel (fallback for a lost ``job.cancel_requested``)."""
    rows = await conn.execute(
        select(jobs.c.id).where(
            jobs.c.status == JobStatus.RUNNING.value, jobs.c.cancel_requested_at.isnot(None)
        )
    )
    return [r[0] for r in rows]


async def load_workers(conn: AsyncConnection) -> list[RowMapping]:
    rows = await conn.execute(select(workers_t).where(workers_t.c.state != "offline"))
    return list(rows.mappings())


async def dispatch_fields(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RowMapping]:
    """What a dispatch carries, for re-publishing after a restart."""
    rows = await conn.execute(
        select(
            jobs.c.id,
            jobs.c.type,
            jobs.c.name,
            jobs.c.payload,
            jobs.c.timeout_seconds,
            jobs.c.cpu_units,
            func.coalesce(jobs.c.memory_escalated_mb, jobs.c.memory_mb).label("memory_mb"),
            jobs.c.tenant,
        ).where(jobs.c.id.in_(ids))
    )
    return {r["id"]: r for r in rows.mappings()}


async def count_finished(conn: AsyncConnection) -> dict[str, int]:
    """Finished jobs by status: one grouped count, read once when monitoring starts (a
    scan of the finished rows, so never on a timer)."""
    finals = sorted(s.value for s in FINAL_STATUSES)
    rows = await conn.execute(
        select(jobs.c.status, func.count()).where(jobs.c.status.in_(finals)).group_by(jobs.c.status)
    )
    return {status: int(n) for status, n in rows}
