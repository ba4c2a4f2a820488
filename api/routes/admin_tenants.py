"""``/admin/tenants``: what an admin sets per tenant (issue 17): its quotas at submit
(``max_active_jobs``, ``submit_rate``: :mod:`api.admission`), its running jobs at most
(``max_running``) and its share of capacity (``weight``), which the scheduler applies. A field
not set is the settings' default (unset there: unlimited; weight 1). Admin keys only.

``PUT`` replaces what was set (a field left out or null is the default again) and applies at
once to this process's submits, within ``SMARTQ_LIMITS_POLL_SECONDS`` (a second at most for
submits) everywhere else. Every valid tenant name has quotas, its defaults at least, so
``GET`` and ``DELETE`` of a tenant nobody set anything for answer 200.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.admission import effective
from api.auth import AUTH_ERRORS, AdminDep
from api.deps import ConnDep, ContextDep
from api.schemas import ErrorBody
from api.store import callbacks as callback_store
from models.types import utcnow
from smartq import keys
from smartq.errors import ConfigurationError
from smartq.settings import Settings

router = APIRouter(prefix="/admin/tenants", tags=["admin"], responses=AUTH_ERRORS)
TenantName = Annotated[str, Path(max_length=100, description="The tenant, as keys name it.")]

#: Bounds that catch a slip of the keyboard, not policy.
MAX_ACTIVE_JOBS = 100_000_000
MAX_RUNNING = 1_000_000
MAX_SUBMIT_RATE = 1_000_000.0
MAX_WEIGHT = 10_000.0


class TenantQuotas(BaseModel):
    """What to set for a tenant; a field left out or null is the settings' default."""

    model_config = ConfigDict(extra="forbid")

    max_active_jobs: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ACTIVE_JOBS,
        strict=True,
        description="Waiting + running jobs at most; a submit beyond it is a 429.",
    )
    submit_rate: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SUBMIT_RATE,
        strict=True,
        allow_inf_nan=False,
        description="Submit requests per second (a batch is one), per API process.",
    )
    max_running: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RUNNING,
        strict=True,
        description="Running jobs at most; the rest wait ready, with the reason.",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WEIGHT,
        strict=True,
        allow_inf_nan=False,
        description="Share of capacity within a priority level, against other tenants'.",
    )


class EffectiveQuotas(BaseModel):
    """What applies: the value set, else the default (null: unlimited)."""

    max_active_jobs: int | None
    submit_rate: float | None
    max_running: int | None
    weight: float


class TenantOut(BaseModel):
    """A tenant's quotas: what an admin set (null: the default), what applies, and its active
    (waiting + running) jobs now."""

    name: str
    max_active_jobs: int | None
    submit_rate: float | None
    max_running: int | None
    weight: float | None
    effective: EffectiveQuotas
    active_jobs: int
    callback_secret_set: bool = Field(
        description="Whether an admin set this tenant's callback secret (it is never shown); "
        "false: SMARTQ_CALLBACK_SECRET signs its deliveries, if the server has one."
    )
    updated_at: datetime | None = Field(description="When an admin last set them; null: never.")


class CallbackSecret(BaseModel):
    """The key a tenant's batch callbacks are signed with (HMAC-SHA256)."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(
        min_length=16,
        max_length=512,
        pattern=r"^[\x21-\x7e]+$",
        description="16–512 printable ASCII characters, no spaces; e.g. from "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
    )


def _tenant(name: str) -> str:
    try:
        return keys.check_tenant(name)
    except ConfigurationError as exc:
        raise HTTPException(422, {"error": str(exc), "detail": {"tenant": name}}) from None


def _out(name: str, row: RowMapping | None, active: int, settings: Settings) -> TenantOut:
    given = {f: None if row is None else row[f] for f in store.QUOTA_FIELDS}
    applied = effective(row, settings)
    return TenantOut(
        name=name,
        **given,
        effective=EffectiveQuotas(
            max_active_jobs=applied.max_active_jobs,
            submit_rate=applied.submit_rate,
            max_running=applied.max_running,
            weight=applied.weight,
        ),
        active_jobs=active,
        callback_secret_set=row is not None and row["callback_secret"] is not None,
        updated_at=None if row is None else row["updated_at"],
    )


_ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody}}


@router.get("", response_model=list[TenantOut])
async def list_tenants(caller: AdminDep, conn: ConnDep, ctx: ContextDep) -> list[TenantOut]:
    """Every tenant an admin set something for, by name, with what applies and its active
    jobs now."""
    rows = await store.tenant_rows(conn)
    active = await store.active_counts(conn, [r["name"] for r in rows])
    return [_out(r["name"], r, active[r["name"]], ctx.settings) for r in rows]


@router.get("/{name}", response_model=TenantOut, responses=_ERRORS)
async def show_tenant(
    name: TenantName, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> TenantOut:
    """A tenant's quotas (its defaults when nobody set any) and its active jobs now."""
    name = _tenant(name)
    row = await store.tenant_row(conn, name)
    active = await store.active_counts(conn, [name])
    return _out(name, row, active[name], ctx.settings)


@router.put("/{name}", response_model=TenantOut, responses=_ERRORS)
async def set_tenant(
    name: TenantName, body: TenantQuotas, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> TenantOut:
    """Replace what is set for a tenant: a field left out or null is the default again."""
    name = _tenant(name)
    row = await store.put_tenant(conn, name, body.model_dump(), utcnow())
    ctx.admission.forget(name)
    active = await store.active_counts(conn, [name])
    return _out(name, row, active[name], ctx.settings)


@router.delete("/{name}", response_model=TenantOut, responses=_ERRORS)
async def reset_tenant(
    name: TenantName, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> TenantOut:
    """Quotas back to the defaults (nothing set is fine too). The callback secret stays: it is
    a credential receivers hold (``DELETE …/callback-secret`` drops it)."""
    name = _tenant(name)
    await store.delete_tenant(conn, name)
    ctx.admission.forget(name)
    return await _now(conn, name, ctx.settings)


async def _now(conn: AsyncConnection, name: str, settings: Settings) -> TenantOut:
    row = await store.tenant_row(conn, name)
    active = await store.active_counts(conn, [name])
    return _out(name, row, active[name], settings)


@router.put("/{name}/callback-secret", response_model=TenantOut, responses=_ERRORS)
async def set_callback_secret(
    name: TenantName, body: CallbackSecret, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> TenantOut:
    """Sign the tenant's callback deliveries with this secret from now on (deliveries
    already pending are signed with it at their next attempt). Never shown back."""
    name = _tenant(name)
    await callback_store.put_secret(conn, name, body.secret, utcnow())
    return await _now(conn, name, ctx.settings)


@router.delete("/{name}/callback-secret", response_model=TenantOut, responses=_ERRORS)
async def clear_callback_secret(
    name: TenantName, caller: AdminDep, conn: ConnDep, ctx: ContextDep
) -> TenantOut:
    """Back to ``SMARTQ_CALLBACK_SECRET`` for this tenant's deliveries."""
    name = _tenant(name)
    await callback_store.clear_secret(conn, name, utcnow())
    return await _now(conn, name, ctx.settings)
