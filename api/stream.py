"""The live event hub behind ``WS /jobs/stream``: one broker queue per API process, fanned out
to every connected client through a bounded buffer each.

Each API process consumes one exclusive, auto-deleted stream queue (``job.status.#``,
``job.logs.#``, ``job.monitoring.#``; see :func:`smartq.topology.stream_queue`), so several
API processes each stream everything. For every event the hub

1. drops a status event that is not newer than the last one it saw for that job (a redelivered
   duplicate, or a scheduler event overtaken by the API's own cancellation): per job, statuses
   only move forward in :func:`status_order`;
2. feeds the metrics (:mod:`api.metrics`) and keeps the latest monitoring snapshots;
3. offers the raw JSON text to each client whose filter matches. Only the clients the
   :class:`ClientIndex` files under the event's job, batch or channel are checked, so an event
   costs in proportion to the clients it may concern, not to every client connected.

A client's buffer holds at most ``capacity`` events. When it is full, new events for that
client are dropped and counted; the next event that fits is preceded by
``{"type": "stream.dropped", "missed": n}``. A client that keeps dropping for longer than
``stall_seconds`` is closed with :data:`CLOSE_TOO_SLOW`. Nothing here ever waits on a client,
so a slow one cannot hold up the others, and its memory is bounded by its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

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


#: An event's type, with its status for ``job.status`` events: what a filter that names no job
#: or batch looks at, and so how the hub indexes such filters.
Channel = tuple[str, JobStatus | None]


class EventKeys:
    """What filters look at in one event, worked out once per event rather than once per
    client: its channel, and its job and batch as integers (hashing a :class:`uuid.UUID` runs
    Python code; its ``int`` hashes in C). ``job`` is None for monitoring events; ``batch`` is
    None when the job's batch is not known."""

    __slots__ = ("batch", "channel", "job", "status", "type")

    def __init__(
        self, type_: str, status: JobStatus | None, job: int | None, batch: int | None
    ) -> None:
        self.type = type_
        self.status = status
        self.job = job
        self.batch = batch
        self.channel: Channel = (type_, status)

    @classmethod
    def of(cls, event: StreamEvent, batch_of: Mapping[uuid.UUID, uuid.UUID]) -> EventKeys:
        """``batch_of``: job → batch, for log lines (which do not name their batch)."""
        if isinstance(event, JobStatusEvent):
            batch_id = event.batch_id
            status: JobStatus | None = event.status
        elif isinstance(event, LogLine):
            batch_id, status = batch_of.get(event.job_id), None
        else:
            return cls(event.type, None, None, None)
        batch = None if batch_id is None else batch_id.int
        return cls(event.type, status, event.job_id.int, batch)


class IndexKeys(NamedTuple):
    """Where the hub's :class:`ClientIndex` files one client: an event reaches the client's
    filter check only if its job is in ``jobs``, its batch in ``batches`` or its channel in
    ``channels``."""

    jobs: frozenset[int] = frozenset()
    batches: frozenset[int] = frozenset()
    channels: frozenset[Channel] = frozenset()


@dataclass
class StreamFilter:
    """What one client wants. No job or batch named: every job. ``types`` empty: every type
    when no job or batch is named, else ``job.status`` and ``job.log``. ``statuses`` applies to
    status events only.

    Change it through :meth:`apply` and :meth:`add_batches` only: they recompute what
    :meth:`accepts` and :meth:`index_keys` read, then call ``on_change`` (the hub re-indexes the
    client there)."""

    job_ids: set[uuid.UUID] = field(default_factory=set)
    batch_ids: set[uuid.UUID] = field(default_factory=set)
    statuses: frozenset[JobStatus] = frozenset()
    types: frozenset[str] = frozenset()
    #: The jobs of each watched batch (a batch's jobs are fixed when it is created).
    batch_jobs: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    # Derived from the fields above by _refresh, for the hot path.
    _all: bool = field(init=False, repr=False, compare=False)
    _types: frozenset[str] = field(init=False, repr=False, compare=False)
    _keys: IndexKeys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._refresh()

    @property
    def all_jobs(self) -> bool:
        return self._all

    def effective_types(self) -> frozenset[str]:
        return self._types

    def watches(self, job_id: uuid.UUID, batch_id: uuid.UUID | None) -> bool:
        if self._all or job_id.int in self._keys.jobs:
            return True
        return batch_id is not None and batch_id.int in self._keys.batches

    def matches(self, event: StreamEvent, batch_of: Mapping[uuid.UUID, uuid.UUID]) -> bool:
        return self.accepts(EventKeys.of(event, batch_of))

    def accepts(self, keys: EventKeys) -> bool:
        """The full check of one event against this filter (:meth:`matches`, with the event's
        keys worked out once for all clients)."""
        if keys.type not in self._types:
            return False
        if keys.job is None:  # monitoring
            return True
        if keys.status is not None and self.statuses and keys.status not in self.statuses:
            return False
        return self._all or keys.job in self._keys.jobs or keys.batch in self._keys.batches

    def index_keys(self) -> IndexKeys:
        """Where to index this filter: a superset of the events :meth:`accepts` takes."""
        return self._keys

    def apply(self, cmd: Command) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Change the filter; returns the jobs and batches newly watched (to snapshot)."""
        try:
            return self._apply(cmd)
        finally:
            self._changed()

    def _apply(self, cmd: Command) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
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
        self.add_batches({batch_id: job_ids})

    def add_batches(self, jobs_by_batch: Mapping[uuid.UUID, Iterable[uuid.UUID]]) -> None:
        """Record the jobs of watched batches (one change, however many batches)."""
        try:
            for batch_id, job_ids in jobs_by_batch.items():
                self.batch_jobs[batch_id] = set(job_ids)
            if sum(len(j) for j in self.batch_jobs.values()) > MAX_WATCHED_JOBS:
                raise FilterError(f"the batches watched hold more than {MAX_WATCHED_JOBS} jobs")
        finally:
            self._changed()

    def _changed(self) -> None:
        self._refresh()
        if self.on_change is not None:
            self.on_change()

    def _refresh(self) -> None:
        self._all = not self.job_ids and not self.batch_ids
        self._types = self.types or (EVENT_TYPES if self._all else JOB_TYPES)
        channels: set[Channel] = {(t, None) for t in self._types & MONITORING_TYPES}
        if self._all:
            if "job.status" in self._types:
                channels |= {("job.status", s) for s in self.statuses or JobStatus}
            if "job.log" in self._types:
                channels.add(("job.log", None))
            self._keys = IndexKeys(channels=frozenset(channels))
            return
        jobs = {j.int for j in self.job_ids}
        for batch_jobs in self.batch_jobs.values():
            jobs.update(j.int for j in batch_jobs)
        batches = frozenset(b.int for b in self.batch_ids)
        self._keys = IndexKeys(frozenset(jobs), batches, frozenset(channels))

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


class ClientIndex:
    """The clients an event may concern, so that the hub checks only their filters: clients by
    watched job (named, or in a watched batch), by watched batch, and, for what is not keyed by
    job or batch (every job; monitoring), by :data:`Channel`. It only has to be a superset of
    the clients whose filter accepts the event: the filter check decides."""

    def __init__(self) -> None:
        self._by_job: dict[int, set[StreamClient]] = {}
        self._by_batch: dict[int, set[StreamClient]] = {}
        self._by_channel: dict[Channel, set[StreamClient]] = {}
        self._keys: dict[StreamClient, IndexKeys] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def update(self, client: StreamClient) -> None:
        """File ``client`` under its filter's keys (call on connect and after every change)."""
        new = client.filter.index_keys()
        old = self._keys.get(client, _NOWHERE)
        if new is old:
            return
        _refile(self._by_job, client, old.jobs, new.jobs)
        _refile(self._by_batch, client, old.batches, new.batches)
        _refile(self._by_channel, client, old.channels, new.channels)
        self._keys[client] = new

    def remove(self, client: StreamClient) -> None:
        old = self._keys.pop(client, None)
        if old is not None:
            _refile(self._by_job, client, old.jobs, frozenset())
            _refile(self._by_batch, client, old.batches, frozenset())
            _refile(self._by_channel, client, old.channels, frozenset())

    def candidates(self, keys: EventKeys) -> AbstractSet[StreamClient]:
        """The clients filed under the event's channel, job or batch; read it before any
        change to the index (it may be one of the index's own sets)."""
        found = self._by_channel.get(keys.channel, _NOBODY)
        if keys.job is None:
            return found
        by_job = self._by_job.get(keys.job, _NOBODY)
        by_batch = _NOBODY if keys.batch is None else self._by_batch.get(keys.batch, _NOBODY)
        if not by_job and not by_batch:
            return found
        if not found and not by_batch:
            return by_job
        if not found and not by_job:
            return by_batch
        return found | by_job | by_batch


_NOWHERE = IndexKeys()
_NOBODY: frozenset[StreamClient] = frozenset()
_K = TypeVar("_K")


def _refile(
    index: dict[_K, set[StreamClient]],
    client: StreamClient,
    old: frozenset[_K],
    new: frozenset[_K],
) -> None:
    for key in old - new:
        clients = index[key]
        clients.discard(client)
        if not clients:
            del index[key]
    for key in new - old:
        index.setdefault(key, set()).add(client)


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
        self.index = ClientIndex()
        #: job → batch, learnt from status events, to match log lines to batch filters.
        self.batch_of: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()
        self._last: OrderedDict[uuid.UUID, Order] = OrderedDict()
        self._consumer: Consumer | None = None
        self.events = 0
        self._going_away = False
        self._no_clients = asyncio.Event()
        self._no_clients.set()

    async def start(self) -> None:
        queue = topology.stream_queue(self.process_id, self.broker.exchange)
        self._consumer = await self.broker.consume(queue, self._on_message, prefetch=1_000)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        self._close_all()

    async def going_away(self, timeout: float) -> None:
        """Close every stream with 1001 (so will be those opened from now on) and wait, at
        most ``timeout`` seconds, until each session has sent its close and left. The server
        calls this before it closes its connections itself (uvicorn would say 1012)."""
        self._going_away = True
        self._close_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._no_clients.wait()

    def _close_all(self) -> None:
        for client in list(self.clients):
            client.close(CLOSE_GOING_AWAY, "server shutting down")

    def connect(self) -> StreamClient:
        client = StreamClient(self.capacity, self.stall_seconds)
        if self._going_away:
            client.close(CLOSE_GOING_AWAY, "server shutting down")
        self.clients.add(client)
        self._no_clients.clear()
        client.filter.on_change = lambda: self.index.update(client)
        self.index.update(client)
        return client

    def disconnect(self, client: StreamClient) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._no_clients.set()
        self.index.remove(client)
        client.filter.on_change = None

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
        keys = EventKeys.of(event, self.batch_of)
        for client in self.index.candidates(keys):
            if client.filter.accepts(keys):
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
