"""Tenants' quotas as admins set them (``tenants``), and what admission counts against them:
a tenant's active jobs, under a lock of that tenant's on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import jobs, tenants_t, upsert_by_name
from models.enums import ACTIVE_STATUSES

#: What a tenant's row may set; NULL (or no row): the settings' default.
QUOTA_FIELDS = ("max_active_jobs", "submit_rate", "max_running", "weight")
ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATUSES))
#: The first key of the two-key advisory locks admission takes ("sqtn"), apart from the
#: scheduler's one-key leadership lock (PostgreSQL keeps the two key spaces apart anyway).
LOCK_CLASS = 0x7371_746E
_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:class AS integer), hashtext(:tenant))")


async def tenant_row(conn: AsyncConnection, name: str) -> RowMapping | None:
    result = await conn.execute(select(tenants_t).where(tenants_t.c.name == name))
    return result.mappings().one_or_none()


async def tenant_rows(conn: AsyncConnection) -> list[RowMapping]:
    """Every tenant an admin set something for, by name."""
    result = await conn.execute(select(tenants_t).order_by(tenants_t.c.name))
    return list(result.mappings())


async def put_tenant(
    conn: AsyncConnection, name: str, quotas: dict[str, Any], now: datetime
) -> RowMapping:
    """Replace the tenant's row with ``quotas`` (a field left out is NULL: the default)."""
    values = {field: quotas.get(field) for field in QUOTA_FIELDS}
    return await upsert_by_name(conn, tenants_t, name, {**values, "updated_at": now})


async def delete_tenant(conn: AsyncConnection, name: str) -> None:
    """Back to the defaults: the tenant's row goes, unless it holds a callback secret, which
    is a credential receivers hold, not a quota (its quotas are then cleared)."""
    async with conn.begin():
        await conn.execute(
            delete(tenants_t).where(tenants_t.c.name == name, tenants_t.c.callback_secret.is_(None))
        )
        await conn.execute(
            update(tenants_t).where(tenants_t.c.name == name).values(dict.fromkeys(QUOTA_FIELDS))
        )


async def active_counts(conn: AsyncConnection, tenants: Sequence[str]) -> dict[str, int]:
    """Waiting + running jobs of each of ``tenants`` (0 for none), from the index on
    ``(tenant, status, created_at)``."""
    if not tenants:
        return {}
    result = await conn.execute(
        select(jobs.c.tenant, func.count())
        .where(jobs.c.tenant.in_(list(tenants)), jobs.c.status.in_(ACTIVE))
        .group_by(jobs.c.tenant)
    )
    counts = dict.fromkeys(tenants, 0)
    counts.update({tenant: int(n) for tenant, n in result.all()})
    return counts


async def lock_tenant(conn: AsyncConnection, tenant: str) -> None:
    """Make the open transaction the only one of ``tenant``'s submits counting its active
    jobs until it ends, so a count and the insert after it are exact under concurrency.
    PostgreSQL only: SQLite has one writer, and the API's one connection to it already runs
    requests one after another."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK, {"class": LOCK_CLASS, "tenant": tenant})
