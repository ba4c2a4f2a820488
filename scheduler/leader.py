"""One active scheduler at a time: a PostgreSQL advisory lock held by a session that must keep
talking, and a fencing token every pass checks.

The lock. A scheduler leads while its own connection holds ``pg_try_advisory_lock``; a second
one waits as a hot standby, trying every ``retry_seconds``. A leader that dies closes its
connection and the lock goes at once. A leader that is *frozen* (SIGSTOP, a long pause) or
whose path to the server *stalls* leaves its session open, and the lock with it, for as long as
TCP keeps the session (hours): so the lock session runs with ``idle_session_timeout`` = the
lease, and the leader pings it every ``lease / 5``. Silent for a lease, the server ends the
session and the standby takes over.

Stepping down. The pings run on their own task (:meth:`Leadership.keep`); a ping that fails or
takes longer than half the lease sets :attr:`Leadership.lost`, and the service stops its
passes, even one stuck in a statement, well before the server lets the lock go.

The token. Stopping is not enough: a pass sent just before a freeze can reach the server after
the standby took over. On acquiring, a leader raises ``scheduler_leadership.epoch`` by one
(waiting for any pass that holds the row); each pass's statement locks that row ``FOR SHARE``
and writes only if it still carries this leader's epoch (``scheduler.pass_sql``), else it
raises :class:`LeadershipLost`. And every transition is a conditional update on (status,
attempts), so even then no attempt could be dispatched twice.

SQLite (the embedded mode) is one process by construction: leadership is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from smartq.db import psycopg_dsn

log = logging.getLogger(__name__)

#: Advisory lock key: "smartq" in ASCII, as a bigint.
LOCK_KEY = 0x736D61727471
#: ``idle_session_timeout`` came with PostgreSQL 14.
IDLE_TIMEOUT_SINCE = 140000
#: The lease is pinged this many times over; one lost ping is nothing.
PINGS_PER_LEASE = 5

_TAKE = """
UPDATE scheduler_leadership SET epoch = epoch + 1, holder = %(holder)s, acquired_at = now()
WHERE id = 1 RETURNING epoch
"""


class LeadershipLost(Exception):
    """A pass found the leader's token moved on: another scheduler took over."""


def holder_name() -> str:
    """How a scheduler's sessions name themselves (``application_name``): ``host:pid``."""
    return f"smartq-scheduler {socket.gethostname()}:{os.getpid()}"


class Leadership:
    """``await acquire()`` returns once this process leads, with :attr:`epoch` its token;
    :attr:`lost` is set once it may no longer lead (run :meth:`keep` beside the passes)."""

    def __init__(
        self, engine: AsyncEngine, *, lease_seconds: float = 10.0, retry_seconds: float = 1.0
    ) -> None:
        self.postgres = engine.dialect.name == "postgresql"
        self.dsn = psycopg_dsn(engine.url) if self.postgres else ""
        self.lease_seconds = lease_seconds
        self.retry_seconds = retry_seconds
        self.holder = holder_name()
        #: The token this leader took; ``None`` until it leads (always ``None`` on SQLite,
        #: where nothing else could lead).
        self.epoch: int | None = None
        self.lost = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until the lock is ours (True) or ``stop`` is set (False)."""
        self.lost = asyncio.Event()
        if not self.postgres:
            return True
        announced = False
        while stop is None or not stop.is_set():
            try:
                if await asyncio.wait_for(self._try(), self.lease_seconds):
                    log.info(
                        "this scheduler is now the leader",
                        extra={"action": "leader.acquired", "epoch": self.epoch},
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
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                application_name=self.holder,
                connect_timeout=max(2, int(self.lease_seconds)),
            )
        conn = self._conn
        got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
        if not (got and got[0]):
            return False
        # The server ends this session after a lease without a word from us, and the lock
        # with it; set only once we lead (a standby's idle session is no one's concern).
        if conn.info.server_version >= IDLE_TIMEOUT_SINCE:
            timeout_ms = str(int(self.lease_seconds * 1000))
            await conn.execute(
                "SELECT set_config('idle_session_timeout', %s, false)", (timeout_ms,)
            )
        else:
            log.warning(
                "PostgreSQL before 14 has no idle_session_timeout: a frozen leader keeps the "
                "lock until TCP drops its session (its late passes are still fenced)",
                extra={"action": "leader.no_lease"},
            )
        row = await (await conn.execute(_TAKE, {"holder": self.holder})).fetchone()
        if row is None:
            raise RuntimeError("scheduler_leadership has no row: run `smartq migrate`")
        self.epoch = int(row[0])
        return True

    async def keep(self) -> None:
        """Ping the lock session until it fails or is too slow, then set :attr:`lost`.
        Runs beside the passes for as long as this process leads."""
        if not self.postgres:
            await asyncio.Event().wait()  # nothing can take SQLite's lead away
        every = self.lease_seconds / PINGS_PER_LEASE
        while True:
            await asyncio.sleep(every)
            conn = self._conn
            if conn is None:
                reason = "no lock session"
                break
            # Not wait_for: cancelling a statement on a stalled path waits up to 10 s for the
            # server (psycopg's cancel), and the step-down must not.
            ping = asyncio.ensure_future(conn.execute("SELECT 1"))
            done, _ = await asyncio.wait({ping}, timeout=self.lease_seconds / 2)
            if ping not in done:
                ping.cancel()
                reason = f"no answer to a ping in {self.lease_seconds / 2:g}s"
                break
            if ping.exception() is not None:
                reason = repr(ping.exception())
                break
        log.error(
            "lost the leader lock's session; stepping down",
            extra={"action": "leader.lost", "epoch": self.epoch, "reason": reason},
        )
        self.lost.set()
        self._drop()

    def _drop(self) -> None:
        """Close the lock session's socket at once (the server ends the session, and its
        locks with it, when it notices, or when its idle timeout does)."""
        conn, self._conn = self._conn, None
        self.epoch = None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()

    async def still_leader(self) -> bool:
        """Whether this process may still lead (its pings are answered in time)."""
        return not self.lost.is_set()

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        self.epoch = None
        if conn is None or conn.closed:
            return
        try:
            # A stalled path would hold an orderly unlock for ever; closing the socket is
            # enough, as the server ends the session and its locks with it.
            await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock_all()"), 2)
        except Exception:
            log.debug("could not unlock in order; closing the session", exc_info=True)
        with contextlib.suppress(Exception):
            await conn.close()


async def until_lost(passes: Coroutine[Any, Any, None], lost: asyncio.Event) -> None:
    """Run the passes until they end or the lead is lost; then stop them, even in the middle
    of a statement that a stalled path holds (its write is fenced, see scheduler.leader)."""
    running = asyncio.ensure_future(passes)
    waiting = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        if not running.done():
            running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            if not lost.is_set():
                raise  # we were cancelled, not the lead lost
        except LeadershipLost as exc:
            log.error(
                "a pass found another scheduler leads; stepping down",
                extra={"action": "leader.lost", "reason": str(exc)},
            )
            lost.set()


async def _sleep(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
