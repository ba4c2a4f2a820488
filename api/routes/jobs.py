"""``/jobs``: list, show, cancel, delete (submitting: :mod:`api.routes.submissions`)."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AwareDatetime
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api import paging, store
from api.auth import AUTH_ERRORS, Cancel, Read
from api.deps import ApiContext, ConnDep, ContextDep
from api.schemas import (
    CancelResult,
    ErrorBody,
    JobDetail,
    JobPage,
    PriorityParam,
    ProgressOut,
    priority_value,
)
from api.views import job_public
from api.waiting import waiting_reason
from models import deletes
from models.enums import CANCELLABLE_AT_ONCE, FINAL_STATUSES, JobStatus
from models.messages import CancelRequested, JobStatusEvent
from models.monitoring import GateSnapshot, StartForecast
from models.types import utcnow
from scheduler import retention
from scheduler.reasons import predicted_start_words
from smartq import chunked, topology
from smartq.db import is_retryable

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_ERRORS)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 409, 413, 422)
}


async def _notify(ctx: ApiContext, routing_key: str, body: bytes) -> None:
    """Tell the scheduler at once; it also polls, so a lost hint only delays."""
    try:
        await ctx.publish(routing_key, body)
    except Exception:
        log.warning("could not notify the scheduler", exc_info=True, extra={"action": "notify"})


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    type: str | None = None,
    priority: PriorityParam | None = None,
    batch_id: uuid.UUID | None = None,
    schedule_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
    created_after: AwareDatetime | None = None,
    created_before: AwareDatetime | None = None,
    limit: paging.Limit = 50,
    cursor: paging.Cursor = None,
) -> JobPage:
    """Newest first, filtered; follow ``next_cursor`` for the next page."""
    paging.check_limit(limit, ctx.settings.page_limit_max)
    flt = store.ListFilter(
        tenant=access.tenant,
        statuses=[s.value for s in status or []],
        type=type,
        priority=priority_value(priority) if priority is not None else None,
        batch_id=batch_id,
        created_after=created_after,
        created_before=created_before,
        schedule_id=schedule_id,
        parent_id=parent_id,
    )
    after = paging.decode_cursor(cursor)
    rows, next_cursor = paging.page(await store.list_jobs(conn, flt, after, limit + 1), limit)
    deps = await store.dependencies_of(conn, [r["id"] for r in rows])
    return JobPage(items=[job_public(r, deps[r["id"]]) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, responses=ERRORS)
async def get_job(job_id: uuid.UUID, access: Read, conn: ConnDep, ctx: ContextDep) -> JobDetail:
    """The job, its dependencies and dependents, and while it waits, why."""
    row = await store.get_job(conn, job_id, access.tenant)
    if row is None:
        raise HTTPException(404, f"no job {job_id}")
    deps = await store.dependencies_of(conn, [job_id])
    public = job_public(row, deps[job_id])
    if public.worker_id is None and row["status"] in FINAL_STATUSES and row["attempts"]:
        # The row names a worker only while the job runs; once it has finished, show the
        # worker of its last attempt.
        public.worker_id = await store.last_worker(conn, job_id)
    progress = await store.progress_of(conn, job_id)
    reason = await waiting_reason(conn, row, _gates(ctx))
    predicted = _forecast(ctx, job_id) if row["status"] == JobStatus.READY.value else None
    if predicted is not None and reason is not None:
        words = predicted_start_words(predicted.start_at.timestamp(), predicted.late_at.timestamp())
        reason = f"{reason}; {words}"
    return JobDetail(
        **public.model_dump(),
        dependents=await store.dependents_of(conn, job_id),
        waiting_reason=reason,
        progress=ProgressOut.model_validate(dict(progress)) if progress is not None else None,
        predicted_start_at=predicted.start_at if predicted else None,
        predicted_start_late_at=predicted.late_at if predicted else None,
    )


def _gates(ctx: ApiContext) -> list[GateSnapshot]:
    """The flow-control gates of the scheduler's latest snapshot this process received."""
    queue = ctx.metrics.snapshots.queue
    return queue.gates if queue is not None else []


def _forecast(ctx: ApiContext, job_id: uuid.UUID) -> StartForecast | None:
    """The job's predicted start in the scheduler's latest snapshot, if it is among the next."""
    queue = ctx.metrics.snapshots.queue
    if queue is None:
        return None
    return next((f for f in queue.forecasts if f.job_id == job_id), None)


@router.patch(
    "/{job_id}/cancel",
    response_model=CancelResult,
    responses={202: {"model": CancelResult}, **ERRORS},
)
async def cancel_job(
    job_id: uuid.UUID, access: Cancel, ctx: ContextDep, conn: ConnDep, response: Response
) -> CancelResult:
    """Cancel a waiting job at once with everything downstream of it (200), or ask a running
    job's worker to stop it (202). A finished job: 409."""
    for _ in range(5):  # the job may start between our read and our conditional update
        try:
            outcome = await _try_cancel(conn, job_id, access.tenant)
        except DBAPIError as exc:  # a deadlock with the scheduler's pass: run it again
            if not is_retryable(exc):
                raise
            continue
        if outcome is not None:
            return await _cancel_result(ctx, conn, job_id, outcome, response, access.tenant)
    raise HTTPException(409, "the job kept changing state; try again")


async def _try_cancel(
    conn: AsyncConnection, job_id: uuid.UUID, tenant: str | None
) -> list[store.Cancelled] | None:
    """One transaction of a cancel: what it cancelled, or None when the job moved meanwhile."""
    async with conn.begin():
        row = await store.get_job(conn, job_id, tenant)
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        now = utcnow()
        if row["status"] in CANCELLABLE_AT_ONCE:
            cancelled = await store.cancel_waiting(conn, row, now)
            return cancelled or None
        if row["status"] == JobStatus.RUNNING.value:
            return [] if await store.request_stop(conn, job_id, now) else None
        raise HTTPException(
            409,
            {
                "error": f"job {job_id} is already {row['status']}",
                "detail": {"status": row["status"]},
            },
        )


async def _cancel_result(
    ctx: ApiContext,
    conn: AsyncConnection,
    job_id: uuid.UUID,
    cancelled: list[store.Cancelled],
    response: Response,
    tenant: str | None,
) -> CancelResult:
    row = await store.get_job(conn, job_id, tenant)
    assert row is not None
    await _notify(ctx, topology.JOB_CANCEL_REQUESTED, CancelRequested(job_id=job_id).dumps())
    await announce_cancelled(ctx, cancelled)
    if not cancelled:
        response.status_code = 202
    deps = await store.dependencies_of(conn, [job_id])
    return CancelResult(
        job=job_public(row, deps[job_id]),
        cancelled=[c.job_id for c in cancelled],
        pending_worker_stop=not cancelled,
    )


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=ERRORS)
async def delete_job(job_id: uuid.UUID, access: Cancel, conn: ConnDep) -> Response:
    """Delete a finished job with its attempts, logs, result, progress and edges (204), and its
    batch if it was the batch's last job. An active job, or one that an unfinished job depends
    on (or whose spawned jobs are active), is a 409. Scoped like a cancel."""
    sel = retention.Selection(job_id=job_id, tenant=access.tenant)
    for _ in range(3):  # a resubmit or a new dependent may come between the check and the delete
        async with conn.begin():
            row = await store.get_job(conn, job_id, access.tenant)
            if row is None:
                raise HTTPException(404, f"no job {job_id}")
            dependents, children = await deletes.blockers(conn, job_id)
        reason = retention.why_kept(row["status"], dependents, children)
        if reason is not None:
            detail = {
                "status": row["status"],
                "dependents": [str(d) for d in dependents],
                "children": [str(c) for c in children],
            }
            raise HTTPException(
                409, {"error": f"job {job_id} cannot be deleted: {reason}", "detail": detail}
            )
        budget = retention.Budget(batch=1, cap=1)
        try:
            if (await deletes.delete_jobs(chunked.on(conn), sel, budget)).total:
                return Response(status_code=204)
        except DBAPIError as exc:  # a deadlock: run it again
            if not is_retryable(exc):
                raise
    raise HTTPException(409, "the job kept changing state; try again")


async def ask_to_cancel(ctx: ApiContext, job_ids: list[uuid.UUID]) -> None:
    """Tell the scheduler at once of jobs a request cancelled or asked to stop (packed: one
    message for many); it also polls for those that run."""
    hints = [(topology.JOB_CANCEL_REQUESTED, CancelRequested(job_id=j).dumps()) for j in job_ids]
    for key, body in topology.batched(topology.JOB_CANCEL_REQUESTED, hints):
        await _notify(ctx, key, body)


async def announce_cancelled(ctx: ApiContext, cancelled: list[store.Cancelled]) -> None:
    """A ``job.status`` event for each job a request cancelled."""
    now = utcnow()
    for c in cancelled:  # each under its own batch, with the reason its row got
        event = JobStatusEvent(
            job_id=c.job_id,
            status=JobStatus.CANCELLED,
            attempt=c.attempts,
            ts=now,
            batch_id=c.batch_id,
            reason=c.reason,
            job_type=c.job_type,
            tenant=c.tenant,
        )
        await _notify(ctx, topology.status_key(c.job_id), event.dumps())
