"""Pauses in force (``pauses``): everything, a job type, a batch. The leading scheduler polls
them; the API shows them and words the waiting reason of the jobs they hold."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import RowMapping, Table, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from models.inserts import insert_of
from models.tables import Pause

pauses_t: Table = Pause.__table__  # type: ignore[attr-defined]
ALL = ("all", "*")


async def put_pause(
    conn: AsyncConnection, kind: str, name: str, by: str | None, now: datetime
) -> RowMapping:
    """Pause (``kind``, ``name``); pausing what is paused keeps who paused it first, and when.
    The pause as it is now."""
    stmt = insert_of(conn, pauses_t).values(kind=kind, name=name, paused_by=by, paused_at=now)
    # Committed here whether or not a read began the connection's transaction first.
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["kind", "name"]))
    found = await conn.execute(
        select(pauses_t).where(pauses_t.c.kind == kind, pauses_t.c.name == name)
    )
    row = found.mappings().one()
    await conn.commit()
    return row


async def delete_pause(conn: AsyncConnection, kind: str, name: str) -> bool:
    """Resume (``kind``, ``name``); False when it was not paused."""
    result = await conn.execute(
        delete(pauses_t).where(pauses_t.c.kind == kind, pauses_t.c.name == name)
    )
    await conn.commit()
    return result.rowcount > 0


async def pause_rows(conn: AsyncConnection) -> list[RowMapping]:
    rows = await conn.execute(select(pauses_t).order_by(pauses_t.c.kind, pauses_t.c.name))
    return list(rows.mappings())


async def pause_holding(
    conn: AsyncConnection, job_type: str, batch_id: uuid.UUID | None
) -> RowMapping | None:
    """The pause that holds a job of ``job_type`` in ``batch_id``, if any (everything first,
    then its type, then its batch)."""
    wanted = [(pauses_t.c.kind == "all") & (pauses_t.c.name == "*")]
    wanted.append((pauses_t.c.kind == "type") & (pauses_t.c.name == job_type))
    if batch_id is not None:
        wanted.append((pauses_t.c.kind == "batch") & (pauses_t.c.name == str(batch_id)))
    rows = list((await conn.execute(select(pauses_t).where(or_(*wanted)))).mappings())
    order = {"all": 0, "type": 1, "batch": 2}
    return min(rows, key=lambda r: order.get(r["kind"], 3)) if rows else None
