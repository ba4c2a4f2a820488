"""One active scheduler at a time: a PostgreSQL advisory lock held on a dedicated connection.

A second scheduler waits as a hot standby, trying the lock every ``retry_seconds``; when the
leader dies its connection closes, the lock is released, and the standby takes over within
seconds. The leader checks its lock connection before each pass: a leader whose connection
was cut (``pg_terminate_backend``) stops dispatching at once and goes back to waiting. Even
during a hand-over, two schedulers cannot dispatch the same attempt: every transition is a
conditional update on (status, attempts).

SQLite (the embedded mode) is one process by construction: leadership is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

#: Advisory lock key: "smartq" in ASCII, as a bigint.
LOCK_KEY = 0x736D61727471


class Leadership:
    """``await acquire()`` returns once this process leads; ``await still_leader()`` says
    whether it still does."""

    def __init__(self, engine: AsyncEngine, *, retry_seconds: float = 1.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self._conn: AsyncConnection | None = None
        self.postgres = engine.dialect.name == "postgresql"

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until the lock is ours (True) or ``stop`` is set (False)."""
        if not self.postgres:
            return True
        announced = False
        while stop is None or not stop.is_set():
            try:
                if await self._try():
                    log.info(
                        "this scheduler is now the leader", extra={"action": "leader.acquired"}
                    )
                    return True
            except Exception:
                log.warning(
                    "leader election failed; retrying",
                    exc_info=True,
                    extra={"action": "leader.error"},
                )
                await self.release()
            if not announced:
                log.info(
                    "another scheduler leads; waiting as a standby",
                    extra={"action": "leader.standby"},
                )
                announced = True
            await _sleep(stop, self.retry_seconds)
        return False

    async def _try(self) -> bool:
        if self._conn is None:
            self._conn = await self.engine.connect()
        got = (
            await self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})
        ).scalar()
        await self._conn.commit()
        return bool(got)

    async def still_leader(self) -> bool:
        """Whether our lock connection is alive (and so still holds the lock)."""
        if not self.postgres:
            return True
        if self._conn is None:
            return False
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
            return True
        except Exception:
            log.error(
                "lost the leader lock's connection; stepping down", extra={"action": "leader.lost"}
            )
            await self.release()
            return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.close()
        except Exception:
            await _discard(conn)


async def _discard(conn: Any) -> None:
    try:
        await conn.invalidate()
    except Exception:
        log.debug("could not discard a broken connection", exc_info=True)


async def _sleep(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
