"""Open streams whose key stops working are closed: every ``every`` seconds one query asks which
of the keys behind this process's streams were revoked, expired or deleted, and their streams
are closed with :data:`~api.stream.client.CLOSE_UNAUTHORIZED`. Those keys are also dropped
from the verifier's cache, so HTTP requests with them fail at once here too."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from api.stream import StreamHub
from api.stream.client import CLOSE_UNAUTHORIZED
from smartq import keystore
from smartq.keystore import KeyVerifier

log = logging.getLogger(__name__)


class KeyWatch:
    def __init__(
        self, engine: AsyncEngine, hub: StreamHub, verifier: KeyVerifier, every: float
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.verifier = verifier
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api.keywatch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> int:
        """One look: closes the streams of dead keys; returns how many it closed."""
        ids = self.hub.key_ids()
        if not ids:
            return 0
        async with self.engine.connect() as conn:
            dead = await keystore.dead_keys(conn, ids)
        if not dead:
            return 0
        for key_id in dead:
            self.verifier.forget(key_id)
        closed = self.hub.close_keys(dead, CLOSE_UNAUTHORIZED, "API key revoked or expired")
        log.info(
            "closed streams of revoked or expired keys",
            extra={"action": "stream.key_dead", "keys": sorted(dead), "streams": closed},
        )
        return closed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
            except Exception:  # the database may be away for a while: look again later
                log.warning(
                    "could not check the keys of open streams",
                    exc_info=True,
                    extra={"action": "stream.key_check_failed"},
                )
