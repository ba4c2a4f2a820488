"""Work done as a run of short transactions (retention's deletes: the logger's old lines, the
sweep's old jobs, a purge): each step commits on its own, so no lock is held for long and
other writers interleave between steps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

#: Opens one transaction and yields its connection (``engine.begin``, or :func:`on`).
Begin = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
#: One step, inside its transaction: whether another should follow.
Step = Callable[[AsyncConnection], Awaitable[bool]]


def on(conn: AsyncConnection) -> Begin:
    """Transactions on a connection the caller holds (a request's, on SQLite the only one)."""

    @contextlib.asynccontextmanager
    async def begin() -> AsyncIterator[AsyncConnection]:
        async with conn.begin():
            yield conn

    return begin


async def run_steps(begin: Begin, step: Step, max_steps: int | None = None) -> int:
    """Run ``step``, each time in a transaction of its own, until it says it is done (or
    ``max_steps`` ran); the event loop gets a turn between two. Returns how many ran."""
    ran = 0
    while max_steps is None or ran < max_steps:
        async with begin() as conn:
            more = await step(conn)
        ran += 1
        if not more:
            break
        await asyncio.sleep(0)
    return ran
