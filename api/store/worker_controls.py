"""What admins set on workers (``worker_controls``): drain, and a size that replaces the one a
worker declares. The leading scheduler polls these rows; the API shows them over the workers'
own rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import workers_t
from models.inserts import insert_of
from models.tables import WorkerControl

controls_t: Table = WorkerControl.__table__  # type: ignore[attr-defined]
#: What a control row may set.
CONTROL_FIELDS = ("drain", "cpu_units", "memory_mb")


async def worker_row(conn: AsyncConnection, worker_id: str) -> RowMapping | None:
    result = await conn.execute(select(workers_t).where(workers_t.c.id == worker_id))
    return result.mappings().one_or_none()


async def worker_controls(conn: AsyncConnection) -> dict[str, RowMapping]:
    """Every worker's control row, by worker id (a handful: only workers an admin touched)."""
    rows = (await conn.execute(select(controls_t))).mappings()
    return {r["worker_id"]: r for r in rows}


async def set_worker_control(
    conn: AsyncConnection, worker_id: str, values: dict[str, Any], now: datetime, by: str | None
) -> RowMapping | None:
    """Set ``values`` (some of :data:`CONTROL_FIELDS`) on the control row of a known worker,
    the others as they were (made if none), committed on its own; None when no such worker
    ever heartbeated."""
    given = {k: v for k, v in values.items() if k in CONTROL_FIELDS}
    changes = {**given, "updated_by": by, "updated_at": now}
    stmt = insert_of(conn, controls_t).values(worker_id=worker_id, **changes)
    stmt = stmt.on_conflict_do_update(index_elements=["worker_id"], set_=changes)
    async with conn.begin():
        if (await conn.execute(select(workers_t.c.id).where(workers_t.c.id == worker_id))).first():
            return (await conn.execute(stmt.returning(*controls_t.c))).mappings().one()
    return None
