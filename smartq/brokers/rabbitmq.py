"""The RabbitMQ broker, on aio-pika's robust connection.

- One robust connection (``connect_robust``): when RabbitMQ restarts or drops the connection,
  aio-pika reconnects in the background and re-opens the channels, re-declaring the exchange,
  the consumed queues with their bindings and qos, and the consumers themselves.
- One channel for publishing, with publisher confirms and ``on_return_raises``: a ``mandatory``
  message RabbitMQ cannot route comes back as ``basic.return`` before its ``basic.ack``, and
  aiormq fails its confirmation with ``PublishError`` — raised here as :class:`Unroutable`.
- One channel per consumer, so each has its own prefetch (basic.qos is per channel in aio-pika
  and restored per channel after a reconnect) and cancelling it is closing its channel, which
  makes RabbitMQ requeue everything it delivered and was not settled.
- Short-lived channels for declare/purge/delete: a channel-level error (a queue re-declared with
  other arguments: PRECONDITION_FAILED) closes that channel only.

A publish waits for the publishing channel to be restored if a reconnect is under way, and is
retried (a few times) when the connection drops under it; as a lost confirmation does not mean
a lost message, a retry may duplicate a message, which at-least-once consumers tolerate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from yarl import URL

from smartq.broker import (
    AccessRefused,
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

#: What a dropped connection or channel raises in aio-pika/aiormq (ChannelInvalidStateError is
#: a RuntimeError; both are raised when using a channel that is closed or being restored).
_LOST = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)

PUBLISH_ATTEMPTS = 3
#: At most this many publishes await their confirmation at once in :meth:`publish_many`.
MAX_IN_FLIGHT = 1_000


class _RabbitMessage(IncomingMessage):
    __slots__ = ("_message",)

    def __init__(self, message: AbstractIncomingMessage) -> None:
        super().__init__(message.body, message.routing_key or "", bool(message.redelivered))
        self._message = message

    async def _ack(self) -> None:
        try:
            await self._message.ack()
        except _LOST:
            self._log_lost("ack")

    @classmethod
    async def _ack_many(cls, messages: Sequence[IncomingMessage]) -> None:
        # The caller's promise (smartq.broker.ack_all): every earlier delivery of the consumer
        # is settled or here, so acking the last delivery of each channel with ``multiple``
        # settles exactly these. A reconnect opens a new channel, with tags of its own.
        last: dict[int, tuple[int, _RabbitMessage]] = {}
        for message in messages:
            assert isinstance(message, _RabbitMessage)
            message._settle()
            channel, tag = id(message._message.channel), message._message.delivery_tag or 0
            if tag >= last.get(channel, (-1, message))[0]:
                last[channel] = (tag, message)
        for _, message in last.values():
            try:
                await message._message.ack(multiple=True)
            except _LOST:
                message._log_lost("ack")

    async def _nack(self, requeue: bool) -> None:
        try:
            await self._message.nack(requeue=requeue)
        except _LOST:
            self._log_lost("nack")

    def _log_lost(self, what: str) -> None:
        # The channel that delivered it is gone, so RabbitMQ has requeued the message already.
        logger.warning(
            "could not %s a message: its channel is closed; it will be redelivered",
            what,
            extra={"action": f"broker.{what}_lost", "routing_key": self.routing_key},
        )


class _RabbitConsumer(Consumer):
    def __init__(
        self,
        broker: RabbitMQBroker,
        channel: AbstractRobustChannel,
        queue_name: str,
        handler: Handler,
    ) -> None:
        self._broker = broker
        self._queue_name = queue_name
        self._channel = channel
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # Run the handler in our own task so cancel() can stop it before closing the channel.
        task = asyncio.create_task(run_handler(self._handler, _RabbitMessage(message)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._broker._consumers.discard(self)
        current = asyncio.current_task()
        running = [task for task in self._tasks if task is not current]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        # Closing the channel cancels the consumer and requeues its unacked messages.
        with contextlib.suppress(*_LOST):
            await self._channel.close()


class RabbitMQBroker(Broker):
    """:class:`~smartq.broker.Broker` on RabbitMQ; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = EXCHANGE,
        connection_name: str = "smartq",
        reconnect_interval: float = 1.0,
        ready_timeout: float = 30.0,
        publish_timeout: float = 30.0,
    ) -> None:
        super().__init__(exchange)
        self._url = URL(url)
        self._connection_name = connection_name
        self._reconnect_interval = reconnect_interval
        self._ready_timeout = ready_timeout
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._consumers: set[_RabbitConsumer] = set()

    async def connect(self) -> None:
        kwargs: dict[str, Any] = {"client_properties": {"connection_name": self._connection_name}}
        if "reconnect_interval" not in self._url.query:  # the URL may set it
            kwargs["reconnect_interval"] = self._reconnect_interval
        try:
            self._connection = await aio_pika.connect_robust(self._url, **kwargs)
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._exchange = await self._declare_exchange(self._channel)
        except (*_LOST, OSError) as exc:
            await self.close()
            raise BrokerError(f"cannot connect to RabbitMQ at {self._safe_url}: {exc}") from exc

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.cancel()
        if self._connection is not None:
            with contextlib.suppress(*_LOST):
                await self._connection.close()
        self._connection = self._channel = self._exchange = None

    async def declare(self, queue: QueueSpec) -> None:
        async with self._admin_channel(f"declare queue {queue.name!r}") as channel:
            declared = await self._declare_queue(channel, queue, robust=False)
            for key in queue.bindings:
                await declared.bind(self.exchange, key, robust=False)

    async def publish(self, routing_key: str, body: bytes, *, mandatory: bool = False) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            exchange = await self._ready_exchange()
            try:
                await exchange.publish(
                    message, routing_key, mandatory=mandatory, timeout=self._publish_timeout
                )
                return
            except aiormq.exceptions.PublishError as exc:  # basic.return: no queue matched
                raise Unroutable([routing_key]) from exc
            except aiormq.exceptions.DeliveryError as exc:  # basic.nack
                raise BrokerError(f"RabbitMQ refused the message for {routing_key!r}") from exc
            except _LOST as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise BrokerError(f"publishing {routing_key!r} failed: {exc!r}") from exc
                logger.warning(
                    "publish interrupted, retrying once the channel is back",
                    extra={"action": "broker.publish_retry", "routing_key": routing_key},
                )

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, mandatory: bool = False
    ) -> None:
        # Confirms are pipelined, and frames are not drained one by one: with wait=False aiormq
        # releases the channel lock once a frame is queued for the writer, so a batch goes out
        # in order and in a few socket writes, and only the confirmations are awaited. A publish
        # hit by a lost connection falls back to the robust path, which waits and retries.
        if not messages:
            return
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        await self._ready_exchange()
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()

        async def one(routing_key: str, body: bytes) -> None:
            async with in_flight:
                try:
                    await channel.basic_publish(
                        body,
                        exchange=self.exchange,
                        routing_key=routing_key,
                        # Fresh per message: aiormq matches returns by the message_id it sets.
                        properties=aiormq.spec.Basic.Properties(delivery_mode=2),
                        mandatory=mandatory,
                        timeout=self._publish_timeout,
                        wait=False,  # type: ignore[call-arg]  # concrete Channel has it
                    )
                except aiormq.exceptions.PublishError as exc:
                    raise Unroutable([routing_key]) from exc
                except aiormq.exceptions.DeliveryError as exc:
                    raise BrokerError(f"RabbitMQ refused the message for {routing_key!r}") from exc
                except _LOST:
                    await self.publish(routing_key, body, mandatory=mandatory)

        results = await asyncio.gather(
            *(one(key, body) for key, body in messages), return_exceptions=True
        )
        _raise_failures(results)

    async def consume(self, queue: QueueSpec, handler: Handler, *, prefetch: int) -> Consumer:
        if prefetch < 0:
            raise ValueError("prefetch must be positive (or 0 for unlimited)")
        channel = await self._ready_connection().channel(publisher_confirms=False)
        consumer = _RabbitConsumer(self, channel, queue.name, handler)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            # Declared on this robust channel, the exchange, queue and bindings are re-declared
            # on reconnect (an exclusive queue dies with the connection) before the consumer.
            exchange = await self._declare_exchange(channel)
            declared = await self._declare_queue(channel, queue, robust=True)
            for key in queue.bindings:
                await declared.bind(exchange, key)
            await declared.consume(consumer.on_message)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            with contextlib.suppress(*_LOST):
                await channel.close()
            raise QueueMismatch(f"cannot consume {queue.name!r}: {exc!r}") from exc
        except _LOST as exc:
            with contextlib.suppress(*_LOST):
                await channel.close()
            raise BrokerError(f"cannot consume {queue.name!r}: {exc!r}") from exc
        self._consumers.add(consumer)
        return consumer

    async def ping(self) -> bool:
        return (
            self._connection is not None
            and self._connection.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def purge(self, queue_name: str) -> int:
        async with self._admin_channel(f"purge queue {queue_name!r}") as channel:
            underlay = await channel.get_underlay_channel()
            result = await underlay.queue_purge(queue_name)
            return int(result.message_count or 0)

    async def delete_queue(self, queue_name: str) -> None:
        # Our own consumers go first: a robust consumer whose queue vanishes would re-declare it.
        for consumer in list(self._consumers):
            if consumer._queue_name == queue_name:
                await consumer.cancel()
        async with self._admin_channel(f"delete queue {queue_name!r}") as channel:
            underlay = await channel.get_underlay_channel()
            await underlay.queue_delete(queue_name)

    async def delete_exchange(self) -> None:
        """Delete this broker's exchange (for tests that isolate themselves with their own)."""
        async with self._admin_channel(f"delete exchange {self.exchange!r}") as channel:
            underlay = await channel.get_underlay_channel()
            await underlay.exchange_delete(self.exchange)

    async def _declare_exchange(self, channel: AbstractRobustChannel) -> AbstractRobustExchange:
        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    @staticmethod
    async def _declare_queue(
        channel: AbstractRobustChannel, queue: QueueSpec, *, robust: bool
    ) -> AbstractRobustQueue:
        return await channel.declare_queue(
            queue.name,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            arguments=dict(queue.arguments),
            robust=robust,
        )

    async def _ready_exchange(self) -> AbstractRobustExchange:
        """The publishing exchange, once its channel is open (waiting out a reconnect)."""
        if self._channel is None or self._exchange is None:
            raise BrokerError("the RabbitMQ broker is not connected (call connect() first)")
        try:
            await asyncio.wait_for(self._channel.ready(), self._ready_timeout)
        except TimeoutError as exc:
            raise BrokerError(
                f"RabbitMQ unavailable for {self._ready_timeout}s at {self._safe_url}"
            ) from exc
        return self._exchange

    def _ready_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerError("the RabbitMQ broker is not connected (call connect() first)")
        return self._connection

    @contextlib.asynccontextmanager
    async def _admin_channel(self, what: str) -> AsyncIterator[AbstractRobustChannel]:
        try:
            channel = await self._ready_connection().channel(publisher_confirms=False)
        except _LOST as exc:
            raise BrokerError(f"cannot {what}: {exc!r}") from exc
        try:
            yield channel
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise AccessRefused(f"cannot {what}: {exc!r}") from exc
        except _LOST as exc:
            raise BrokerError(f"cannot {what}: {exc!r}") from exc
        finally:
            with contextlib.suppress(*_LOST):
                await channel.close()

    @property
    def _safe_url(self) -> str:
        return str(self._url.with_password("***") if self._url.password else self._url)


def _raise_failures(results: Sequence[object]) -> None:
    """The first error of a batch's publishes, else one :class:`Unroutable` naming every
    message no queue took."""
    unroutable = [
        key for result in results if isinstance(result, Unroutable) for key in result.routing_keys
    ]
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Unroutable):
            raise result
    if unroutable:
        raise Unroutable(unroutable)
