"""The tables the API reads and writes, as SQLAlchemy ``Table`` handles, and the dialect's
``INSERT`` (the one with ``ON CONFLICT``) for each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import CANCELLABLE_AT_ONCE
from models.inserts import insert_of
from models.tables import (
    Batch,
    BreakerRow,
    Job,
    JobAttempt,
    JobDependency,
    JobLog,
    JobProgressRow,
    JobTypeLimits,
    Schedule,
    Tenant,
    Worker,
)

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
batches: Table = Batch.__table__  # type: ignore[attr-defined]
attempts_t: Table = JobAttempt.__table__  # type: ignore[attr-defined]
logs_t: Table = JobLog.__table__  # type: ignore[attr-defined]
workers_t: Table = Worker.__table__  # type: ignore[attr-defined]
progress_t: Table = JobProgressRow.__table__  # type: ignore[attr-defined]
tenants_t: Table = Tenant.__table__  # type: ignore[attr-defined]
type_limits_t: Table = JobTypeLimits.__table__  # type: ignore[attr-defined]
breakers_t: Table = BreakerRow.__table__  # type: ignore[attr-defined]
schedules_t: Table = Schedule.__table__  # type: ignore[attr-defined]
#: Statuses a cancel ends at once (the job holds no worker).
WAITING = tuple(s.value for s in CANCELLABLE_AT_ONCE)


async def upsert_by_name(
    conn: AsyncConnection, table: Table, name: str, values: dict[str, Any]
) -> RowMapping:
    """Set ``values`` on the row named ``name`` of a table keyed by ``name`` (made if none),
    other columns as they were, in one statement committed on its own: two admins writing
    the same row at once each keep their own columns. The row as it is now."""
    stmt = insert_of(conn, table).values(name=name, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_=values)
    async with conn.begin():
        row = (await conn.execute(stmt.returning(*table.c))).mappings().one()
    return row
