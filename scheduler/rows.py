"""What a pass writes to a job row, and the clock at the edge (pure: no I/O).

The shell's two stores (:mod:`scheduler.pass_store`) write a :class:`JobWrite` each in their
way; the core's decisions become :class:`JobWrite` values in :mod:`scheduler.writes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scheduler.values import Placement

AttemptKey = tuple[uuid.UUID, int]


def ts(value: datetime | None) -> float | None:
    """A datetime as epoch seconds (the core's time)."""
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (the database's time)."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class JobWrite:
    """One conditional row update: from (status, attempts) to the new values."""

    id: uuid.UUID
    from_status: str
    from_attempts: int
    status: str
    attempts: int
    reason: str | None
    error: str | None = None
    result: Any = None
    not_before: datetime | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Set by a memory escalation (None: unchanged).
    memory_escalated_mb: int | None = None
    memory_escalations: int | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """One value a :class:`JobWrite` sets on a job row: the field, the ``jobs`` column, its
    PostgreSQL type, and (when it is not a plain copy) the PostgreSQL expression that sets it
    (``v`` is the written row, ``j`` the row as it was)."""

    field: str
    column: str
    pg_type: str
    pg_set: str | None = None


#: Every job column a pass writes, declared once: the PostgreSQL statement
#: (:mod:`scheduler.pass_sql`) and the SQLite statements (:mod:`scheduler.store`) are made from
#: it. The write is conditional on ``(status, attempts) = (from_status, from_attempts)``.
JOB_COLUMNS = (
    Column("status", "status", "text"),
    Column("attempts", "attempts", "int"),
    Column("reason", "status_reason", "text"),
    Column(
        "error",
        "error",
        "text",
        "CASE WHEN v.status = 'completed' THEN NULL ELSE COALESCE(v.error, j.error) END",
    ),
    Column("result", "result", "jsonb"),
    Column("not_before", "not_before", "timestamptz"),
    Column("worker_id", "worker_id", "text"),
    Column("started_at", "started_at", "timestamptz", "COALESCE(j.started_at, v.started_at)"),
    Column("finished_at", "finished_at", "timestamptz"),
    Column(
        "memory_escalated_mb",
        "memory_escalated_mb",
        "int",
        "COALESCE(v.memory_escalated_mb, j.memory_escalated_mb)",
    ),
    Column(
        "memory_escalations",
        "memory_escalations",
        "int",
        "COALESCE(v.memory_escalations, j.memory_escalations)",
    ),
)
assert {c.field for c in JOB_COLUMNS} | {"id", "from_status", "from_attempts"} == set(
    JobWrite.__dataclass_fields__
), "JOB_COLUMNS must name every JobWrite field"


@dataclass(frozen=True)
class AttemptWrites:
    """Attempt rows a pass writes: ``closes`` (the ``b_``-prefixed rows of
    :func:`scheduler.sqlite_pass.finish_attempts`), ``releases`` of capacity held after an attempt
    ended, and ``drops`` of rows of dispatches that reached no worker."""

    closes: list[dict[str, Any]]
    releases: list[AttemptKey]
    drops: list[AttemptKey]


@dataclass(frozen=True)
class PassWrite:
    """One pass's writes: job rows (in id order, the lock order of every writer), attempt rows
    to open for the placements that win, attempt rows to close, release or delete, the
    heartbeating workers' rows, the workers past their lease, and changed breakers."""

    jobs: Sequence[JobWrite]
    placements: Sequence[Placement]
    attempts: AttemptWrites
    workers: list[dict[str, Any]]
    gone: list[str]
    now: datetime
    #: The ``breakers`` rows of the types whose breaker changed (scheduler.flowconfig).
    breakers: list[dict[str, Any]] = field(default_factory=list)
