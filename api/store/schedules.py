"""Schedules as users set them (``/schedules``): every read and write takes the tenant, so
another tenant's schedule is as absent as a missing one. The scheduler advances them
(:mod:`scheduler.tick_store`); these writes take the row's lock as its do."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, and_, delete, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import schedules_t


def _mine(schedule_id: uuid.UUID, tenant: str | None) -> ColumnElement[bool]:
    cond = schedules_t.c.id == schedule_id
    return cond if tenant is None else and_(cond, schedules_t.c.tenant == tenant)


async def insert_schedule(conn: AsyncConnection, values: dict[str, Any]) -> None:
    async with conn.begin():
        await conn.execute(schedules_t.insert(), values)


async def get_schedule(
    conn: AsyncConnection, schedule_id: uuid.UUID, tenant: str | None, *, lock: bool = False
) -> RowMapping | None:
    """The schedule; with ``lock``, its row locked for the caller's transaction (PostgreSQL;
    SQLite's one writer needs none), as the scheduler's tick takes it."""
    stmt = select(schedules_t).where(_mine(schedule_id, tenant))
    row = await conn.execute(stmt.with_for_update() if lock else stmt)
    return row.mappings().first()


async def list_schedules(
    conn: AsyncConnection,
    tenant: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """Newest first, keyset-paginated on (created_at, id)."""
    conds: list[ColumnElement[bool]] = []
    if tenant is not None:
        conds.append(schedules_t.c.tenant == tenant)
    if after is not None:
        created, last_id = after
        key = tuple_(schedules_t.c.created_at, schedules_t.c.id)
        conds.append(
            key
            < tuple_(
                literal(created, schedules_t.c.created_at.type),
                literal(last_id, schedules_t.c.id.type),
            )
        )
    stmt = (
        select(schedules_t)
        .where(and_(True, *conds))
        .order_by(schedules_t.c.created_at.desc(), schedules_t.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).mappings())


async def update_schedule(
    conn: AsyncConnection, schedule_id: uuid.UUID, tenant: str | None, values: dict[str, Any]
) -> RowMapping | None:
    """Set ``values`` on the schedule, in the caller's transaction; the row as it is now, or
    None if there is none."""
    row = await conn.execute(
        update(schedules_t)
        .where(_mine(schedule_id, tenant))
        .values(**values)
        .returning(*schedules_t.c)
    )
    return row.mappings().first()


async def delete_schedule(
    conn: AsyncConnection, schedule_id: uuid.UUID, tenant: str | None
) -> RowMapping | None:
    """Delete it (its runs stay, their ``schedule_id`` set to NULL); the row as it was."""
    async with conn.begin():
        row = await conn.execute(
            delete(schedules_t).where(_mine(schedule_id, tenant)).returning(*schedules_t.c)
        )
        return row.mappings().first()
