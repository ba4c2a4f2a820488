"""``GET /workers``: every worker with its capacity, use, state and history; and what admins
do to one: ``POST /workers/{id}/drain`` and ``/resume``, ``PATCH /workers/{id}`` (its size).

A drained worker finishes what runs and takes nothing new; its state is ``draining`` while
something still runs there and ``drained`` after. A size set by an admin replaces the one the
worker declares; a smaller one never stops what runs, new placements wait until use is under
it. Both live in ``worker_controls``, which the leading scheduler polls (within
``SMARTQ_LIMITS_POLL_SECONDS``), so they outlive a scheduler failover and the worker's own
restarts. The fleet is every tenant's: these need an admin key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.auth import AUTH_ERRORS, AdminDep, Monitor
from api.capacity import Holding, holding
from api.deps import ConnDep, ContextDep
from api.fleet_schemas import LingeringOut, WorkerControlOut, WorkerOut
from api.schemas import ErrorBody
from models.enums import WorkerState
from models.limits import MAX_CPU_UNITS, MAX_MEMORY_MB
from models.types import utcnow

router = APIRouter(prefix="/workers", tags=["workers"], responses=AUTH_ERRORS)


@router.get("", response_model=list[WorkerOut])
async def list_workers(
    caller: Monitor,
    conn: ConnDep,
    ctx: ContextDep,
    state: Annotated[list[WorkerState] | None, Query()] = None,
) -> list[WorkerOut]:
    """Workers by id. Use is what the attempts on each hold and have not released: running
    ones, and ended ones whose code still runs (``lingering``: a timed-out thread cannot be
    stopped, so its capacity stays taken until it returns). CPU % and memory come from the
    scheduler's latest resource monitoring, when this API has seen one. The fleet is shared
    by every tenant: this needs the ``monitor`` scope (or an admin key)."""
    now = utcnow()
    lease = timedelta(seconds=ctx.settings.worker_lease_seconds)
    rows = await store.list_workers(conn)
    use = await holding(conn)
    controls = await store.worker_controls(conn)
    resources = ctx.metrics.snapshots.resources
    measured = {w.worker_id: w for w in resources.workers} if resources else {}
    out = []
    for row in rows:
        held = use.get(row["id"], Holding())
        worker = _worker(row, controls.get(row["id"]), held, measured, now, lease)
        if not state or WorkerState(worker.state) in state:
            out.append(worker)
    return out


WorkerId = Annotated[str, Path(min_length=1, max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 422)}


class WorkerSize(BaseModel):
    """A size that replaces the one the worker declares; a field given as null goes back to
    the worker's own, a field left out stays as it was."""

    model_config = ConfigDict(extra="forbid")

    cpu_units: int | None = Field(default=None, ge=1, le=MAX_CPU_UNITS, strict=True)
    memory_mb: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MB, strict=True)


@router.post("/{worker_id}/drain", response_model=WorkerOut, responses=_ERRORS)
async def drain_worker(
    worker_id: WorkerId, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> WorkerOut:
    """Take nothing new on the worker; what runs there finishes. Its state is ``draining``
    until nothing runs there, then ``drained``. Undone by ``/resume``."""
    return await _control(conn, ctx, worker_id, {"drain": True}, caller.key_id)


@router.post("/{worker_id}/resume", response_model=WorkerOut, responses=_ERRORS)
async def resume_worker(
    worker_id: WorkerId, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> WorkerOut:
    """Place on the worker again after a drain (a worker draining itself, on SIGTERM, goes on
    stopping)."""
    return await _control(conn, ctx, worker_id, {"drain": False}, caller.key_id)


@router.patch("/{worker_id}", response_model=WorkerOut, responses=_ERRORS)
async def resize_worker(
    worker_id: WorkerId, body: WorkerSize, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> WorkerOut:
    """Give the worker another size: placements use it from the scheduler's next poll. A
    smaller size never stops what runs there."""
    given = body.model_dump(exclude_unset=True)
    if not given:
        raise HTTPException(422, "give cpu_units, memory_mb or both (null: the worker's own)")
    return await _control(conn, ctx, worker_id, given, caller.key_id)


async def _control(
    conn: AsyncConnection, ctx: Any, worker_id: str, values: dict[str, Any], by: str | None
) -> WorkerOut:
    control = await store.set_worker_control(conn, worker_id, values, utcnow(), by)
    row = await store.worker_row(conn, worker_id)
    if control is None or row is None:
        raise HTTPException(404, f"no worker {worker_id}")
    use = (await holding(conn)).get(worker_id, Holding())
    lease = timedelta(seconds=ctx.settings.worker_lease_seconds)
    return _worker(row, control, use, {}, utcnow(), lease)


def _state(row: Any, control: RowMapping | None, held: Holding, now: datetime, lease: Any) -> str:
    recorded = WorkerState(row["state"])
    if now - row["last_heartbeat"] > lease or recorded is WorkerState.OFFLINE:
        return WorkerState.OFFLINE.value
    if row["draining"] or (control is not None and control["drain"]):
        return WorkerState.DRAINING.value if held.running_jobs else WorkerState.DRAINED.value
    return WorkerState.BUSY.value if held.running_jobs else WorkerState.IDLE.value


def _worker(
    row: Any,
    control: RowMapping | None,
    held: Holding,
    measured: dict[str, Any],
    now: datetime,
    lease: Any,
) -> WorkerOut:
    state = _state(row, control, held, now, lease)
    until = row["last_heartbeat"] if state == WorkerState.OFFLINE.value else now
    seen = measured.get(row["id"])
    cpu = (control["cpu_units"] if control is not None else None) or row["cpu_units"]
    mem = (control["memory_mb"] if control is not None else None) or row["memory_mb"]
    return WorkerOut(
        id=row["id"],
        hostname=row["hostname"],
        state=state,
        cpu_units=cpu,
        memory_mb=mem,
        cpu_in_use=held.cpu_in_use,
        memory_in_use=held.memory_in_use,
        running_jobs=held.running_jobs,
        lingering=[
            LingeringOut(
                job_id=h.job_id, attempt=h.attempt, cpu_units=h.cpu_units, memory_mb=h.memory_mb
            )
            for h in held.lingering
        ],
        resources=row["resources"] or {},
        resources_in_use=held.resources_in_use,
        labels=row["labels"] or {},
        job_types=row["job_types"],
        started_at=row["started_at"],
        last_heartbeat=row["last_heartbeat"],
        uptime_seconds=max(0.0, (until - row["started_at"]).total_seconds()),
        jobs_succeeded=row["jobs_succeeded"],
        jobs_failed=row["jobs_failed"],
        draining=state in (WorkerState.DRAINING.value, WorkerState.DRAINED.value),
        control=None
        if control is None
        else WorkerControlOut(
            drain=control["drain"],
            cpu_units=control["cpu_units"],
            memory_mb=control["memory_mb"],
            declared_cpu_units=row["cpu_units"],
            declared_memory_mb=row["memory_mb"],
            updated_by=control["updated_by"],
            updated_at=control["updated_at"],
        ),
        cpu_percent=seen.cpu_percent if seen else None,
        rss_mb=seen.rss_mb if seen else None,
    )
