"""The database side of cron ticks (:mod:`scheduler.ticks`): which schedules are due, a
schedule's row locked for its tick, its previous run's state, a run stamped from the template
and inserted once per (schedule, tick), and the schedule advanced — all on one connection, in
the one transaction its caller holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import ACTIVE_STATUSES, JobStatus
from models.inserts import batches, callback_rows, insert_batch, insert_job, jobs
from models.tables import Schedule

schedules_t = Schedule.__table__  # type: ignore[attr-defined]
_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def tick_key(schedule_id: uuid.UUID, tick: datetime) -> str:
    """The idempotency key of a schedule's run at ``tick``: the same tick, on any scheduler,
    after any failover, is the same key, so it is inserted once."""
    return f"schedule:{schedule_id}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True, slots=True)
class Run:
    """What one tick made: its job (kind job) or its batch, and the jobs' ids."""

    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    job_ids: list[uuid.UUID]
    #: False: this tick's key was taken already (another scheduler fired it), nothing written.
    inserted: bool


def _running() -> ColumnElement[bool]:
    running: ColumnElement[bool] = schedules_t.c.paused.is_(
        False
    ) & schedules_t.c.next_fire_at.isnot(None)
    return running


async def due_ids(conn: AsyncConnection, now: datetime, limit: int) -> list[uuid.UUID]:
    """Running schedules whose next tick has come, the most overdue first."""
    rows = await conn.execute(
        select(schedules_t.c.id)
        .where(_running(), schedules_t.c.next_fire_at <= now)
        .order_by(schedules_t.c.next_fire_at)
        .limit(limit)
    )
    return [r[0] for r in rows]


async def next_due(conn: AsyncConnection) -> datetime | None:
    """The earliest next tick of any running schedule."""
    value: datetime | None = (
        await conn.execute(select(func.min(schedules_t.c.next_fire_at)).where(_running()))
    ).scalar()
    if value is not None and value.tzinfo is None:  # SQLite's aggregate loses the type
        value = datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    return value


async def locked(conn: AsyncConnection, schedule_id: uuid.UUID) -> RowMapping | None:
    """The schedule, its row locked until the transaction ends (PostgreSQL; SQLite's single
    writer serialises anyway): a second scheduler, or an API's change, waits and then reads
    what this tick left."""
    stmt = select(schedules_t).where(schedules_t.c.id == schedule_id).with_for_update()
    return (await conn.execute(stmt)).mappings().first()


def _run_of(job_id: uuid.UUID | None, batch_id: uuid.UUID | None) -> ColumnElement[bool]:
    if batch_id is not None:
        return jobs.c.batch_id == batch_id
    return jobs.c.id == job_id


async def run_active(
    conn: AsyncConnection, job_id: uuid.UUID | None, batch_id: uuid.UUID | None
) -> bool:
    """Whether the run (a job, or any job of a batch) has not ended."""
    if job_id is None and batch_id is None:
        return False
    stmt = select(jobs.c.id).where(_run_of(job_id, batch_id), jobs.c.status.in_(_ACTIVE)).limit(1)
    return (await conn.execute(stmt)).first() is not None


async def ask_cancel(
    conn: AsyncConnection, job_id: uuid.UUID | None, batch_id: uuid.UUID | None, now: datetime
) -> list[uuid.UUID]:
    """Mark the run's active jobs for cancellation (durable: a scheduler that takes over
    finds them, :func:`marked_for_cancel`); the core then cancels the waiting ones and asks the
    workers of the running ones to stop, as for ``PATCH /jobs/{id}/cancel``."""
    rows = await conn.execute(
        update(jobs)
        .where(_run_of(job_id, batch_id), jobs.c.status.in_(_ACTIVE))
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, now), updated_at=now)
        .returning(jobs.c.id)
    )
    return [r[0] for r in rows]


async def marked_for_cancel(conn: AsyncConnection) -> list[uuid.UUID]:
    """Scheduled runs' waiting jobs marked for cancellation that the core may not have
    cancelled (a leader that died between a tick's commit and its next pass); running ones
    are found by every rebuild already."""
    waiting = [s for s in _ACTIVE if s != JobStatus.RUNNING.value]
    rows = await conn.execute(
        select(jobs.c.id).where(
            jobs.c.status.in_(waiting),
            jobs.c.cancel_requested_at.isnot(None),
            jobs.c.schedule_id.isnot(None),
        )
    )
    return [r[0] for r in rows]


def stamp(
    schedule: RowMapping | dict[str, Any], tick: datetime, now: datetime
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """A run of the schedule's template: (the batch row or None, job rows, edge rows). Jobs of a
    batch are a microsecond apart, as a submitted batch's are (submission order is age)."""
    template = schedule["template"]
    key = tick_key(schedule["id"], tick)
    is_batch = schedule["kind"] == "batch"
    batch_id = uuid.uuid4() if is_batch else None
    ids = [uuid.uuid4() for _ in template["jobs"]]
    rows = []
    for i, fields in enumerate(template["jobs"]):
        created = now + timedelta(microseconds=i)
        rows.append(
            {
                **fields,
                "id": ids[i],
                "idempotency_key": None if is_batch else key,
                "request_hash": None,
                "batch_id": batch_id,
                "tenant": schedule["tenant"],
                "created_by": schedule["created_by"],
                "created_at": created,
                "updated_at": created,
                "schedule_id": schedule["id"],
            }
        )
    edges = [{"job_id": ids[c], "depends_on_id": ids[p]} for c, p in template["edges"]]
    if not is_batch:
        return None, rows, edges
    batch = {
        "id": batch_id,
        "name": template["name"],
        "tenant": schedule["tenant"],
        "created_by": schedule["created_by"],
        "job_count": len(rows),
        "created_at": now,
        "idempotency_key": key,
        "request_hash": None,
        "schedule_id": schedule["id"],
    }
    return batch, rows, edges


async def insert_run(
    conn: AsyncConnection, schedule: RowMapping | dict[str, Any], tick: datetime, now: datetime
) -> Run:
    """Insert the tick's run through the submit's own inserts (:mod:`models.inserts`), under
    the tick's idempotency key."""
    batch, rows, edges = stamp(schedule, tick, now)
    ids = [r["id"] for r in rows]
    if batch is None:
        return Run(ids[0], None, ids, await insert_job(conn, rows[0], ()))
    hooks = schedule["template"].get("callbacks") or []
    called = callback_rows(hooks, batch["id"], schedule["tenant"], now)
    return Run(None, batch["id"], ids, await insert_batch(conn, batch, rows, edges, called))


async def existing_run(
    conn: AsyncConnection, schedule: RowMapping | dict[str, Any], tick: datetime
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The run another scheduler already inserted for ``tick`` (its job, or its batch)."""
    key = tick_key(schedule["id"], tick)
    table = batches if schedule["kind"] == "batch" else jobs
    found = (
        await conn.execute(
            select(table.c.id).where(
                table.c.tenant == schedule["tenant"], table.c.idempotency_key == key
            )
        )
    ).first()
    if found is None:
        return None, None
    return (None, found[0]) if schedule["kind"] == "batch" else (found[0], None)


async def advance(conn: AsyncConnection, schedule_id: uuid.UUID, values: dict[str, Any]) -> None:
    await conn.execute(update(schedules_t).where(schedules_t.c.id == schedule_id).values(**values))
