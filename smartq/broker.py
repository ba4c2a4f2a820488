"""The message broker interface every smartq process talks to.

Two implementations share it and one test suite: :class:`~smartq.brokers.memory.InMemoryBroker`
(the embedded mode, every process a task of one event loop) and
:class:`~smartq.brokers.rabbitmq.RabbitMQBroker`. Delivery is at least once: a message whose
ack is lost (consumer cancelled, connection dropped) comes back with ``redelivered=True``, so
every consumer must tolerate duplicates (smartq fences reports by ``(job_id, attempt)``).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from smartq.errors import SmartqError
from smartq.topology import EXCHANGE, QueueSpec

if TYPE_CHECKING:
    from smartq.settings import Settings

logger = logging.getLogger(__name__)


class BrokerError(SmartqError):
    """The broker could not do what was asked (connection lost, message rejected...)."""


class QueueMismatch(BrokerError):
    """A queue exists under that name with other properties (e.g. declared by an older
    version without an expiry); declaring it as asked needs it deleted first."""


class AccessRefused(BrokerError):
    """The broker refused this user the operation (RabbitMQ's ACCESS_REFUSED)."""


class Unroutable(BrokerError):
    """A ``mandatory`` publish matched no queue, so nobody would ever receive it."""

    def __init__(self, routing_keys: Sequence[str]) -> None:
        super().__init__(f"no queue is bound for routing key(s): {', '.join(routing_keys)}")
        self.routing_keys = tuple(routing_keys)


class IncomingMessage(ABC):
    """One delivery to a consumer. Settle it once with :meth:`ack` or :meth:`nack`.

    Until settled it counts against the consumer's prefetch. Settling a delivery whose channel
    or consumer is already gone does nothing (the broker has requeued it already).
    """

    __slots__ = ("_settled", "body", "redelivered", "routing_key")

    def __init__(self, body: bytes, routing_key: str, redelivered: bool) -> None:
        self.body = body
        self.routing_key = routing_key
        self.redelivered = redelivered
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        """Done with it: the broker forgets the message."""
        self._settle()
        await self._ack()

    async def nack(self, requeue: bool) -> None:
        """Give it back: to the head of its queue when ``requeue``, else drop it."""
        self._settle()
        await self._nack(requeue)

    def _settle(self) -> None:
        if self._settled:
            raise BrokerError(f"message {self.routing_key!r} was already acked or nacked")
        self._settled = True

    @classmethod
    async def _ack_many(cls, messages: Sequence[IncomingMessage]) -> None:
        """Ack ``messages`` (unsettled, of one consumer): one by one here; a broker that can
        settle a run of deliveries with one call overrides it."""
        for message in messages:
            await message.ack()

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, requeue: bool) -> None: ...

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.routing_key!r} {len(self.body)} bytes"
            f"{' redelivered' if self.redelivered else ''}>"
        )


Handler = Callable[[IncomingMessage], Awaitable[None]]


async def ack_all(messages: Sequence[IncomingMessage]) -> None:
    """Ack every unsettled one of ``messages``: deliveries of ONE consumer, every earlier
    delivery of which is settled already or among them (the scheduler acks its pass's inbox
    so). RabbitMQ then settles them with one ``basic.ack`` (``multiple``) per channel instead
    of one per message: at 1,000 workers a pass acked thousands one by one, its longest phase
    (``bench fleet``)."""
    pending = [m for m in messages if not m.settled]
    if pending:
        await type(pending[0])._ack_many(pending)


class Consumer(ABC):
    """A running subscription; :meth:`cancel` stops it and requeues what it has not settled."""

    @abstractmethod
    async def cancel(self) -> None: ...


class Broker(ABC):
    """Publish to the topic exchange, declare queues, consume them with a prefetch.

    Handlers run as tasks, up to ``prefetch`` at a time per consumer, and are not acked when
    they return: a handler may settle its message later (a worker acks a dispatch when the job
    is done). A handler that raises before settling gets its message nacked — requeued the
    first time, dropped if it had been redelivered already, so a poison message cannot loop.
    """

    def __init__(self, exchange: str = EXCHANGE) -> None:
        self.exchange = exchange

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection and declare the exchange. Must be called first."""

    @abstractmethod
    async def close(self) -> None:
        """Cancel every consumer (requeueing unsettled messages) and disconnect."""

    @abstractmethod
    async def declare(self, queue: QueueSpec) -> None:
        """Create the queue if missing and bind it; idempotent."""

    @abstractmethod
    async def publish(self, routing_key: str, body: bytes, *, mandatory: bool = False) -> None:
        """Publish one persistent message; returns once the broker has taken responsibility.

        Raises :class:`Unroutable` if ``mandatory`` and no queue matches.
        """

    @abstractmethod
    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, mandatory: bool = False
    ) -> None:
        """Publish ``(routing_key, body)`` pairs, confirmed together rather than one by one.

        Every routable message is published even when some are not; then :class:`Unroutable`
        names the routing keys that matched no queue.
        """

    @abstractmethod
    async def consume(self, queue: QueueSpec, handler: Handler, *, prefetch: int) -> Consumer:
        """Declare ``queue`` and deliver its messages to ``handler``, at most ``prefetch``
        unsettled at a time."""

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the broker is usable right now (for ``/readyz``)."""

    @abstractmethod
    async def purge(self, queue_name: str) -> int:
        """Drop the ready messages of a queue; returns how many."""

    @abstractmethod
    async def delete_queue(self, queue_name: str) -> None:
        """Delete a queue with its messages (no error if it does not exist)."""

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def run_handler(handler: Handler, message: IncomingMessage) -> None:
    """Run one handler; on an exception, nack what it left unsettled (see :class:`Broker`)."""
    try:
        await handler(message)
    except Exception:
        requeue = not message.redelivered
        logger.exception(
            "message handler failed; %s the message",
            "requeueing" if requeue else "dropping",
            extra={"action": "broker.handler_failed", "routing_key": message.routing_key},
        )
        if not message.settled:
            await message.nack(requeue=requeue)


def create_broker(settings: Settings, *, exchange: str | None = None) -> Broker:
    """The in-process broker when no ``broker_url`` is set, else RabbitMQ (not yet connected)."""
    exchange = exchange or settings.broker_exchange
    if settings.broker_url is None:
        from smartq.brokers.memory import InMemoryBroker

        return InMemoryBroker(exchange=exchange)
    from smartq.brokers.rabbitmq import RabbitMQBroker

    return RabbitMQBroker(settings.broker_url, exchange=exchange)


async def declare_shared_queues(broker: Broker) -> None:
    """Declare the scheduler's and the logger's durable queues. Every process does this when it
    connects, so what it publishes before those processes first ran waits for them instead of
    being dropped by an exchange with no queue bound. A process whose broker user may not
    (deploy/rabbitmq/definitions.json declares them at the broker's boot, so that only their
    owners may configure them) leaves them to the deployment."""
    from smartq import topology

    for spec in (topology.scheduler_queue(broker.exchange), topology.logger_queue(broker.exchange)):
        try:
            await broker.declare(spec)
        except AccessRefused:
            logger.info(
                "not allowed to declare a shared queue; the deployment declares it",
                extra={"action": "broker.shared_queue_left", "queue": spec.name},
            )
