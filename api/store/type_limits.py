"""Job types' limits as admins override them (``job_type_limits``, written here only; the
scheduler polls it), and their circuit breakers as the scheduler last left them
(``breakers``, read here only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import breakers_t, type_limits_t, upsert_by_name

#: What an override may set; NULL: the ``@smartq.job`` decorator's value (``breaker_force``
#: NULL: the breaker decides by itself).
OVERRIDE_FIELDS = ("rate_limit", "max_running", "breaker_force")


async def type_limit_rows(conn: AsyncConnection) -> dict[str, RowMapping]:
    """Every type's override, by name."""
    result = await conn.execute(select(type_limits_t))
    return {row["name"]: row for row in result.mappings()}


async def type_limit_row(conn: AsyncConnection, name: str) -> RowMapping | None:
    result = await conn.execute(select(type_limits_t).where(type_limits_t.c.name == name))
    return result.mappings().one_or_none()


async def breaker_rows(conn: AsyncConnection) -> dict[str, RowMapping]:
    """Every type's breaker the scheduler stored, by type."""
    result = await conn.execute(select(breakers_t))
    return {row["job_type"]: row for row in result.mappings()}


async def patch_type_limits(
    conn: AsyncConnection, name: str, changes: dict[str, Any], now: datetime
) -> RowMapping:
    """Set the ``changes`` (columns of :data:`OVERRIDE_FIELDS`; None clears one) of a type's
    override, the other columns as they were."""
    unknown = set(changes) - set(OVERRIDE_FIELDS)
    if unknown:
        raise ValueError(f"not an override column: {sorted(unknown)}")
    return await upsert_by_name(conn, type_limits_t, name, {**changes, "updated_at": now})
