"""``GET /workers``: every worker with its capacity, use, state and history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import store
from api.auth import AUTH_ERRORS, Monitor
from api.capacity import Holding, holding
from api.deps import ConnDep, ContextDep
from api.schemas import LingeringOut, WorkerOut
from models.enums import WorkerState
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
    resources = ctx.metrics.snapshots.resources
    measured = {w.worker_id: w for w in resources.workers} if resources else {}
    out = []
    for row in rows:
        recorded = WorkerState(row["state"])
        current = WorkerState.OFFLINE if now - row["last_heartbeat"] > lease else recorded
        if not state or current in state:
            out.append(_worker(row, current, use.get(row["id"], Holding()), measured, now))
    return out


def _worker(
    row: Any,
    current: WorkerState,
    held: Holding,
    measured: dict[str, Any],
    now: datetime,
) -> WorkerOut:
    until = row["last_heartbeat"] if current is WorkerState.OFFLINE else now
    seen = measured.get(row["id"])
    return WorkerOut(
        id=row["id"],
        hostname=row["hostname"],
        state=current.value,
        cpu_units=row["cpu_units"],
        memory_mb=row["memory_mb"],
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
        draining=row["draining"],
        cpu_percent=seen.cpu_percent if seen else None,
        rss_mb=seen.rss_mb if seen else None,
    )
