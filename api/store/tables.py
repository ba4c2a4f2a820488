"""The tables the API reads and writes, as SQLAlchemy ``Table`` handles, and the dialect's
``INSERT`` (the one with ``ON CONFLICT``) for each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import CANCELLABLE_AT_ONCE
from models.tables import (
    Batch,
    BreakerRow,
    Job,
    JobAttempt,
    JobDependency,
    JobLog,
    JobProgressRow,
    JobTypeLimits,
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
#: Statuses a cancel ends at once (the job holds no worker).
WAITING = tuple(s.value for s in CANCELLABLE_AT_ONCE)


def insert_of(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT`` into ``table`` in the connection's dialect, which has ``on_conflict_do_…``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
