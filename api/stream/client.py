"""One connected stream client: its filter, its bounded buffer, what it dropped, and when it
is closed for being too slow; with the close codes of the stream and the order of a job's
statuses (which the client's snapshot fence and the hub's duplicate check both follow)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Mapping

import orjson

from api.stream.filters import StreamFilter
from models.enums import Order, status_order
from models.messages import JobStatusEvent, StreamEvent
from smartq.errors import StreamRequestError

#: Close codes of the stream (the reason says more).
CLOSE_BAD_FILTER = 4400
#: No key, an invalid one, or one revoked or expired while the stream was open.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408
CLOSE_GOING_AWAY = 1001
#: RFC 6455 "try again later": the key could not be checked (the database is away).
CLOSE_TRY_AGAIN = 1013

_CLOSE_CODES = {
    StreamRequestError.INVALID: CLOSE_BAD_FILTER,
    StreamRequestError.NOT_FOUND: CLOSE_NOT_FOUND,
    StreamRequestError.FORBIDDEN: CLOSE_FORBIDDEN,
}

__all__ = ["Order", "status_order"]  # re-exported: they moved to models.enums


_Item = tuple[str, StreamEvent | None]


class StreamClient:
    """One connected client: its filter and its bounded buffer. The socket side calls
    :meth:`next` and sends; the hub calls :meth:`offer` and never waits.

    ``filter`` is replaced, never changed, and only through :meth:`StreamHub.refilter
    <api.stream.hub.StreamHub.refilter>`, which re-indexes the client."""

    def __init__(
        self,
        capacity: int,
        stall_seconds: float,
        start: StreamFilter | None = None,
        key_id: str | None = None,
    ) -> None:
        self.filter = start or StreamFilter()
        #: The key the client connected with (None with auth off), watched for revocation.
        self.key_id = key_id
        self.capacity = capacity
        self.stall_seconds = stall_seconds
        self.buffer: deque[_Item] = deque()
        #: Replies and snapshots: sent before buffered events, bounded by the filter limits.
        self.control: deque[str] = deque()
        self.missed = 0
        self.missed_total = 0
        #: The most events the buffer ever held (at most ``capacity`` + 1 notice).
        self.high_water = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._wake = asyncio.Event()
        self._full_since: float | None = None
        #: Jobs snapshotted from the database: buffered events not newer are skipped.
        self._fence: dict[uuid.UUID, Order] = {}

    def offer(self, text: str, event: StreamEvent) -> None:
        if self.close_code is not None:
            return
        if len(self.buffer) >= self.capacity:
            self.missed += 1
            self.missed_total += 1
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since > self.stall_seconds:
                self.close(CLOSE_TOO_SLOW, f"too slow: {self.missed_total} events missed")
            return
        if self.missed:
            notice = orjson.dumps({"type": "stream.dropped", "missed": self.missed}).decode()
            self.buffer.append((notice, None))
            self.missed = 0
        self._full_since = None
        self.buffer.append((text, event))
        if len(self.buffer) > self.high_water:
            self.high_water = len(self.buffer)
        self._wake.set()

    def send_first(self, text: str) -> None:
        self.control.append(text)
        self._wake.set()

    def snapshot(self, event: JobStatusEvent, batch_of: Mapping[uuid.UUID, uuid.UUID]) -> None:
        """Send a job's current status from the database, ahead of buffered events; buffered
        events of that job that are not newer are then skipped (no step backwards)."""
        self._fence[event.job_id] = status_order(event.status, event.attempt)
        if self.filter.matches(event, batch_of):
            self.send_first(event.model_dump_json())

    def _stale(self, event: StreamEvent | None) -> bool:
        if not isinstance(event, JobStatusEvent) or event.job_id not in self._fence:
            return False
        if status_order(event.status, event.attempt) <= self._fence[event.job_id]:
            return True
        del self._fence[event.job_id]
        return False

    async def next(self) -> str:
        """The next text to send, waiting for one."""
        while True:
            text = self._take()
            if text is not None:
                return text
            self._wake.clear()
            await self._wake.wait()

    async def next_many(self, limit: int) -> list[str]:
        """The texts waiting, in order, at most ``limit``; waits for the first. (A client of
        batched frames gets them in one frame.)"""
        texts = [await self.next()]
        while len(texts) < limit:
            text = self._take()
            if text is None:
                break
            texts.append(text)
        return texts

    def _take(self) -> str | None:
        """The next text to send, if one waits: replies and snapshots first."""
        if self.control:
            return self.control.popleft()
        while self.buffer:
            text, event = self.buffer.popleft()
            if not self._stale(event):
                return text
        return None

    def close(self, code: int, reason: str) -> None:
        """Ask the socket side to close with ``code``; stop buffering."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.buffer.clear()
            self.closed.set()

    def reject(self, error: StreamRequestError) -> None:
        """Close for a request the stream cannot serve: 4400 for a bad filter or message, 4404
        for an unknown job or batch."""
        self.close(_CLOSE_CODES.get(error.kind, CLOSE_BAD_FILTER), str(error))
