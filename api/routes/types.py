"""``GET /types``: the job types one can submit, with their defaults, and the live workers that
run each (a type no live worker runs waits; see ``waiting_reason``)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from api import store
from api.auth import AUTH_ERRORS, Read
from api.deps import ConnDep, ContextDep
from api.schemas import TypeOut
from models.enums import WorkerState
from models.types import utcnow

router = APIRouter(prefix="/types", tags=["types"], responses=AUTH_ERRORS)


@router.get("", response_model=list[TypeOut])
async def list_types(access: Read, conn: ConnDep, ctx: ContextDep) -> list[TypeOut]:
    """By name: every type this API registers, and every type a live worker offers. Types are
    code shared by every tenant, so the list is the same for all; workers are only counted."""
    lease = timedelta(seconds=ctx.settings.worker_lease_seconds)
    now = utcnow()
    offered: dict[str, int] = {}
    for row in await store.list_workers(conn):
        live = row["state"] != WorkerState.OFFLINE.value and now - row["last_heartbeat"] <= lease
        if live and not row["draining"]:
            for name in row["job_types"] or ():
                offered[name] = offered.get(name, 0) + 1
    out = []
    for name in sorted(set(ctx.registry.names()) | set(offered)):
        known = name in ctx.registry
        t = ctx.registry.get(name) if known else None
        out.append(
            TypeOut(
                name=name,
                known_to_api=known,
                cpu_units=t.cpu_units if t else None,
                memory_mb=t.memory_mb if t else None,
                max_attempts=t.max_attempts if t else None,
                timeout_seconds=t.timeout_seconds if t else None,
                workers=offered.get(name, 0),
            )
        )
    return out
