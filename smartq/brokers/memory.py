"""The in-process broker: RabbitMQ's topic-exchange semantics inside one event loop.

The embedded mode runs every smartq process as a task of one loop on this broker, and the
broker test suite runs against it and RabbitMQ alike, so it follows AMQP where smartq relies on
it: ``*``/``#`` topic matching, queues that keep messages while nobody consumes, round-robin
delivery bounded by each consumer's prefetch, requeue to the head of the queue with
``redelivered`` set, unsettled messages requeued when their consumer goes away, ``mandatory``
publishes that fail when no queue matches, exclusive and auto-deleted queues, ``x-max-length``.
Nothing survives the process: "durable" only means the queue outlives its consumers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from smartq.broker import (
    Broker,
    BrokerError,
    Consumer,
    Handler,
    IncomingMessage,
    QueueMismatch,
    Unroutable,
    run_handler,
)
from smartq.topology import EXCHANGE, QueueSpec

logger = logging.getLogger(__name__)

MAX_ROUTING_KEY_BYTES = 255


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """Whether a topic binding key matches a routing key, as AMQP defines it: words are
    separated by dots, ``*`` stands for exactly one word and ``#`` for zero or more."""
    pattern = binding_key.split(".")
    # Simulate the pattern as an automaton: a state is how many pattern words are matched.
    states = _closure(pattern, {0})
    for word in routing_key.split("."):
        following: set[int] = set()
        for state in states:
            if state == len(pattern):
                continue
            expected = pattern[state]
            if expected == "#":
                following.add(state)
            elif expected in ("*", word):
                following.add(state + 1)
        if not following:
            return False
        states = _closure(pattern, following)
    return len(pattern) in states


def _closure(pattern: list[str], states: set[int]) -> set[int]:
    """Add the states reached by letting each ``#`` match zero words."""
    result = set(states)
    for state in sorted(states):
        while state < len(pattern) and pattern[state] == "#":
            state += 1
            result.add(state)
    return result


@dataclass(frozen=True)
class _Envelope:
    routing_key: str
    body: bytes
    redelivered: bool = False


class _MemoryMessage(IncomingMessage):
    __slots__ = ("_consumer", "_envelope")

    def __init__(self, consumer: _MemoryConsumer, envelope: _Envelope) -> None:
        super().__init__(envelope.body, envelope.routing_key, envelope.redelivered)
        self._consumer = consumer
        self._envelope = envelope

    async def _ack(self) -> None:
        self._consumer.settle(self, requeue=False)

    async def _nack(self, requeue: bool) -> None:
        self._consumer.settle(self, requeue=requeue)


class _Queue:
    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.bindings: set[str] = set()
        self.ready: deque[_Envelope] = deque()
        self.consumers: list[_MemoryConsumer] = []
        self.max_length: int | None = spec.arguments.get("x-max-length")
        self._turn = 0

    def routes(self, routing_key: str) -> bool:
        return any(topic_matches(binding, routing_key) for binding in self.bindings)

    def put(self, envelope: _Envelope) -> None:
        self.ready.append(envelope)
        if self.max_length is not None:
            while len(self.ready) > self.max_length:
                self.ready.popleft()  # RabbitMQ's default overflow: drop from the head
        self.pump()

    def requeue(self, envelopes: Sequence[_Envelope]) -> None:
        """Put messages back at the head, in their original order, marked redelivered."""
        for envelope in reversed(envelopes):
            self.ready.appendleft(_Envelope(envelope.routing_key, envelope.body, True))
        self.pump()

    def pump(self) -> None:
        """Hand ready messages to consumers in turn, while one has room under its prefetch."""
        while self.ready:
            consumer = self._next_consumer()
            if consumer is None:
                return
            consumer.deliver(self.ready.popleft())

    def _next_consumer(self) -> _MemoryConsumer | None:
        count = len(self.consumers)
        for offset in range(count):
            consumer = self.consumers[(self._turn + offset) % count]
            if consumer.has_room():
                self._turn = (self._turn + offset + 1) % count
                return consumer
        return None


class _MemoryConsumer(Consumer):
    def __init__(
        self, broker: InMemoryBroker, queue: _Queue, handler: Handler, prefetch: int
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._unsettled: dict[_MemoryMessage, None] = {}  # insertion-ordered set
        self._tasks: set[asyncio.Task[None]] = set()
        self.active = True

    def has_room(self) -> bool:
        return self.active and (self._prefetch == 0 or len(self._unsettled) < self._prefetch)

    def deliver(self, envelope: _Envelope) -> None:
        message = _MemoryMessage(self, envelope)
        self._unsettled[message] = None
        task = asyncio.create_task(run_handler(self._handler, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def settle(self, message: _MemoryMessage, *, requeue: bool) -> None:
        if not self.active or message not in self._unsettled:
            return  # the consumer went away and its messages were requeued already
        del self._unsettled[message]
        if requeue:
            self._queue.requeue([message._envelope])
        else:
            self._queue.pump()

    async def cancel(self) -> None:
        """Stop deliveries, requeue unsettled messages, stop handlers still running."""
        if not self.active:
            return
        self.active = False
        unsettled = [message._envelope for message in self._unsettled]
        self._unsettled.clear()
        self._broker.detach(self, unsettled)
        current = asyncio.current_task()
        running = [task for task in self._tasks if task is not current]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def abandon(self) -> None:
        """The queue was deleted under this consumer: its messages are gone."""
        self.active = False
        self._unsettled.clear()


class InMemoryBroker(Broker):
    """A broker living in this process: see the module docstring for what it reproduces."""

    def __init__(self, exchange: str = EXCHANGE) -> None:
        super().__init__(exchange)
        self._queues: dict[str, _Queue] = {}
        self._consumers: list[_MemoryConsumer] = []
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.cancel()
        for name, queue in list(self._queues.items()):
            if queue.spec.exclusive:  # exclusive queues die with their connection
                del self._queues[name]
        self._connected = False

    async def declare(self, queue: QueueSpec) -> None:
        self._check_connected()
        existing = self._queues.get(queue.name)
        if existing is None:
            existing = self._queues[queue.name] = _Queue(queue)
        elif _properties(existing.spec) != _properties(queue):
            raise QueueMismatch(
                f"queue {queue.name!r} exists with other properties: {existing.spec}"
            )
        existing.bindings.update(queue.bindings)

    async def publish(self, routing_key: str, body: bytes, *, mandatory: bool = False) -> None:
        routed = self._route(routing_key, body)
        await asyncio.sleep(0)  # a suspension point, as a real publish is
        if not routed and mandatory:
            raise Unroutable([routing_key])

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, mandatory: bool = False
    ) -> None:
        unroutable = [key for key, body in messages if not self._route(key, body)]
        await asyncio.sleep(0)
        if unroutable and mandatory:
            raise Unroutable(unroutable)

    async def consume(self, queue: QueueSpec, handler: Handler, *, prefetch: int) -> Consumer:
        if prefetch < 0:
            raise ValueError("prefetch must be positive (or 0 for unlimited)")
        await self.declare(queue)
        target = self._queues[queue.name]
        consumer = _MemoryConsumer(self, target, handler, prefetch)
        target.consumers.append(consumer)
        self._consumers.append(consumer)
        target.pump()
        return consumer

    async def ping(self) -> bool:
        return self._connected

    async def purge(self, queue_name: str) -> int:
        queue = self._queues.get(queue_name)
        if queue is None:
            raise BrokerError(f"no queue {queue_name!r}")
        count = len(queue.ready)
        queue.ready.clear()
        return count

    async def delete_queue(self, queue_name: str) -> None:
        queue = self._queues.pop(queue_name, None)
        if queue is None:
            return
        for consumer in queue.consumers:
            consumer.abandon()
            self._consumers.remove(consumer)

    def detach(self, consumer: _MemoryConsumer, unsettled: Sequence[_Envelope]) -> None:
        """Called by a cancelled consumer: give its messages back to the queue."""
        self._consumers.remove(consumer)
        queue = consumer._queue
        queue.consumers.remove(consumer)
        if queue.spec.auto_delete and not queue.consumers:
            self._queues.pop(queue.spec.name, None)  # auto-delete: gone with its last consumer
            return
        queue.requeue(unsettled)

    def _route(self, routing_key: str, body: bytes) -> bool:
        self._check_connected()
        if len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise BrokerError(f"routing key longer than {MAX_ROUTING_KEY_BYTES} bytes")
        envelope = _Envelope(routing_key, bytes(body))
        targets = [queue for queue in self._queues.values() if queue.routes(routing_key)]
        for queue in targets:
            queue.put(envelope)
        return bool(targets)

    def _check_connected(self) -> None:
        if not self._connected:
            raise BrokerError("the in-memory broker is not connected (call connect() first)")


def _properties(spec: QueueSpec) -> tuple[object, ...]:
    return (spec.durable, spec.exclusive, spec.auto_delete, sorted(spec.arguments.items()))
