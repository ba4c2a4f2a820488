"""``/schedules``: cron schedules (issue 19). A schedule belongs to the tenant of the key that
made it; making, changing, pausing, resuming and deleting one need ``submit`` (they decide what
the tenant submits), reading it needs ``read``.

The body a schedule submits is checked here as ``POST /jobs`` or ``POST /jobs/batch`` would
check it, and resolved to rows (the job types' defaults filled in) that are kept with the
schedule as its *template*: the leading scheduler stamps a copy of it at each tick
(:mod:`scheduler.ticks`), so it needs none of the job types' code and a schedule accepted here
cannot fail to submit later. The leading scheduler fires the ticks; this router only writes
what users set.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from sqlalchemy import RowMapping, case
from sqlalchemy.ext.asyncio import AsyncConnection

from api import paging
from api.auth import AUTH_ERRORS, Read, Submit
from api.callbacks import check_urls, require_secret
from api.deps import ApiContext, ConnDep, ContextDep
from api.routes.jobs import ERRORS
from api.routes.submissions import check_payload, job_type_of
from api.schedule_schemas import (
    NEXT_SHOWN,
    ScheduleCreate,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from api.schemas import BatchCreate, JobCreate
from api.store import schedules as store
from api.store.tables import schedules_t
from api.submit import Owner, job_row, resolve_batch
from models.types import utcnow
from scheduler import cron
from scheduler.cron import CronSpec
from smartq.errors import SubmissionRejected

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=AUTH_ERRORS)
ScheduleId = Annotated[uuid.UUID, Path(description="The schedule's id.")]

#: Row fields each tick sets itself (ids, times, who, the tick's idempotency key).
_STAMPED = (
    "id",
    "idempotency_key",
    "request_hash",
    "batch_id",
    "tenant",
    "created_by",
    "created_at",
    "updated_at",
)


def _invalid(message: str, detail: Any = None) -> HTTPException:
    return HTTPException(422, {"error": message, "detail": detail})


def _spec(expression: str, zone: str) -> CronSpec:
    try:
        return cron.parse(expression, zone)
    except cron.CronError as exc:
        raise _invalid(str(exc), {"cron": expression, "timezone": zone}) from None


def _refuse_per_run_fields(job: JobCreate, where: str) -> None:
    """What makes no sense repeated: one moment to run at, one idempotency key."""
    if job.run_at is not None:
        raise SubmissionRejected(f"{where}: run_at makes no sense in a schedule (the cron is when)")
    if job.idempotency_key is not None:
        raise SubmissionRejected(
            f"{where}: idempotency_key is made per tick by the schedule; leave it out"
        )


def _template_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _STAMPED}


def _job_template(ctx: ApiContext, job: JobCreate, owner: Owner) -> dict[str, Any]:
    _refuse_per_run_fields(job, "job")
    if job.depends_on:
        raise SubmissionRejected(
            "job: a schedule's job cannot depend on existing jobs (every run would wait on the "
            "same ones); use a batch for dependencies between a run's jobs"
        )
    job_type = job_type_of(ctx, job.type)
    check_payload(ctx, job.payload)
    row = job_row(job, job_type, utcnow(), owner=owner, depends_on=[])
    return {"name": None, "jobs": [_template_row(row)], "edges": []}


def _batch_template(ctx: ApiContext, batch: BatchCreate, owner: Owner) -> dict[str, Any]:
    limit = ctx.settings.max_batch_jobs
    if len(batch.jobs) > limit:
        raise SubmissionRejected(f"batch has {len(batch.jobs)} jobs; the limit is {limit}")
    keys = {j.key for j in batch.jobs if j.key is not None}
    types = {}
    for i, job in enumerate(batch.jobs):
        where = f"batch job {job.key or f'#{i}'!r}"
        _refuse_per_run_fields(job, where)
        outside = [ref for ref in job.depends_on if ref not in keys]
        if outside:
            raise SubmissionRejected(
                f"{where} depends on {outside[0]!r}: a schedule's batch may depend only on "
                "keys of its own jobs",
                {"job": job.key or f"#{i}", "unknown_dependency": outside[0]},
            )
        types[job.type] = job_type_of(ctx, job.type)
        check_payload(ctx, job.payload, job.key or f"#{i}")
    resolved = resolve_batch(batch, types, utcnow(), uuid.uuid4(), owner)
    index = {row["id"]: i for i, row in enumerate(resolved.rows)}
    edges = [[index[e["job_id"]], index[e["depends_on_id"]]] for e in resolved.edges]
    rows = [_template_row(r) for r in resolved.rows]
    hooks = check_urls(batch.callbacks, ctx.settings)
    return {"name": batch.name, "jobs": rows, "edges": edges, "callbacks": hooks}


async def _signable(ctx: ApiContext, conn: AsyncConnection, values: dict[str, Any]) -> None:
    """A schedule whose batch asks for callbacks needs a secret for them, as a submit does."""
    if not values.get("template", {}).get("callbacks"):
        return
    try:
        await require_secret(conn, values.get("tenant") or "", ctx.settings)
    except SubmissionRejected as exc:
        raise _invalid(exc.message, exc.detail) from None


def _what(
    ctx: ApiContext, job: JobCreate | None, batch: BatchCreate | None, owner: Owner
) -> dict[str, Any]:
    """The columns for what a schedule submits: its kind, the body as sent, the template."""
    if (job is None) == (batch is None):
        raise _invalid("give exactly one of job (as for POST /jobs) and batch (POST /jobs/batch)")
    try:
        if job is not None:
            body = job.model_dump(mode="json", exclude_unset=True)
            return {"kind": "job", "body": body, "template": _job_template(ctx, job, owner)}
        assert batch is not None
        body = batch.model_dump(mode="json", exclude_unset=True)
        return {"kind": "batch", "body": body, "template": _batch_template(ctx, batch, owner)}
    except SubmissionRejected as exc:
        status = 413 if exc.kind == SubmissionRejected.TOO_LARGE else 422
        raise HTTPException(status, {"error": exc.message, "detail": exc.detail}) from None


def schedule_out(row: RowMapping | dict[str, Any]) -> ScheduleOut:
    spec = cron.parse(row["cron"], row["timezone"])
    nxt = row["next_fire_at"]
    times = [] if row["paused"] or nxt is None else [nxt, *cron.upcoming(spec, nxt, NEXT_SHOWN - 1)]
    doc = {c: row[c] for c in ScheduleOut.model_fields if c in row and c not in ("job", "batch")}
    return ScheduleOut(
        **doc,
        job=row["body"] if row["kind"] == "job" else None,
        batch=row["body"] if row["kind"] == "batch" else None,
        next_fire_times=times,
    )


@router.post("", status_code=201, response_model=ScheduleOut, responses=ERRORS)
async def create_schedule(
    body: ScheduleCreate, access: Submit, ctx: ContextDep, conn: ConnDep
) -> ScheduleOut:
    """A schedule that submits ``job`` or ``batch`` at each tick of ``cron`` in ``timezone``;
    its first tick is the first after now."""
    spec = _spec(body.cron, body.timezone)
    owner = Owner(tenant=access.home, created_by=access.caller.key_id)
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant": owner.tenant,
        "created_by": owner.created_by,
        "name": body.name,
        "cron": spec.expression,
        "timezone": spec.zone_name,
        **_what(ctx, body.job, body.batch, owner),
        "overlap": body.overlap.value,
        "catchup": body.catchup.value,
        "max_catchup": body.max_catchup,
        "paused": body.paused,
        "last_tick": now,
        "next_fire_at": None if body.paused else cron.next_after(spec, now),
        "last_fired_tick": None,
        "last_job_id": None,
        "last_batch_id": None,
        "runs": 0,
        "skipped": 0,
        "last_skip": None,
        "last_skip_at": None,
        "created_at": now,
        "updated_at": now,
    }
    await _signable(ctx, conn, values)
    await store.insert_schedule(conn, values)
    return schedule_out(values)


@router.get("", response_model=SchedulePage, responses=ERRORS)
async def list_schedules(
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    limit: paging.Limit = 50,
    cursor: paging.Cursor = None,
) -> SchedulePage:
    """The caller's schedules, newest first; follow ``next_cursor``."""
    paging.check_limit(limit, ctx.settings.page_limit_max)
    found = await store.list_schedules(conn, access.tenant, paging.decode_cursor(cursor), limit + 1)
    rows, next_cursor = paging.page(found, limit)
    return SchedulePage(items=[schedule_out(r) for r in rows], next_cursor=next_cursor)


async def _existing(
    conn: ConnDep, schedule_id: uuid.UUID, tenant: str | None, *, lock: bool = False
) -> RowMapping:
    row = await store.get_schedule(conn, schedule_id, tenant, lock=lock)
    if row is None:
        raise HTTPException(404, f"no schedule {schedule_id}")
    return row


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=ERRORS)
async def get_schedule(schedule_id: ScheduleId, access: Read, conn: ConnDep) -> ScheduleOut:
    """The schedule, its next fire times and what its ticks did so far."""
    return schedule_out(await _existing(conn, schedule_id, access.tenant))


def _from_now(now: datetime) -> Any:
    """``last_tick`` moved to now, never back (the scheduler may have handled a later tick)."""
    return case((schedules_t.c.last_tick > now, schedules_t.c.last_tick), else_=now)


async def _set(
    conn: AsyncConnection, schedule_id: uuid.UUID, tenant: str | None, values: dict[str, Any]
) -> ScheduleOut:
    row = await store.update_schedule(conn, schedule_id, tenant, values)
    if row is None:
        raise HTTPException(404, f"no schedule {schedule_id}")
    return schedule_out(row)


@router.patch("/{schedule_id}", response_model=ScheduleOut, responses=ERRORS)
async def patch_schedule(
    schedule_id: ScheduleId, body: SchedulePatch, access: Submit, ctx: ContextDep, conn: ConnDep
) -> ScheduleOut:
    """Change what is sent; a new cron or time zone counts its ticks from now."""
    async with conn.begin():
        row = await _existing(conn, schedule_id, access.tenant, lock=True)
        values = _changes(ctx, row, body)
        await _signable(ctx, conn, {"tenant": row["tenant"], **values})
        return await _set(conn, schedule_id, access.tenant, values)


def _changes(ctx: ApiContext, row: RowMapping, body: SchedulePatch) -> dict[str, Any]:
    sent = body.model_fields_set
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    for field in ("name", "overlap", "catchup", "max_catchup"):
        if field in sent:
            value = getattr(body, field)
            if value is None and field != "name":
                raise _invalid(f"{field} cannot be null")
            values[field] = value.value if hasattr(value, "value") else value
    if sent & {"job", "batch"}:
        owner = Owner(tenant=row["tenant"], created_by=row["created_by"])
        values.update(_what(ctx, body.job, body.batch, owner))
    if sent & {"cron", "timezone"}:
        spec = _spec(body.cron or row["cron"], body.timezone or row["timezone"])
        values.update(cron=spec.expression, timezone=spec.zone_name, last_tick=_from_now(now))
        values["next_fire_at"] = None if row["paused"] else cron.next_after(spec, now)
    return values


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=ERRORS)
async def pause_schedule(schedule_id: ScheduleId, access: Submit, conn: ConnDep) -> ScheduleOut:
    """No tick fires until it is resumed; its runs go on."""
    values = {"paused": True, "next_fire_at": None, "updated_at": utcnow()}
    async with conn.begin():
        return await _set(conn, schedule_id, access.tenant, values)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=ERRORS)
async def resume_schedule(schedule_id: ScheduleId, access: Submit, conn: ConnDep) -> ScheduleOut:
    """Fire again from the next tick after now: ticks while it was paused never fire (the
    catch-up rule is about the scheduler's downtime, not about a pause)."""
    async with conn.begin():
        row = await _existing(conn, schedule_id, access.tenant, lock=True)
        now = utcnow()
        spec = cron.parse(row["cron"], row["timezone"])
        values = {
            "paused": False,
            "last_tick": _from_now(now),
            "next_fire_at": cron.next_after(spec, now),
            "updated_at": now,
        }
        return await _set(conn, schedule_id, access.tenant, values)


@router.delete("/{schedule_id}", response_model=ScheduleOut, responses=ERRORS)
async def delete_schedule(schedule_id: ScheduleId, access: Submit, conn: ConnDep) -> ScheduleOut:
    """Delete it: nothing more fires; its runs stay, with ``schedule_id`` null. The schedule
    as it was."""
    row = await store.delete_schedule(conn, schedule_id, access.tenant)
    if row is None:
        raise HTTPException(404, f"no schedule {schedule_id}")
    return schedule_out(row)
