"""The hub: consumes this API process's stream queue, drops status events that do not move
their job forward, feeds the metrics, and offers each event to the clients whose filter
accepts it; connects and disconnects clients and re-indexes one when its filter is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import OrderedDict
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from api.metrics import Metrics
from api.stream.client import CLOSE_GOING_AWAY, Order, StreamClient, status_order
from api.stream.filters import EventKeys, StreamFilter
from api.stream.index import ClientIndex
from models.messages import BATCH_TYPE, JobStatusEvent, LogLine, stream_event, unpack
from models.monitoring import BreakerChanged, LoggerMonitor, QueueMonitor, ResourceMonitor
from smartq import topology
from smartq.broker import Broker, Consumer, IncomingMessage

log = logging.getLogger(__name__)

#: Jobs whose last status (and batch) the hub remembers, most recent first.
HUB_MEMORY = 65_536


def default_process_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class StreamHub:
    """Consumes this process's stream queue and fans events out (see :mod:`api.stream`)."""

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

    def key_ids(self) -> set[str]:
        """The keys the connected clients came with."""
        return {c.key_id for c in self.clients if c.key_id is not None}

    def close_keys(self, dead: set[str], code: int, reason: str) -> int:
        """Close every client connected with one of the ``dead`` keys; returns how many."""
        closing = [c for c in self.clients if c.key_id in dead]
        for client in closing:
            client.close(code, reason)
        return len(closing)

    def connect(self, start: StreamFilter | None = None, key_id: str | None = None) -> StreamClient:
        """A new client with the filter ``start`` (what its key may see: a tenant, and whether
        monitoring), watched for revocation under ``key_id``."""
        client = StreamClient(self.capacity, self.stall_seconds, start, key_id)
        if self._going_away:
            client.close(CLOSE_GOING_AWAY, "server shutting down")
        self.clients.add(client)
        self._no_clients.clear()
        self.index.update(client)
        return client

    def disconnect(self, client: StreamClient) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._no_clients.set()
        self.index.remove(client)

    def refilter(self, client: StreamClient, new: StreamFilter) -> None:
        """Give ``client`` the filter ``new`` and, while it is connected, file it in the index
        under the new filter's keys (a late change from a closing session is not indexed)."""
        client.filter = new
        if client in self.clients:
            self.index.update(client)

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
        elif isinstance(event, BreakerChanged):
            self.metrics.breaker_changed(event)
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
