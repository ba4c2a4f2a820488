"""Where a pass reads its new jobs and writes its decisions: one interface, two stores.

:class:`PassWrite` is everything one pass writes; a store writes it atomically and says which
job writes won (with their dispatch fields). PostgreSQL runs it as one statement on a
connection of the scheduler's own (:class:`scheduler.pass_sql.PassConnection`); SQLite as the
statements of :mod:`scheduler.store` in one transaction (:class:`SqlitePassStore`). The
conditions are the same on both: a job row moves only ``WHERE status = from AND attempts = n``.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from models.enums import WorkerState
from scheduler import store
from scheduler.encode import AttemptWrites
from scheduler.rows import JobWrite
from scheduler.store import Loaded
from scheduler.values import Placement

#: The rows that moved, by job id, with their dispatch fields.
Won = Mapping[uuid.UUID, Any]


@dataclass(frozen=True)
class PassWrite:
    """One pass's writes: job rows (in id order, the lock order of every writer), attempt rows
    to open for the placements that win, attempt rows to close, release or delete, the
    heartbeating workers' rows, and the workers past their lease."""

    jobs: Sequence[JobWrite]
    placements: Sequence[Placement]
    attempts: AttemptWrites
    workers: list[dict[str, Any]]
    gone: list[str]
    now: datetime


class PassStore(Protocol):
    async def read_pending(
        self, ids: Sequence[uuid.UUID] | None, known: Container[uuid.UUID], limit: int
    ) -> Loaded:
        """New (``pending``) jobs: the ones named, or (``None``: the fallback poll) any
        ``known`` lacks."""

    async def write(self, w: PassWrite) -> Won:
        """Write the pass atomically; the job rows that moved."""

    async def close(self) -> None: ...


class SqlitePassStore:
    """The pass as statements of one transaction (the embedded default, and any database
    without the PostgreSQL statement)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def read_pending(
        self, ids: Sequence[uuid.UUID] | None, known: Container[uuid.UUID], limit: int
    ) -> Loaded:
        async with self.engine.connect() as conn:
            return await store.load_pending(conn, ids, known, limit=limit)

    async def write(self, w: PassWrite) -> Won:
        async with self.engine.begin() as conn:
            won = await store.apply(conn, w.jobs, w.now)
            await store.drop_attempts(conn, w.attempts.drops)
            opened = [p for p in w.placements if p.job_id in won]
            await store.insert_attempts(conn, [_opened(p, w.now) for p in opened])
            await store.finish_attempts(conn, w.attempts.closes)
            await store.release_attempts(conn, w.attempts.releases, w.now)
            await store.upsert_workers(conn, w.workers)
            await store.mark_workers(conn, w.gone, WorkerState.OFFLINE.value)
        return won

    async def close(self) -> None:
        return None


def _opened(p: Placement, now: datetime) -> dict[str, Any]:
    return {
        "job_id": p.job_id,
        "attempt": p.attempt,
        "worker_id": p.worker_id,
        "cpu_units": p.cpu_units,
        "memory_mb": p.memory_mb,
        "started_at": now,
    }
