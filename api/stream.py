"""The live event hub behind ``WS /jobs/stream``: one broker queue per API process, fanned out
to every connected client through a bounded buffer each.

Each API process consumes one exclusive, auto-deleted stream queue (``job.status.#``,
``job.logs.#``, ``job.monitoring.#``; see :func:`smartq.topology.stream_queue`), so several
API processes each stream everything. For every event the hub

1. drops a status event that is not newer than the last one it saw for that job (a redelivered
   duplicate, or a scheduler event overtaken by the API's own cancellation): per job, statuses
   only move forward in :func:`status_order`;
2. feeds the metrics (:mod:`api.metrics`) and keeps the latest monitoring snapshots;
3. offers the raw JSON text to each client whose filter matches.

A client's buffer holds at most ``capacity`` events. When it is full, new events for that
client are dropped and counted; the next event that fits is preceded by
``{"type": "stream.dropped", "missed": n}``. A client that keeps dropping for longer than
``stall_seconds`` is closed with :data:`CLOSE_TOO_SLOW`. Nothing here ever waits on a client,
so a slow one cannot hold up the others, and its memory is bounded by its buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from api.metrics import Metrics
from models.enums import FINAL_STATUSES, JobStatus
from models.messages import (
    BATCH_TYPE,
    JobStatusEvent,
    LoggerMonitor,
    LogLine,
    QueueMonitor,
    ResourceMonitor,
    StreamEvent,
    stream_event,
    unpack,
)
from smartq import topology
from smartq.broker import Broker, Consumer, IncomingMessage

log = logging.getLogger(__name__)

#: Close codes of the stream (the reason says more).
CLOSE_BAD_FILTER = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408
CLOSE_GOING_AWAY = 1001

JOB_TYPES = frozenset({"job.status", "job.log"})
MONITORING_TYPES = frozenset({"monitoring.queue", "monitoring.resource", "monitoring.logger"})
EVENT_TYPES = JOB_TYPES | MONITORING_TYPES
#: Accepted in ``types`` besides the event types: every monitoring event.
TYPE_ALIASES = {"monitoring": MONITORING_TYPES}

MAX_JOB_IDS = 10_000
MAX_BATCH_IDS = 100
#: Jobs one client may watch, explicit ones plus those of its batches.
MAX_WATCHED_JOBS = 100_000
#: Jobs whose last status (and batch) the hub remembers, most recent first.
HUB_MEMORY = 65_536

EventType = Literal[
    "job.status",
    "job.log",
    "monitoring",
    "monitoring.queue",
    "monitoring.resource",
    "monitoring.logger",
]
Order = tuple[int, int, int]

_RANK = {
    JobStatus.PENDING: 0,
    JobStatus.BLOCKED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.RETRYING: 3,
    JobStatus.READY: 4,
}


def status_order(status: JobStatus, attempt: int) -> Order:
    """A job's statuses in the order they can happen: within attempt n, running → retrying →
    ready (then attempt n+1 runs); a final status comes after everything."""
    if status in FINAL_STATUSES:
        return (1, 0, 0)
    return (0, attempt, _RANK[status])


class FilterError(Exception):
    """A filter the stream cannot take; closes the socket with ``code`` and the message."""

    def __init__(self, message: str, code: int = CLOSE_BAD_FILTER) -> None:
        super().__init__(message)
        self.code = code


class Command(BaseModel):
    """A message a client sends on the socket (the query parameters are a ``set``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["subscribe", "unsubscribe", "set", "ping"]
    job_ids: list[uuid.UUID] | None = None
    batch_ids: list[uuid.UUID] | None = None
    statuses: list[JobStatus] | None = None
    types: list[EventType] | None = None


_QUERY_FIELDS = {
    "job_id": "job_ids",
    "batch_id": "batch_ids",
    "status": "statuses",
    "type": "types",
}


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def command_from_query(items: Iterable[tuple[str, str]]) -> Command:
    """``?job_id=…&job_id=…&batch_id=…&status=…&type=…`` as a ``set`` command."""
    fields: dict[str, list[str]] = {}
    for key, value in items:
        name = _QUERY_FIELDS.get(key)
        if name is None:
            known = ", ".join(_QUERY_FIELDS)
            raise FilterError(f"unknown query parameter {key!r}; use {known}")
        fields.setdefault(name, []).append(value)
    try:
        return Command.model_validate({"action": "set", **fields})
    except ValidationError as exc:
        raise FilterError(_first_error(exc)) from None


def parse_command(text: str | bytes) -> Command:
    try:
        return Command.model_validate_json(text)
    except ValidationError as exc:
        raise FilterError(_first_error(exc)) from None


@dataclass
class StreamFilter:
    """What one client wants. No job or batch named: every job. ``types`` empty: every type
    when no job or batch is named, else ``job.status`` and ``job.log``. ``statuses`` applies to
    status events only."""

    job_ids: set[uuid.UUID] = field(default_factory=set)
    batch_ids: set[uuid.UUID] = field(default_factory=set)
    statuses: frozenset[JobStatus] = frozenset()
    types: frozenset[str] = frozenset()
    #: The jobs of each watched batch (a batch's jobs are fixed when it is created).
    batch_jobs: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)

    @property
    def all_jobs(self) -> bool:
        return not self.job_ids and not self.batch_ids

    def effective_types(self) -> frozenset[str]:
        if self.types:
            return self.types
        return EVENT_TYPES if self.all_jobs else JOB_TYPES

    def watches(self, job_id: uuid.UUID, batch_id: uuid.UUID | None) -> bool:
        if self.all_jobs or job_id in self.job_ids or batch_id in self.batch_ids:
            return True
        return any(job_id in jobs for jobs in self.batch_jobs.values())

    def matches(self, event: StreamEvent, batch_of: dict[uuid.UUID, uuid.UUID]) -> bool:
        if event.type not in self.effective_types():
            return False
        if isinstance(event, JobStatusEvent):
            if self.statuses and event.status not in self.statuses:
                return False
            return self.watches(event.job_id, event.batch_id)
        if isinstance(event, LogLine):
            return self.watches(event.job_id, batch_of.get(event.job_id))
        return True

    def apply(self, cmd: Command) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Change the filter; returns the jobs and batches newly watched (to snapshot)."""
        jobs, batches = cmd.job_ids or [], cmd.batch_ids or []
        if cmd.action == "unsubscribe":
            if cmd.statuses is not None or cmd.types is not None:
                raise FilterError("unsubscribe takes job_ids and batch_ids only")
            self.job_ids.difference_update(jobs)
            self.batch_ids.difference_update(batches)
            for b in batches:
                self.batch_jobs.pop(b, None)
            return [], []
        if cmd.action == "set":
            self.job_ids, self.batch_ids, self.batch_jobs = set(), set(), {}
            self.statuses, self.types = frozenset(), frozenset()
        new_jobs = list(dict.fromkeys(j for j in jobs if j not in self.job_ids))
        new_batches = list(dict.fromkeys(b for b in batches if b not in self.batch_ids))
        self.job_ids.update(new_jobs)
        self.batch_ids.update(new_batches)
        if cmd.statuses is not None:
            self.statuses = frozenset(cmd.statuses)
        if cmd.types is not None:
            types: set[str] = set()
            for t in cmd.types:
                types |= TYPE_ALIASES.get(t, {t})
            self.types = frozenset(types)
        if len(self.job_ids) > MAX_JOB_IDS or len(self.batch_ids) > MAX_BATCH_IDS:
            raise FilterError(f"at most {MAX_JOB_IDS} job ids and {MAX_BATCH_IDS} batch ids")
        return new_jobs, new_batches

    def add_batch_jobs(self, batch_id: uuid.UUID, job_ids: Iterable[uuid.UUID]) -> None:
        self.batch_jobs[batch_id] = set(job_ids)
        if sum(len(j) for j in self.batch_jobs.values()) > MAX_WATCHED_JOBS:
            raise FilterError(f"the batches watched hold more than {MAX_WATCHED_JOBS} jobs")

    def describe(self) -> dict[str, list[str]]:
        return {
            "job_ids": sorted(str(j) for j in self.job_ids),
            "batch_ids": sorted(str(b) for b in self.batch_ids),
            "statuses": sorted(s.value for s in self.statuses),
            "types": sorted(self.types),
        }


_Item = tuple[str, StreamEvent | None]


class StreamClient:
    """One connected client: its filter and its bounded buffer. The socket side calls
    :meth:`next` and sends; the hub calls :meth:`offer` and never waits."""

    def __init__(self, capacity: int, stall_seconds: float) -> None:
        self.filter = StreamFilter()
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
        self.high_water = max(self.high_water, len(self.buffer))
        self._wake.set()

    def send_first(self, text: str) -> None:
        self.control.append(text)
        self._wake.set()

    def snapshot(self, event: JobStatusEvent, batch_of: dict[uuid.UUID, uuid.UUID]) -> None:
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
            if self.control:
                return self.control.popleft()
            if self.buffer:
                text, event = self.buffer.popleft()
                if not self._stale(event):
                    return text
                continue
            self._wake.clear()
            await self._wake.wait()

    def close(self, code: int, reason: str) -> None:
        """Ask the socket side to close with ``code``; stop buffering."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.buffer.clear()
            self.closed.set()


def default_process_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class StreamHub:
    """Consumes this process's stream queue and fans events out (see the module docstring)."""

    def __init__(
        self,
        broker: Broker,
        metrics: Metrics,
        *,
        capacity: int = 1_000,
        stall_seconds: float = 10.0,
        process_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.capacity = capacity
        self.stall_seconds = stall_seconds
        self.process_id = process_id or default_process_id()
        self.clients: set[StreamClient] = set()
        #: job → batch, learnt from status events, to match log lines to batch filters.
        self.batch_of: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()
        self._last: OrderedDict[uuid.UUID, Order] = OrderedDict()
        self._consumer: Consumer | None = None
        self.events = 0

    async def start(self) -> None:
        queue = topology.stream_queue(self.process_id, self.broker.exchange)
        self._consumer = await self.broker.consume(queue, self._on_message, prefetch=1_000)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        for client in list(self.clients):
            client.close(CLOSE_GOING_AWAY, "server shutting down")

    def connect(self) -> StreamClient:
        client = StreamClient(self.capacity, self.stall_seconds)
        self.clients.add(client)
        return client

    def disconnect(self, client: StreamClient) -> None:
        self.clients.discard(client)

    async def _on_message(self, message: IncomingMessage) -> None:
        self.dispatch(message.body)  # synchronous: events reach clients in delivery order
        await message.ack()

    def dispatch(self, body: bytes) -> None:
        """Handle one message from the broker: an event, or a batch of them (in order)."""
        try:
            items = unpack(body)
        except ValueError:
            log.warning("dropping a malformed stream event", extra={"action": "stream.malformed"})
            return
        if len(items) == 1 and isinstance(items[0], dict) and items[0].get("type") != BATCH_TYPE:
            self._dispatch_one(items[0], body.decode())
            return
        for item in items:
            self._dispatch_one(item, orjson.dumps(item).decode())

    def _dispatch_one(self, item: Any, text: str) -> None:
        try:
            event = stream_event.validate_python(item)
        except ValidationError:
            log.warning("dropping a malformed stream event", extra={"action": "stream.malformed"})
            return
        if isinstance(event, JobStatusEvent):
            if not self._forward(event):
                return
            self.metrics.job_status(event)
        elif isinstance(event, LogLine):
            self.metrics.log_lines.inc()
        elif isinstance(event, QueueMonitor | ResourceMonitor | LoggerMonitor):
            self.metrics.snapshots.observe(event)
        self.events += 1
        for client in self.clients:
            if client.filter.matches(event, self.batch_of):
                client.offer(text, event)

    def _forward(self, event: JobStatusEvent) -> bool:
        """Whether a status event moves its job forward; remembers it (and the job's batch)."""
        order = status_order(event.status, event.attempt)
        last = self._last.get(event.job_id)
        if last is not None and order <= last:
            return False
        _remember(self._last, event.job_id, order)
        if event.batch_id is not None:
            _remember(self.batch_of, event.job_id, event.batch_id)
        return True


_V = TypeVar("_V")


def _remember(lru: OrderedDict[uuid.UUID, _V], key: uuid.UUID, value: _V) -> None:
    lru[key] = value
    lru.move_to_end(key)
    if len(lru) > HUB_MEMORY:
        lru.popitem(last=False)
