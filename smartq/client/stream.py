"""``WS /jobs/stream`` as an iterator that reconnects: :class:`Stream` on websockets' sync
client, :class:`AsyncStream` on its asyncio client. What to watch and what was delivered is
:class:`~smartq.client.events.Subscription`'s, when to reconnect is :class:`_Line`'s; the two
classes only connect, send and receive.

A stream connects on its first read, presenting the key in ``Authorization: Bearer`` on the
handshake. When the connection drops (the API restarts, the network fails, the server says
1013 "try again" or 4408 "too slow"), the next read reconnects with backoff and subscribes to
the same jobs and batches; the server's snapshots then bring each job's current status, and the
subscription drops those already delivered. A close that reconnecting cannot mend (a bad filter,
a refused key, an unknown job) raises the matching :class:`~smartq.errors.APIError`;
connections that keep failing raise :class:`~smartq.errors.Unreachable`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from smartq.client._core import stream_url
from smartq.client.answers import RETRY_STATUSES, STREAM_RECONNECT, RetryPolicy, error_of
from smartq.client.events import StreamEvent, Subscription, close_error
from smartq.errors import Unreachable

#: Messages the socket holds unread before it stops reading (the server buffers 1,000 more).
_QUEUE = 4_096
_OPEN_TIMEOUT = 10.0
#: What a failed connection attempt may raise (a refused handshake is handled apart).
_CONNECT_ERRORS = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class _Line:
    """What both streams share: the subscription, the events read ahead, and the count of
    connections that failed in a row (reset when the server confirms one)."""

    def __init__(
        self, ws_url: str, headers: dict[str, str], subscription: Subscription, policy: RetryPolicy
    ) -> None:
        self.subscription = subscription
        self._url = ws_url
        self._headers = headers
        self._policy = policy
        self._failures = 0
        self._closed = False
        self._early: deque[StreamEvent] = deque()

    def _target(self, deadline: float | None) -> tuple[str, bytes | None, float]:
        """The URL to connect to, the command to send once connected, the handshake's time."""
        if self._closed:
            raise RuntimeError("the stream is closed")
        params, command = self.subscription.connect_query()
        timeout = min(_OPEN_TIMEOUT, _left(deadline) or _OPEN_TIMEOUT)
        return stream_url(self._url, params), command, timeout

    def _pause(self, cause: BaseException, deadline: float | None) -> float:
        """How long to wait before connecting again; raises once there is no point."""
        if isinstance(cause, InvalidStatus):
            response = cause.response
            if response.status_code not in RETRY_STATUSES:
                body = bytes(response.body or b"")
                raise error_of(response.status_code, body, None) from None
        if isinstance(cause, ConnectionClosed) and cause.rcvd is not None:
            error = close_error(cause.rcvd.code, cause.rcvd.reason)
            if error is not None:
                raise error from None
        self._failures += 1
        wait = self._policy.after(self._failures, None)
        if wait is None:
            raise Unreachable(f"the stream failed {self._failures} times in a row") from cause
        left = _left(deadline)
        if left is not None and wait >= left:
            raise TimeoutError("the stream's deadline passed while reconnecting") from cause
        return wait if self._failures > 1 else 0.0  # the first reconnection at once

    def _took(self, text: str | bytes) -> tuple[StreamEvent | None, bool]:
        """The event a message carries, and whether to reconnect now (the server dropped
        events for this client: a new connection's snapshots catch up)."""
        event = self.subscription.feed(text)
        if self.subscription.confirmed:
            self._failures = 0
        return event, self.subscription.resync


class Stream(_Line):
    """A sync iterator of stream events (see the module docstring); ``next(timeout)`` raises
    :class:`TimeoutError` when nothing comes in time. Use it in a ``with`` block, or close it."""

    def __init__(
        self,
        ws_url: str,
        headers: dict[str, str],
        subscription: Subscription,
        policy: RetryPolicy = STREAM_RECONNECT,
    ) -> None:
        super().__init__(ws_url, headers, subscription, policy)
        self._ws: ClientConnection | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        if self._closed:
            raise StopIteration
        return self.next()

    def next(self, timeout: float | None = None) -> StreamEvent:
        if self._early:
            return self._early.popleft()
        deadline = _deadline(timeout)
        while True:
            event = self._read(deadline)
            if event is not None:
                return event

    def open(self, timeout: float | None = _OPEN_TIMEOUT) -> None:
        """Connect now and wait until the server confirms the subscription; events that come
        before are kept for the next reads."""
        deadline = _deadline(timeout)
        while self._ws is None or not self.subscription.confirmed:
            event = self._read(deadline)
            if event is not None:
                self._early.append(event)

    def _read(self, deadline: float | None) -> StreamEvent | None:
        """One message's event, or None (a reply, a duplicate, a lost connection)."""
        ws = self._ws or self._connect(deadline)
        try:
            text = ws.recv(timeout=_left(deadline))
        except ConnectionClosed as exc:
            self._ws = None
            time.sleep(self._pause(exc, deadline))
            return None
        event, resync = self._took(text)
        if resync:
            self._drop()
        return event

    def subscribe(self, job_ids: Iterable[str] = (), batch_ids: Iterable[str] = ()) -> None:
        """Watch more jobs or batches (their snapshots follow), now and after reconnecting."""
        command = self.subscription.add(job_ids, batch_ids)
        if self._ws is not None:
            try:
                self._ws.send(command.decode())
            except ConnectionClosed:
                self._drop()  # the reconnection subscribes to them

    def _connect(self, deadline: float | None) -> ClientConnection:
        while True:
            url, command, timeout = self._target(deadline)
            try:
                # Entered as a context manager (left in _drop): websockets 17.1+ warns about a
                # connection used directly, and older ones have no ``legacy=`` to say it is.
                ws = connect(
                    url,
                    additional_headers=self._headers,
                    open_timeout=timeout,
                    compression=None,
                    max_queue=_QUEUE,
                ).__enter__()
                if command is not None:
                    ws.send(command.decode())
            except _CONNECT_ERRORS as exc:
                time.sleep(self._pause(exc, deadline))
                continue
            self._ws = ws
            return ws

    def _drop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(_Line):
    """:class:`Stream` for asyncio: ``async for event in stream``; ``await next(timeout)``."""

    def __init__(
        self,
        ws_url: str,
        headers: dict[str, str],
        subscription: Subscription,
        policy: RetryPolicy = STREAM_RECONNECT,
    ) -> None:
        super().__init__(ws_url, headers, subscription, policy)
        self._ws: AsyncConnection | None = None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise StopAsyncIteration
        return await self.next()

    async def next(self, timeout: float | None = None) -> StreamEvent:
        if self._early:
            return self._early.popleft()
        deadline = _deadline(timeout)
        while True:
            event = await self._read(deadline)
            if event is not None:
                return event

    async def open(self, timeout: float | None = _OPEN_TIMEOUT) -> None:
        deadline = _deadline(timeout)
        while self._ws is None or not self.subscription.confirmed:
            event = await self._read(deadline)
            if event is not None:
                self._early.append(event)

    async def _read(self, deadline: float | None) -> StreamEvent | None:
        ws = self._ws or await self._connect(deadline)
        try:
            async with asyncio.timeout(_left(deadline)):
                text = await ws.recv()
        except ConnectionClosed as exc:
            self._ws = None
            await asyncio.sleep(self._pause(exc, deadline))
            return None
        event, resync = self._took(text)
        if resync:
            await self._drop()
        return event

    async def subscribe(self, job_ids: Iterable[str] = (), batch_ids: Iterable[str] = ()) -> None:
        command = self.subscription.add(job_ids, batch_ids)
        if self._ws is not None:
            try:
                await self._ws.send(command.decode())
            except ConnectionClosed:
                await self._drop()

    async def _connect(self, deadline: float | None) -> AsyncConnection:
        while True:
            url, command, timeout = self._target(deadline)
            try:
                ws = await aconnect(
                    url,
                    additional_headers=self._headers,
                    open_timeout=timeout,
                    compression=None,
                    max_queue=_QUEUE,
                )
                if command is not None:
                    await ws.send(command.decode())
            except _CONNECT_ERRORS as exc:
                await asyncio.sleep(self._pause(exc, deadline))
                continue
            self._ws = ws
            return ws

    async def _drop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
