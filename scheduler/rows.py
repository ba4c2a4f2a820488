"""What a pass writes to a job row, and the clock at the edge (pure: no I/O).

The shell's two stores (:mod:`scheduler.pass_store`) write a :class:`JobWrite` each in their
way; the core's decisions become :class:`JobWrite` values in :mod:`scheduler.writes`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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
