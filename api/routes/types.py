"""``GET /types``: the job types one can submit, with their defaults, the live workers that run
each (a type no live worker runs waits; see ``waiting_reason``), an admin's override of its
limits and its circuit breaker. ``PATCH /types/{name}``: that override (issue 17), admin only.

The override is durable, in ``job_type_limits``: the API writes it and every scheduler reads it
within ``SMARTQ_LIMITS_POLL_SECONDS``. Any name a type could have may be patched, registered
here or not (a worker-only type, or one not deployed yet); ``GET /types`` lists those too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import RowMapping

from api import store
from api.auth import AUTH_ERRORS, AdminDep, Read
from api.deps import ConnDep, ContextDep
from api.fleet_schemas import BreakerOut, TypeLimitsOut, TypeOut
from api.schemas import ErrorBody, no_nul
from models.enums import WorkerState
from models.limits import MAX_NAME_LENGTH
from models.types import utcnow
from scheduler.limits import parse_rate

router = APIRouter(prefix="/types", tags=["types"], responses=AUTH_ERRORS)
#: ``:path``: a type's name may hold ``/`` (sent as ``%2F``).
TypeName = Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(no_nul)]
#: The most running jobs an override may allow: a slip of the keyboard, not policy.
MAX_RUNNING = 1_000_000


class TypeLimitsPatch(BaseModel):
    """Only the fields present change; null clears one (back to the decorator's value)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit: str | None = Field(
        default=None, max_length=40, description="Dispatches at most: 5/s, 30/min or 100/h."
    )
    max_running: int | None = Field(
        default=None, ge=1, le=MAX_RUNNING, strict=True, description="Running jobs at most."
    )
    breaker: Literal["open", "closed", "auto"] | None = Field(
        default=None,
        description="open: hold it open (nothing of the type runs); closed: hold it closed "
        "(failures never open it); auto (or null): the breaker decides.",
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)  # its ValueError says what a rate looks like: a 422
            return value.strip()
        return value

    def changes(self) -> dict[str, Any]:
        """The override's columns this patch sets."""
        out: dict[str, Any] = {}
        for field in self.model_fields_set:
            value = getattr(self, field)
            if field == "breaker":
                out["breaker_force"] = None if value in (None, "auto") else value
            else:
                out[field] = value
        return out


def _limits(row: RowMapping | None) -> TypeLimitsOut | None:
    if row is None:
        return None
    return TypeLimitsOut(
        rate_limit=row["rate_limit"],
        max_running=row["max_running"],
        breaker_force=row["breaker_force"],
        updated_at=row["updated_at"],
    )


def _breaker(row: RowMapping | None) -> BreakerOut | None:
    if row is None:
        return None
    return BreakerOut(state=row["state"], opened_at=row["opened_at"], forced=row["forced"])


@router.get("", response_model=list[TypeOut])
async def list_types(access: Read, conn: ConnDep, ctx: ContextDep) -> list[TypeOut]:
    """By name: every type this API registers, every type a live worker offers and every type
    an admin overrode. Types are code shared by every tenant, so the list is the same for
    all; workers are only counted."""
    lease = timedelta(seconds=ctx.settings.worker_lease_seconds)
    now = utcnow()
    offered: dict[str, int] = {}
    for row in await store.list_workers(conn):
        live = row["state"] != WorkerState.OFFLINE.value and now - row["last_heartbeat"] <= lease
        if live and not row["draining"]:
            for name in row["job_types"] or ():
                offered[name] = offered.get(name, 0) + 1
    limits = await store.type_limit_rows(conn)
    breakers = await store.breaker_rows(conn)
    queue = ctx.metrics.snapshots.queue
    learned = {d.job_type: d for d in queue.durations} if queue is not None else {}
    out = []
    for name in sorted(set(ctx.registry.names()) | set(offered) | set(limits) | set(learned)):
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
                limits=_limits(limits.get(name)),
                breaker=_breaker(breakers.get(name)),
                predicted_seconds=round(d.seconds, 3) if (d := learned.get(name)) else None,
                p90_seconds=round(d.p90_seconds, 3) if d else None,
                runs_seen=d.runs if d else 0,
            )
        )
    return out


@router.patch("/{name:path}", response_model=TypeLimitsOut, responses={422: {"model": ErrorBody}})
async def patch_type(
    name: TypeName, body: TypeLimitsPatch, caller: AdminDep, conn: ConnDep
) -> TypeLimitsOut:
    """Override a type's rate limit, its running jobs at most, or hold its breaker open or
    closed; only the fields sent change. Applies within ``SMARTQ_LIMITS_POLL_SECONDS``."""
    changes = body.changes()
    if changes:
        row: RowMapping | None = await store.patch_type_limits(conn, name, changes, utcnow())
    else:
        row = await store.type_limit_row(conn, name)
    shown = _limits(row)
    return shown or TypeLimitsOut(
        rate_limit=None, max_running=None, breaker_force=None, updated_at=None
    )
