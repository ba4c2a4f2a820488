"""Telling the scheduler about new jobs without making each request wait for the broker.

Requests add their job ids and return; one task publishes them as a single ``job.submitted``
hint. The first hint after a quiet spell goes out at once; while submits keep coming, hints go
out at most once per ``linger`` seconds, each with every id gathered since the last: publishing
one hint per request was a fifth of the API's CPU for a client submitting one job at a time. A
hint is only a wake-up call: the scheduler also polls for ``pending`` jobs, so a hint lost to a
broker failure delays jobs by one poll interval, never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from models.messages import JobsSubmitted
from smartq import topology

log = logging.getLogger(__name__)


class SubmitHints:
    def __init__(
        self, publish: Callable[[str, bytes], Awaitable[None]], linger: float = 0.0
    ) -> None:
        self._publish = publish
        self._linger = linger
        self._ids: list[uuid.UUID] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, ids: list[uuid.UUID]) -> None:
        self._ids.extend(ids)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-submit-hints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._send()  # what is left goes out before the process ends

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -self._linger
        while True:
            await self._wake.wait()
            early = last + self._linger - loop.time()
            if early > 0:
                await asyncio.sleep(early)
            self._wake.clear()
            last = loop.time()
            await self._send()

    async def _send(self) -> None:
        ids, self._ids = self._ids, []
        if not ids:
            return
        try:
            await self._publish(topology.JOB_SUBMITTED, JobsSubmitted(job_ids=ids).dumps())
        except Exception:
            log.warning(
                "could not send a submit hint; the scheduler's poll will find the jobs",
                extra={"action": "api.hint_failed", "jobs": len(ids)},
            )
