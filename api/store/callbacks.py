"""Batch callbacks as the API reads and writes them: a tenant's callback secret (written by
admins, never read back but as set or not), a batch's callbacks and its delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import tenants_t, upsert_by_name
from models.callback_tables import CallbackDelivery
from models.inserts import callbacks_t

deliveries_t = CallbackDelivery.__table__  # type: ignore[attr-defined]


async def tenant_secret(conn: AsyncConnection, tenant: str) -> str | None:
    """The tenant's own callback secret (None: the setting's default applies)."""
    found = await conn.execute(
        select(tenants_t.c.callback_secret).where(tenants_t.c.name == tenant)
    )
    secret: str | None = found.scalar()
    return secret


async def put_secret(conn: AsyncConnection, tenant: str, secret: str, now: datetime) -> None:
    """Set the tenant's callback secret; its quotas stay as they are."""
    await upsert_by_name(conn, tenants_t, tenant, {"callback_secret": secret, "updated_at": now})


async def clear_secret(conn: AsyncConnection, tenant: str, now: datetime) -> None:
    """Back to the setting's default (no row is made for a tenant that has none)."""
    async with conn.begin():
        await conn.execute(
            update(tenants_t)
            .where(tenants_t.c.name == tenant)
            .values(callback_secret=None, updated_at=now)
        )


async def batch_callbacks(conn: AsyncConnection, batch_id: uuid.UUID) -> list[RowMapping]:
    rows = await conn.execute(
        select(callbacks_t)
        .where(callbacks_t.c.batch_id == batch_id)
        .order_by(callbacks_t.c.created_at, callbacks_t.c.id)
    )
    return list(rows.mappings())


async def deliveries(
    conn: AsyncConnection,
    batch_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """A page of the batch's deliveries, oldest first, each with its callback's URL."""
    conds: list[Any] = [deliveries_t.c.batch_id == batch_id]
    if after is not None:
        key = tuple_(deliveries_t.c.created_at, deliveries_t.c.id)
        conds.append(
            key
            > tuple_(
                literal(after[0], deliveries_t.c.created_at.type),
                literal(after[1], deliveries_t.c.id.type),
            )
        )
    rows = await conn.execute(
        select(deliveries_t, callbacks_t.c.url)
        .join(callbacks_t, callbacks_t.c.id == deliveries_t.c.callback_id)
        .where(*conds)
        .order_by(deliveries_t.c.created_at, deliveries_t.c.id)
        .limit(limit)
    )
    return list(rows.mappings())
