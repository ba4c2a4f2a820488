"""A request's deadline (issue 20): an HTTP request not answered within
``SMARTQ_API_DEADLINE_SECONDS`` is answered 503 with ``Retry-After``, in the one error shape.

What it is for: a database whose path stalls (a hung middlebox, a partition TCP has not noticed)
leaves a statement waiting for hours; without a deadline every request that touched it would
hang, and a client could not tell "slow" from "never".

How. The request runs as a task of its own; at the deadline the answer goes out at once and the
task is cancelled in the background, where its clean-up may take a while: psycopg, cancelled,
asks the server to cancel the statement and waits up to 10 s for it. Its later messages go
nowhere. A response that has started (a long page being streamed) is let finish.

Nothing is half-written: each request writes in one transaction, which a cancelled task never
commits. Only a cancel that lands during ``COMMIT`` leaves the outcome unknown (committed or
not); that is what idempotency keys are for, and the SDK sends one with every submit, so
retrying the 503 never makes two jobs. WebSockets are not HTTP requests here: the stream has
its own liveness rules.
"""

from __future__ import annotations

import asyncio
import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import retry_after
from api.errors import error

log = logging.getLogger(__name__)

#: Requests cancelled at their deadline, until their clean-up ends (a reference keeps them).
_cleaning: set[asyncio.Task[None]] = set()


class Deadline:
    """ASGI middleware: the outermost, so the fast path and the body limit are inside it."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = False
        answered = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the deadline answered for it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded))
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        if task in done or started:
            await task
            return
        answered = True
        task.cancel()
        _cleaning.add(task)
        task.add_done_callback(_cleaned)
        log.warning(
            "request not answered within its deadline",
            extra={
                "action": "api.deadline",
                "path": scope.get("path"),
                "method": scope.get("method"),
                "seconds": self.seconds,
            },
        )
        ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        if ctx is not None:
            ctx.metrics.refused.labels("deadline").inc()
        response = error(
            503,
            f"the request was not answered within {self.seconds:g}s "
            "(the database may be unreachable); retry shortly",
        )
        seconds = retry_after.spread(retry_after.OVERLOADED_SECONDS, random.random())
        response.headers["Retry-After"] = str(seconds)
        await response(scope, receive, send)


def _cleaned(task: asyncio.Task[None]) -> None:
    _cleaning.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.info(
            "a request cancelled at its deadline ended with an error",
            exc_info=task.exception(),
            extra={"action": "api.deadline_cleanup"},
        )
