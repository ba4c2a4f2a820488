"""Outgoing messages: put from any thread, gathered, published in ordered batches, never dropped.

:class:`LoopHandoff` brings a call from whichever thread makes it onto one event loop's thread.
:class:`Outbox` uses it so ``put`` works from job threads as well as from the loop, then publishes
what it holds through a given async function, in put order, retrying with a growing pause until
that function takes it all. It knows nothing about brokers or routing keys: the publish function
shapes a batch into broker messages, so a worker's lanes and a scheduler's publisher can share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")

#: Publishes one batch. Returns ``None`` (or nothing left) once all of it is taken, or the items
#: still to publish, which are retried before anything newer; raising one of the outbox's
#: ``retry_on`` exceptions retries the whole batch.
Publish = Callable[[list[T]], Awaitable[Sequence[T] | None]]

#: The first pause after a failed publish; each failure in a row doubles it, up to the second.
FIRST_DELAY, MAX_DELAY = 0.1, 5.0
#: Items per publish.
BATCH = 200


class LoopHandoff:
    """Runs calls on one event loop's thread whichever thread makes them: at once when made
    there (or before :meth:`bind`), else through ``call_soon_threadsafe``. A call made after the
    loop closed is dropped: the process is ending and nobody is left to receive it."""

    __slots__ = ("_loop", "_thread")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self) -> None:
        """Deliver on the running loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def call(self, func: Callable[[A], None], arg: A) -> None:
        """``func(arg)`` on the loop's thread: now if this is that thread, else soon."""
        if self._loop is None or threading.get_ident() == self._thread:
            func(arg)
        else:
            self.soon(func, arg)

    def soon(self, func: Callable[[A], None], arg: A) -> None:
        """``func(arg)`` on the loop, after what the loop already has queued (even when called
        on its own thread), so it follows whatever the current callback is about to do."""
        assert self._loop is not None, "LoopHandoff.soon before bind"
        try:
            self._loop.call_soon_threadsafe(func, arg)
        except RuntimeError:  # the loop is closed
            logger.debug("call dropped after the loop closed", extra={"action": "handoff_dropped"})

    def resolve(self, future: asyncio.Future[A], value: A) -> None:
        """Give the loop's ``future`` its result (unless it has one), from any thread."""
        self.call(_resolve, (future, value))


def _resolve(pair: tuple[asyncio.Future[A], A]) -> None:
    future, value = pair
    if not future.done():
        future.set_result(value)


class Outbox(Generic[T]):
    """Gathers items and publishes them in batches of up to ``batch``, in put order.

    ``linger`` > 0: after the first item, wait that long for more before publishing, less once
    a full batch is held (a flood is not slowed) or after :meth:`flush` (a stopping process
    leaves nothing behind). A publish that raises one of ``retry_on`` is retried after 0.1 s,
    doubling to 5 s; any other exception ends the outbox. ``name`` prefixes the log action
    (``{name}.publish_retry``); ``sleep`` is the pause (tests inject one).
    """

    def __init__(
        self,
        publish: Publish[T],
        *,
        linger: float = 0.0,
        batch: int = BATCH,
        retry_on: tuple[type[Exception], ...] = (Exception,),
        name: str = "outbox",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        maxsize: int = 0,
    ) -> None:
        self._publish = publish
        self._linger = linger
        self._batch = batch
        self._retry_on = retry_on
        self._name = name
        self._sleep = sleep
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self._full = asyncio.Event()  # a full batch is held, or flush(): the wait ends
        self._flushing = False
        self._gathering = False  # an item is taken and the linger runs
        self._handoff = LoopHandoff()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Publish from the running loop; puts from other threads are handed to it from now."""
        self._handoff.bind()
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-outbox")

    async def run(self) -> None:
        """Publish until cancelled, as the caller's own task (its errors reach the caller)."""
        self._handoff.bind()
        await self._run()

    async def put_wait(self, item: T) -> None:
        """Queue ``item`` from the loop's thread, waiting while the outbox holds ``maxsize``
        items (back-pressure on a producer that must not run ahead of the broker)."""
        await self._queue.put(item)
        if self._queue.qsize() >= self._batch - 1:
            self._full.set()

    async def put_all(self, items: list[T]) -> None:
        """:meth:`put_wait` for many items, from the loop's thread, waiting only when full."""
        queue = self._queue
        for item in items:
            if queue.full():
                await queue.put(item)
            else:
                queue.put_nowait(item)
        if queue.qsize() >= self._batch - 1:
            self._full.set()

    def put_all_nowait(self, items: list[T], *, at_once: bool = False) -> None:
        """:meth:`put` for many items, from the loop's thread (an unbounded outbox). With
        ``at_once``, they go out now with everything held before them (:meth:`hurry`)."""
        queue = self._queue
        for item in items:
            queue.put_nowait(item)
        if at_once or queue.qsize() >= self._batch - 1:
            self._full.set()

    def hurry(self) -> None:
        """From the loop's thread: what is held goes out now, without waiting for the rest of
        the linger; later items linger as before (unlike :meth:`flush`)."""
        if self._gathering or not self._queue.empty():
            self._full.set()

    def held(self) -> int:
        return self._queue.qsize()

    def put(self, item: T) -> None:
        """Queue ``item``; from any thread, never blocks."""
        self._handoff.call(self._put, item)

    def flush(self) -> None:
        """Linger no more, now and from now on: what is held goes out at once."""
        self._flushing = True
        self._full.set()

    async def join(self) -> None:
        """Until every item put so far is published."""
        await self._queue.join()

    def cancel(self) -> None:
        """Stop publishing; what is still held is dropped (:meth:`join` first to keep it)."""
        if self._task is not None:
            self._task.cancel()

    def _put(self, item: T) -> None:
        queue = self._queue
        queue.put_nowait(item)
        if queue.qsize() >= self._batch - 1:  # with the one its publisher holds: a full batch
            self._full.set()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            if self._linger > 0:
                await self._gather()
            while not queue.empty() and len(batch) < self._batch:
                batch.append(queue.get_nowait())
            try:
                await self._send(batch)
            finally:  # taken, or dropped by a cancel: join() must not wait for it forever
                for _ in batch:
                    queue.task_done()

    async def _gather(self) -> None:
        """Wait up to ``linger`` for more items, unless a full batch is held or flushing."""
        if self._queue.qsize() < self._batch - 1 and not self._flushing:
            self._gathering = True
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            finally:
                self._gathering = False
        self._full.clear()

    async def _send(self, batch: list[T]) -> None:
        """Until the publish function has taken all of ``batch``; order is kept."""
        delay = FIRST_DELAY
        while True:
            try:
                left = await self._publish(batch)
            except self._retry_on:
                logger.warning(
                    "publish failed; retrying", extra={"action": f"{self._name}.publish_retry"}
                )
            else:
                if not left:
                    return
                batch = list(left)
            await self._sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
