"""The stream's events as small typed values, and :class:`Subscription`: what one stream
watches and what it already delivered, with no I/O, shared by the sync and async streams.

A reconnecting stream must lose no status and show none twice. On every (re)connection the
server sends the current status of each watched job (``"snapshot": true``) before live events;
:meth:`Subscription.feed` passes a job's status on only when it is newer, in the order statuses
can happen (:func:`status_order`), so a snapshot of what was already seen is dropped and one
that is newer fills the gap the disconnection left.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from models.enums import FINAL_STATUSES, JobStatus, Order, status_order
from smartq.client.answers import api_error
from smartq.errors import APIError

__all__ = ["Order", "status_order"]  # the server's own order, shared


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A job's status changed (``snapshot``: read from the database on subscribing)."""

    job_id: uuid.UUID
    status: JobStatus
    attempt: int
    batch_id: uuid.UUID | None
    error: str | None
    reason: str | None
    worker_id: str | None
    snapshot: bool
    raw: dict[str, Any]

    type = "job.status"

    @classmethod
    def of(cls, raw: dict[str, Any]) -> StatusEvent:
        return cls(
            job_id=uuid.UUID(raw["job_id"]),
            status=JobStatus(raw["status"]),
            attempt=int(raw.get("attempt") or 0),
            batch_id=_uuid(raw.get("batch_id")),
            error=raw.get("error"),
            reason=raw.get("reason"),
            worker_id=raw.get("worker_id"),
            snapshot=bool(raw.get("snapshot")),
            raw=raw,
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a job logged, from the stream or from ``GET /jobs/{id}/logs``."""

    job_id: uuid.UUID
    attempt: int
    seq: int
    level: str
    message: str
    ts: datetime

    type = "job.log"

    @classmethod
    def of(cls, raw: dict[str, Any], job_id: uuid.UUID | None = None) -> LogLine:
        return cls(
            job_id=job_id or uuid.UUID(raw["job_id"]),
            attempt=int(raw["attempt"]),
            seq=int(raw["seq"]),
            level=str(raw["level"]),
            message=str(raw["message"]),
            ts=datetime.fromisoformat(raw["ts"]),
        )

    @property
    def position(self) -> tuple[int, int]:
        return (self.attempt, self.seq)


@dataclass(frozen=True, slots=True)
class Event:
    """Any other event (``monitoring.*``, ``stream.dropped``), as the server sent it."""

    type: str
    raw: dict[str, Any]


StreamEvent = StatusEvent | LogLine | Event

#: Close codes after which reconnecting cannot help: the request itself is wrong.
_REFUSALS = {4400: 400, 4401: 401, 4403: 403, 4404: 404}
#: At most this many ids go in the URL; more are sent as a command once connected.
_URL_IDS = 50
#: Jobs whose last status a stream remembers (it forgets the oldest first).
MEMORY = 100_000


def close_error(code: int | None, reason: str) -> APIError | None:
    """The error a close code means, or None when reconnecting may help (going away, try
    again, too slow, a dropped connection)."""
    if code in _REFUSALS:
        status = _REFUSALS[code]
        return api_error(status, reason or f"stream closed with {code}")
    if code is not None and 4000 <= code < 5000 and code != 4408:
        return APIError(code - 4000, reason or f"stream closed with {code}")
    return None


class Subscription:
    """What a stream watches (jobs, batches, event types, statuses), the query that asks for
    it on connecting, and each watched job's last status delivered."""

    def __init__(
        self,
        job_ids: Iterable[str] = (),
        batch_ids: Iterable[str] = (),
        types: Iterable[str] = (),
        statuses: Iterable[str] = (),
    ) -> None:
        self.job_ids = list(dict.fromkeys(job_ids))
        self.batch_ids = list(dict.fromkeys(batch_ids))
        self.types = list(types)
        self.statuses = list(statuses)
        #: The server dropped events (this client read too slowly): reconnect to catch up.
        self.resync = False
        #: The server answered this connection's subscription.
        self.confirmed = False
        self._last: OrderedDict[uuid.UUID, Order] = OrderedDict()

    def connect_query(self) -> tuple[list[tuple[str, str]], bytes | None]:
        """The query to connect with and, when too many jobs are watched for a URL, the
        command that subscribes the rest once connected."""
        self.resync = self.confirmed = False
        params = [("batch_id", b) for b in self.batch_ids]
        params += [("job_id", j) for j in self.job_ids[:_URL_IDS]]
        params += [("type", t) for t in self.types]
        params += [("status", s) for s in self.statuses]
        rest = self.job_ids[_URL_IDS:]
        command = orjson.dumps({"action": "subscribe", "job_ids": rest}) if rest else None
        return params, command

    def add(self, job_ids: Iterable[str] = (), batch_ids: Iterable[str] = ()) -> bytes:
        """Watch more jobs and batches: the command that tells the server."""
        jobs = [j for j in job_ids if j not in self.job_ids]
        batches = [b for b in batch_ids if b not in self.batch_ids]
        self.job_ids += jobs
        self.batch_ids += batches
        return orjson.dumps({"action": "subscribe", "job_ids": jobs, "batch_ids": batches})

    def feed(self, text: str | bytes) -> StreamEvent | None:
        """The event a message from the server carries, or None: a reply to a command, or a
        status this stream already delivered (or one older than it)."""
        raw = orjson.loads(text)
        kind = raw.get("type")
        if kind == "job.status":
            event = StatusEvent.of(raw)
            return event if self._newer(event) else None
        if kind == "job.log":
            return LogLine.of(raw)
        if kind == "stream.subscribed":
            self.confirmed = True
            return None
        if kind == "stream.pong":
            return None
        if kind == "stream.dropped" and (self.job_ids or self.batch_ids):
            self.resync = True
        return Event(str(kind), raw)

    def _newer(self, event: StatusEvent) -> bool:
        order = status_order(event.status, event.attempt)
        last = self._last.get(event.job_id)
        if last is not None and order <= last:
            return False
        self._last[event.job_id] = order
        self._last.move_to_end(event.job_id)
        if len(self._last) > MEMORY:
            self._last.popitem(last=False)
        return True
