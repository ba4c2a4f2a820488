"""The database side of batch callbacks (:mod:`scheduler.callbacks`): the callbacks whose
batch has not finished, what their batches' jobs say, the deliveries inserted once per event,
the due ones, and each attempt recorded — fenced on the attempt count, so a scheduler that
lost its leadership mid-send cannot overwrite what the new leader recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from models import batch_report
from models.callback_tables import CallbackDelivery
from models.enums import JobStatus
from models.inserts import batches, callbacks_t, insert_of, jobs
from models.tables import Tenant
from scheduler.delivery import BatchProgress, Decision, DeliveryStatus, DueEvent, Outcome
from smartq.callbacks import Event

deliveries_t: Table = CallbackDelivery.__table__  # type: ignore[attr-defined]
tenants_t: Table = Tenant.__table__  # type: ignore[attr-defined]
#: Jobs listed by name in a ``batch.finished`` report, passed and failed each (the totals
#: count them all; ``GET /jobs?batch_id=`` has the rest).
REPORT_JOBS = 1000
#: Attempts kept in a delivery's history.
HISTORY = 100
_JOB_FIELDS = ("id", "key", "name", "type", "attempts", "error", "finished_at")


async def open_callbacks(conn: AsyncConnection, limit: int) -> list[RowMapping]:
    """Callbacks whose batch has not been seen finished, oldest first (a partial index)."""
    rows = await conn.execute(
        select(callbacks_t)
        .where(callbacks_t.c.done.is_(False))
        .order_by(callbacks_t.c.created_at)
        .limit(limit)
    )
    return list(rows.mappings())


async def batches_of(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.execute(select(batches).where(batches.c.id.in_(ids)))
    return {r["id"]: r for r in rows.mappings()}


async def failed_jobs(
    conn: AsyncConnection, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[RowMapping]]:
    """The failed jobs of each batch, in submission order."""
    out: dict[uuid.UUID, list[RowMapping]] = {b: [] for b in batch_ids}
    rows = await conn.execute(
        select(jobs.c.batch_id, *(jobs.c[f] for f in _JOB_FIELDS))
        .where(jobs.c.batch_id.in_(batch_ids), jobs.c.status == JobStatus.FAILED.value)
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    for r in rows.mappings():
        out[r["batch_id"]].append(r)
    return out


def progress_of(totals: Sequence[RowMapping], failed: Sequence[RowMapping]) -> BatchProgress:
    started = any(t["started_at"] is not None for t in totals)
    done = bool(totals) and batch_report.summary_done(totals)
    return BatchProgress(started, done, [(j["id"], j["attempts"]) for j in failed])


async def enqueued_keys(conn: AsyncConnection, callback_ids: Sequence[uuid.UUID]) -> set[Any]:
    rows = await conn.execute(
        select(deliveries_t.c.callback_id, deliveries_t.c.event_key).where(
            deliveries_t.c.callback_id.in_(callback_ids)
        )
    )
    return {(r[0], r[1]) for r in rows}


async def passed_jobs(conn: AsyncConnection, batch_id: uuid.UUID) -> list[RowMapping]:
    rows = await conn.execute(
        select(*(jobs.c[f] for f in _JOB_FIELDS if f != "error"))
        .where(jobs.c.batch_id == batch_id, jobs.c.status == JobStatus.COMPLETED.value)
        .order_by(jobs.c.created_at, jobs.c.id)
        .limit(REPORT_JOBS)
    )
    return list(rows.mappings())


def body_of(
    delivery_id: uuid.UUID,
    due: DueEvent,
    head: dict[str, Any],
    failed: Sequence[RowMapping],
    passed: Sequence[RowMapping],
    now: datetime,
) -> str:
    """A delivery's JSON body: its id, the event, the batch's report head, and the failed job
    (``job.failed``) or the jobs passed and failed with their errors (``batch.finished``)."""
    doc: dict[str, Any] = {
        "delivery_id": delivery_id,
        "event": due.event.value,
        "occurred_at": now,
        "batch": head,
    }
    if due.event is Event.JOB_FAILED:
        doc["job"] = next((dict(j) for j in failed if j["id"] == due.job_id), {"id": due.job_id})
    elif due.event is Event.BATCH_FINISHED:
        doc["passed"] = [dict(j) for j in passed]
        doc["failed"] = [dict(j) for j in failed[:REPORT_JOBS]]
        doc["truncated"] = len(passed) >= REPORT_JOBS or len(failed) > REPORT_JOBS
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode()


async def enqueue(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert deliveries; an event already there (another leader derived it) is skipped."""
    if not rows:
        return
    stmt = insert_of(conn, deliveries_t).on_conflict_do_nothing(
        index_elements=["callback_id", "event_key"]
    )
    await conn.execute(stmt, rows)


def delivery_row(
    delivery_id: uuid.UUID, callback: RowMapping, due: DueEvent, body: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "callback_id": callback["id"],
        "batch_id": callback["batch_id"],
        "event": due.event.value,
        "event_key": due.key,
        "job_id": due.job_id,
        "body": body,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "history": [],
        "next_attempt_at": now,
        "first_attempt_at": None,
        "delivered_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def mark_done(conn: AsyncConnection, callback_ids: Iterable[uuid.UUID]) -> None:
    ids = list(callback_ids)
    if ids:
        await conn.execute(update(callbacks_t).where(callbacks_t.c.id.in_(ids)).values(done=True))


async def due(
    conn: AsyncConnection, now: datetime, limit: int, skip: Iterable[uuid.UUID]
) -> list[RowMapping]:
    """Pending deliveries due by ``now``, the most overdue first, with their callback's URL
    and tenant; ``skip``: those this process is sending already."""
    busy = list(skip)
    stmt = (
        select(deliveries_t, callbacks_t.c.url, callbacks_t.c.tenant)
        .join(callbacks_t, callbacks_t.c.id == deliveries_t.c.callback_id)
        .where(
            deliveries_t.c.status == DeliveryStatus.PENDING.value,
            deliveries_t.c.next_attempt_at <= now,
        )
        .order_by(deliveries_t.c.next_attempt_at)
        .limit(limit)
    )
    if busy:
        stmt = stmt.where(deliveries_t.c.id.notin_(busy))
    return list((await conn.execute(stmt)).mappings())


async def secrets(conn: AsyncConnection, tenants: Iterable[str]) -> dict[str, str | None]:
    """Each tenant's own callback secret (None: the setting's default applies)."""
    names = sorted(set(tenants))
    out: dict[str, str | None] = dict.fromkeys(names)
    rows = await conn.execute(
        select(tenants_t.c.name, tenants_t.c.callback_secret).where(tenants_t.c.name.in_(names))
    )
    out.update({r[0]: r[1] for r in rows})
    return out


async def record(
    conn: AsyncConnection,
    delivery: RowMapping,
    outcome: Outcome,
    decision: Decision,
    at: datetime,
    ms: float,
) -> bool:
    """Write one attempt and what it decided; False when another leader recorded this
    attempt first (the count no longer matches)."""
    entry = {"at": at, "status_code": outcome.status_code, "error": outcome.error, "ms": ms}
    history = [*delivery["history"], orjson.loads(orjson.dumps(entry, option=orjson.OPT_UTC_Z))]
    delivered = decision.status is DeliveryStatus.DELIVERED
    result = await conn.execute(
        update(deliveries_t)
        .where(deliveries_t.c.id == delivery["id"], deliveries_t.c.attempts == delivery["attempts"])
        .values(
            status=decision.status.value,
            attempts=delivery["attempts"] + 1,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
            history=history[-HISTORY:],
            next_attempt_at=decision.next_attempt_at,
            first_attempt_at=delivery["first_attempt_at"] or at,
            delivered_at=at if delivered else None,
            updated_at=at,
        )
    )
    return result.rowcount == 1
