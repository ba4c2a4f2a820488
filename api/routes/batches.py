"""``GET /batches``: the caller's batches, newest first; ``GET /batches/{id}``: a DAG run's
report, its jobs a page at a time."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from api import paging, store
from api.auth import AUTH_ERRORS, Cancel, Read
from api.callback_schemas import CallbackOut, DeliveryPage, delivery_out
from api.deps import ApiContext, ConnDep, ContextDep
from api.routes.jobs import ERRORS, announce_cancelled, ask_to_cancel
from api.schemas import BatchFailure, BatchPage, BatchReport, BatchSummary
from api.store import callbacks as callback_store
from api.views import job_public
from models import batch_report
from models.enums import JobStatus
from models.monitoring import BatchFinishForecast
from models.types import utcnow

router = APIRouter(prefix="/batches", tags=["batches"], responses=AUTH_ERRORS)


@router.get("", response_model=BatchPage, responses=ERRORS)
async def list_batches(
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    limit: paging.Limit = 50,
    cursor: paging.Cursor = None,
) -> BatchPage:
    """Newest first, each with its totals by status, start and end; follow ``next_cursor``."""
    paging.check_limit(limit, ctx.settings.page_limit_max)
    after = paging.decode_cursor(cursor)
    found = await store.list_batches(conn, access.tenant, after, limit + 1)
    rows, next_cursor = paging.page(found, limit)
    totals = await store.batches_totals(conn, [r["id"] for r in rows])
    items = [_brief(r, totals[r["id"]]) for r in rows]
    return BatchPage(items=items, next_cursor=next_cursor)


async def _page_of(
    conn: AsyncConnection,
    ctx: ApiContext,
    batch_id: uuid.UUID,
    tenant: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[RowMapping, paging.Key | None]:
    """The batch (404 when the caller's tenant has none such) and where its page starts."""
    paging.check_limit(limit, ctx.settings.page_limit_max)
    after = paging.decode_cursor(cursor)
    batch = await store.get_batch(conn, batch_id, tenant)
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return batch, after


@router.get("/{batch_id}", response_model=BatchReport, responses=ERRORS)
async def get_batch(
    batch_id: uuid.UUID,
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    limit: paging.Limit = 100,
    cursor: paging.Cursor = None,
) -> BatchReport:
    """Totals by status and when it started and ended (every page), its failures (first page),
    and `limit` of its jobs in submission order; follow `next_cursor` for the rest."""
    batch, after = await _page_of(conn, ctx, batch_id, access.tenant, limit, cursor)
    report = _summary(batch, await store.batch_totals(conn, batch_id))
    rows, report.next_cursor = paging.page(
        await store.batch_jobs(conn, batch_id, after=after, limit=limit + 1), limit
    )
    deps = await store.dependencies_of(conn, [r["id"] for r in rows])
    report.jobs = [job_public(r, deps[r["id"]]) for r in rows]
    if after is None:
        failed = await store.batch_jobs(conn, batch_id, limit=limit, status=JobStatus.FAILED)
        report.failures = [BatchFailure.model_validate(dict(r)) for r in failed]
    predicted = None if report.done else _forecast(ctx, batch_id)
    if predicted is not None:
        report.predicted_finish_at = predicted.finish_at
        report.predicted_finish_late_at = predicted.late_at
    return report


@router.get("/{batch_id}/deliveries", response_model=DeliveryPage, responses=ERRORS)
async def batch_deliveries(
    batch_id: uuid.UUID,
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    limit: paging.Limit = 100,
    cursor: paging.Cursor = None,
) -> DeliveryPage:
    """The batch's callbacks and the delivery log, oldest first: each event's attempts, their
    status codes, the last error and the next retry. Read like the batch: another tenant's
    is a 404."""
    _, after = await _page_of(conn, ctx, batch_id, access.tenant, limit, cursor)
    hooks = await callback_store.batch_callbacks(conn, batch_id)
    found = await callback_store.deliveries(conn, batch_id, after, limit + 1)
    rows, next_cursor = paging.page(found, limit)
    return DeliveryPage(
        batch_id=batch_id,
        callbacks=[CallbackOut.model_validate(dict(h)) for h in hooks],
        items=[delivery_out(r) for r in rows],
        next_cursor=next_cursor,
    )


def _forecast(ctx: ApiContext, batch_id: uuid.UUID) -> BatchFinishForecast | None:
    """The batch's predicted finish in the scheduler's latest snapshot this process received."""
    queue = ctx.metrics.snapshots.queue
    if queue is None:
        return None
    return next((b for b in queue.batch_forecasts if b.batch_id == batch_id), None)


def _brief(batch: RowMapping, totals: list[RowMapping]) -> BatchSummary:
    """Counts by status, start, end, duration."""
    return BatchSummary(**batch_report.summary(batch, totals))


def _summary(batch: RowMapping, totals: list[RowMapping]) -> BatchReport:
    """The report without its jobs."""
    brief = _brief(batch, totals)
    return BatchReport(**brief.model_dump(), failures=None, jobs=[], next_cursor=None)


class BatchCancelled(BaseModel):
    """What stopping a batch did: waiting jobs cancelled at once, running ones asked to stop
    (the report is final once they end)."""

    batch_id: uuid.UUID
    cancelled: int
    stopping: int


@router.post("/{batch_id}/cancel", response_model=BatchCancelled, responses=ERRORS)
async def cancel_batch(
    batch_id: uuid.UUID, access: Cancel, conn: ConnDep, ctx: ContextDep
) -> BatchCancelled:
    """Stop a batch: its waiting jobs are cancelled with the reason "batch cancelled by user"
    (and jobs elsewhere that wait on them, as for any cancel), its running ones are asked to
    stop. A finished batch: nothing to do (0 and 0)."""
    async with conn.begin():
        if await store.get_batch(conn, batch_id, access.tenant) is None:
            raise HTTPException(404, f"no batch {batch_id}")
        cancelled, stopping = await store.cancel_batch(conn, batch_id, utcnow())
    await ask_to_cancel(ctx, [c.job_id for c in cancelled] + stopping)
    await announce_cancelled(ctx, cancelled)
    return BatchCancelled(batch_id=batch_id, cancelled=len(cancelled), stopping=len(stopping))
