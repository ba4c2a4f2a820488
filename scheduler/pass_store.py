"""Where a pass reads its new jobs and writes its decisions: one interface, two stores.

:class:`PassWrite` is everything one pass writes; a store writes it atomically and says which
job writes won (with their dispatch fields). PostgreSQL runs it as one statement on a
connection of the scheduler's own (:class:`scheduler.pass_sql.PassConnection`); SQLite as the
statements of one transaction (:class:`scheduler.sqlite_pass.SqlitePassStore`). The
conditions are the same on both: a job row moves only ``WHERE status = from AND attempts = n``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Container, Mapping, Sequence
from typing import Any, Protocol

from scheduler.rows import PassWrite
from scheduler.store import Loaded
from smartq.db import is_retryable

log = logging.getLogger(__name__)

#: The rows that moved, by job id, with their dispatch fields.
Won = Mapping[uuid.UUID, Any]


class PassStore(Protocol):
    #: The leader's token the writes are fenced by (:mod:`scheduler.leader`).
    epoch: int | None

    async def read_pending(
        self, ids: Sequence[uuid.UUID] | None, known: Container[uuid.UUID], limit: int
    ) -> Loaded:
        """New (``pending``) jobs: the ones named, or (``None``: the fallback poll) any
        ``known`` lacks."""

    async def write(self, w: PassWrite) -> Won:
        """Write the pass atomically; the job rows that moved."""

    async def close(self) -> None: ...


async def write_retrying(store: PassStore, write: PassWrite, attempts: int = 3) -> Won:
    """Write the pass; a deadlock or serialization failure is tried again (rows go in id
    order, so concurrent writers mostly queue rather than deadlock)."""
    for attempt in range(1, attempts + 1):
        try:
            return await store.write(write)
        except Exception as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            log.warning(
                "pass transaction conflicted; retrying",
                extra={"action": "scheduler.retry_write", "attempt": attempt},
            )
    raise AssertionError("unreachable")
