"""The only transitions the API writes: a cancel of a waiting job with what is downstream of it,
a stop request for a running one, and a resubmission of a failed one. Every other transition
belongs to the scheduler."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import WAITING, edges, jobs
from models.enums import JobStatus
from scheduler.reasons import CANCELLED_BY_USER, upstream_reason


def _descendants_cte(root: uuid.UUID) -> Any:
    """Every job downstream of ``root`` that is still waiting (a recursive walk of the edges)."""
    base = select(edges.c.job_id.label("id")).where(edges.c.depends_on_id == root)
    cte = base.cte("downstream", recursive=True)
    step = select(edges.c.job_id).join(cte, edges.c.depends_on_id == cte.c.id)
    return cte.union(step)


@dataclass(frozen=True, slots=True)
class Cancelled:
    """One job a cancel ended, with what its ``job.status`` event must say."""

    job_id: uuid.UUID
    job_type: str
    batch_id: uuid.UUID | None
    attempts: int
    reason: str
    tenant: str


async def cancel_waiting(
    conn: AsyncConnection, job: RowMapping, now: datetime, reason: str = CANCELLED_BY_USER
) -> list[Cancelled]:
    """Cancel a job that has not started, and everything downstream of it that still waits;
    returns the jobs cancelled, the job first (empty when it left its waiting state first).
    Each comes with its own batch: a DAG may span batches."""
    won = await _cancel(conn, jobs.c.id == job["id"], reason, now)
    if not won:
        return []
    downstream = _descendants_cte(job["id"])
    why = upstream_reason(job["name"], job["id"], JobStatus.CANCELLED, None)
    # Edges never cross tenants (a dependency may name only the submitter's own jobs); the
    # tenant condition keeps it so even for rows written some other way.
    mine = jobs.c.tenant == job["tenant"]
    return won + await _cancel(conn, jobs.c.id.in_(select(downstream.c.id)) & mine, why, now)


async def _cancel(
    conn: AsyncConnection, which: ColumnElement[bool], reason: str, now: datetime
) -> list[Cancelled]:
    rows = await conn.execute(
        update(jobs)
        .where(which, jobs.c.status.in_(WAITING))
        .values(
            status=JobStatus.CANCELLED.value, status_reason=reason, finished_at=now, updated_at=now
        )
        .returning(jobs.c.id, jobs.c.type, jobs.c.batch_id, jobs.c.attempts, jobs.c.tenant)
    )
    return [Cancelled(r.id, r.type, r.batch_id, r.attempts, reason, r.tenant) for r in rows]


#: The reason of the waiting jobs of a batch a user stopped.
BATCH_CANCELLED = "batch cancelled by user"


async def cancel_batch(
    conn: AsyncConnection, batch_id: uuid.UUID, now: datetime
) -> tuple[list[Cancelled], list[uuid.UUID]]:
    """Stop a batch: its waiting jobs cancelled (with the reason), its running ones marked for
    their workers to stop. Jobs of other batches that wait on them are cancelled by the
    scheduler's cascade, as for any cancelled job."""
    cancelled = await _cancel(conn, jobs.c.batch_id == batch_id, BATCH_CANCELLED, now)
    stopping = await conn.execute(
        update(jobs)
        .where(jobs.c.batch_id == batch_id, jobs.c.status == JobStatus.RUNNING.value)
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, now), updated_at=now)
        .returning(jobs.c.id)
    )
    return cancelled, [r[0] for r in stopping]


async def request_stop(conn: AsyncConnection, job_id: uuid.UUID, now: datetime) -> bool:
    """Mark a running job for cancellation; the scheduler tells its worker."""
    won = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, now), updated_at=now)
        .returning(jobs.c.id)
    )
    return won.first() is not None


_RESET = {
    "status": JobStatus.PENDING.value,
    "error": None,
    "result": None,
    "not_before": None,
    "worker_id": None,
    "cancel_requested_at": None,
    "finished_at": None,
    # Memory escalations are outside the retry budget and restart with it; the memory a kill
    # raised the job to (memory_escalated_mb) is kept: it is what the job was seen to need.
    "memory_escalations": 0,
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
        .where(
            jobs.c.id.in_(select(downstream.c.id)),
            jobs.c.status == JobStatus.CANCELLED.value,
            jobs.c.tenant == job["tenant"],
        )
        .values(
            **_RESET,
            attempts_base=jobs.c.attempts,
            updated_at=now,
            status_reason=f"resubmitted with upstream job {job['name']} ({job['id']})",
        )
        .returning(jobs.c.id)
    )
    return [job["id"], *(r[0] for r in rows)]
