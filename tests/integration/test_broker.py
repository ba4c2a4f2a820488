"""One suite for both brokers: the in-memory twin must behave as RabbitMQ does.

Each test on RabbitMQ gets its own exchange and queue names, deleted afterwards, so tests can
run against a shared server (and beside other processes using it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest

from smartq import topology
from smartq.broker import Broker, BrokerError, Consumer, IncomingMessage, Unroutable, ack_all
from smartq.brokers.memory import InMemoryBroker, topic_matches
from smartq.brokers.rabbitmq import RabbitMQBroker
from smartq.topology import QueueSpec
from tests.services import CI, require_rabbitmq, unavailable

WAIT = 10.0  # seconds a test waits for deliveries before failing
QUIET = 0.2  # seconds of silence that show nothing more is coming


class Inbox:
    """A handler that records deliveries, acking them unless told not to."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.messages: list[IncomingMessage] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        self.messages.append(message)
        self._changed.set()
        if self.ack:
            await message.ack()

    @property
    def bodies(self) -> list[bytes]:
        return [message.body for message in self.messages]

    @property
    def keys(self) -> set[str]:
        return {message.routing_key for message in self.messages}

    async def wait_for(self, count: int) -> list[IncomingMessage]:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    async def settle(self, count: int) -> list[IncomingMessage]:
        """Exactly ``count`` deliveries: wait for them, then check no more arrive."""
        await self.wait_for(count)
        await asyncio.sleep(QUIET)
        assert len(self.messages) == count, self.bodies
        return self.messages


@dataclasses.dataclass
class Harness:
    broker: Broker
    kind: str
    prefix: str
    queues: list[str] = dataclasses.field(default_factory=list)

    def queue(self, *bindings: str) -> QueueSpec:
        """A durable queue with a name of its own, deleted after the test."""
        return self.track(QueueSpec(f"{self.prefix}.q{len(self.queues)}", bindings))

    def track(self, spec: QueueSpec) -> QueueSpec:
        self.queues.append(spec.name)
        return spec

    def worker_id(self, name: str) -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    prefix = f"smartq-test-{uuid.uuid4().hex[:10]}"
    broker: Broker
    if request.param == "memory":
        broker = InMemoryBroker(exchange=prefix)
    else:
        broker = RabbitMQBroker(
            require_rabbitmq(), exchange=prefix, connection_name=prefix, reconnect_interval=0.2
        )
    await broker.connect()
    harness = Harness(broker, request.param, prefix)
    try:
        yield harness
    finally:
        for name in harness.queues:
            await broker.delete_queue(name)
        if isinstance(broker, RabbitMQBroker):
            await broker.delete_exchange()
        await broker.close()


async def consume(
    harness: Harness, spec: QueueSpec, *, prefetch: int = 100, ack: bool = True
) -> tuple[Inbox, Consumer]:
    inbox = Inbox(ack=ack)
    consumer = await harness.broker.consume(spec, inbox, prefetch=prefetch)
    return inbox, consumer


ROUTING_KEYS = [
    "job",
    "job.status",
    "job.status.1",
    "job.status.1.2",
    "worker.status.x",
    "a.b",
    "a.x.y.b",
]
# binding key -> the routing keys above it matches, as RabbitMQ routes them
ROUTES = {
    "job": {"job"},
    "job.*": {"job.status"},
    "job.#": {"job", "job.status", "job.status.1", "job.status.1.2"},
    "*.status.*": {"job.status.1", "worker.status.x"},
    "job.status.#": {"job.status", "job.status.1", "job.status.1.2"},
    "*": {"job"},
    "#": set(ROUTING_KEYS),
    "a.#.b": {"a.b", "a.x.y.b"},
    "#.b": {"a.b", "a.x.y.b"},
    "*.*": {"job.status", "a.b"},
    "#.*.#.1": {"job.status.1"},
}


@pytest.mark.parametrize(("binding", "expected"), ROUTES.items())
def test_topic_matches_as_amqp(binding: str, expected: set[str]) -> None:
    assert {key for key in ROUTING_KEYS if topic_matches(binding, key)} == expected


async def test_topic_routing(harness: Harness) -> None:
    inboxes = {}
    for binding in ROUTES:
        inboxes[binding], _ = await consume(harness, harness.queue(binding))
    await harness.broker.publish_many([(key, key.encode()) for key in ROUTING_KEYS])
    for binding, expected in ROUTES.items():
        await inboxes[binding].wait_for(len(expected))
    await asyncio.sleep(QUIET)  # then nothing more may come
    assert {binding: inbox.keys for binding, inbox in inboxes.items()} == ROUTES
    assert all(len(inbox.messages) == len(ROUTES[b]) for b, inbox in inboxes.items())


async def test_dispatch_reaches_only_its_worker(harness: Harness) -> None:
    one, two = harness.worker_id("host.1"), harness.worker_id("host#2")  # unsafe characters
    scheduler = harness.track(
        dataclasses.replace(topology.scheduler_queue(), name=f"{harness.prefix}.scheduler")
    )
    inbox_one, _ = await consume(harness, harness.track(topology.worker_queue(one)))
    inbox_two, _ = await consume(harness, harness.track(topology.worker_queue(two)))
    inbox_scheduler, _ = await consume(harness, scheduler)
    job = uuid.uuid4()

    await harness.broker.publish(topology.dispatch_key(one, job), b"run", mandatory=True)
    await harness.broker.publish(topology.cancel_key(two, job), b"stop", mandatory=True)
    await harness.broker.publish(topology.heartbeat_key(one), b"alive")
    await harness.broker.publish(topology.report_key(job), b"finished")

    assert [m.routing_key for m in await inbox_one.settle(1)] == [topology.dispatch_key(one, job)]
    assert inbox_two.bodies == [b"stop"]
    await inbox_scheduler.settle(2)
    assert sorted(inbox_scheduler.bodies) == [b"alive", b"finished"]


async def test_durable_queue_keeps_messages_until_a_consumer_attaches(harness: Harness) -> None:
    spec = harness.queue("kept.#")
    await harness.broker.declare(spec)
    for n in range(3):
        await harness.broker.publish(f"kept.{n}", str(n).encode(), mandatory=True)

    inbox, _ = await consume(harness, spec)

    await inbox.settle(3)
    assert inbox.bodies == [b"0", b"1", b"2"]
    assert not any(message.redelivered for message in inbox.messages)


async def test_prefetch_bounds_unacked_deliveries(harness: Harness) -> None:
    spec = harness.queue("work.#")
    await harness.broker.declare(spec)
    await harness.broker.publish_many([(f"work.{n}", str(n).encode()) for n in range(10)])

    inbox, _ = await consume(harness, spec, prefetch=3, ack=False)
    await inbox.settle(3)

    await inbox.messages[0].ack()
    await inbox.settle(4)
    assert inbox.bodies == [b"0", b"1", b"2", b"3"]


async def test_ack_all_settles_a_run_of_deliveries_at_once(harness: Harness) -> None:
    spec = harness.queue("run.#")
    await harness.broker.declare(spec)
    await harness.broker.publish_many([(f"run.{n}", str(n).encode()) for n in range(6)])
    inbox, consumer = await consume(harness, spec, prefetch=10, ack=False)
    await inbox.wait_for(6)
    await inbox.messages[4].ack()  # one settled before: the run's last unsettled is acked

    await ack_all(inbox.messages[:5])
    assert all(m.settled for m in inbox.messages[:5]) and not inbox.messages[5].settled
    await consumer.cancel()  # only what ack_all left out comes back
    again, _ = await consume(harness, spec)
    await again.settle(1)
    assert again.bodies == [b"5"]


async def test_nack_with_requeue_redelivers(harness: Harness) -> None:
    spec = harness.queue("retry.#")
    inbox, _ = await consume(harness, spec, ack=False)
    await harness.broker.publish("retry.1", b"again")

    first = (await inbox.wait_for(1))[0]
    assert not first.redelivered
    await first.nack(requeue=True)

    second = (await inbox.wait_for(2))[1]
    assert (second.body, second.redelivered) == (b"again", True)
    await second.nack(requeue=False)  # dropped: nothing more comes
    await inbox.settle(2)
    with pytest.raises(BrokerError):
        await second.ack()  # settled already


async def test_unacked_messages_return_after_the_consumer_is_cancelled(harness: Harness) -> None:
    spec = harness.queue("held.#")
    inbox, consumer = await consume(harness, spec, prefetch=5, ack=False)
    await harness.broker.publish_many([("held.1", b"1"), ("held.2", b"2")])
    await inbox.wait_for(2)
    await inbox.messages[0].ack()

    await consumer.cancel()
    await inbox.messages[1].ack()  # too late: a no-op, the message is back in the queue
    again, _ = await consume(harness, spec)

    await again.settle(1)
    assert (again.bodies, again.messages[0].redelivered) == ([b"2"], True)


async def test_a_failing_handler_gets_one_redelivery(harness: Harness) -> None:
    spec = harness.queue("poison")
    inbox = Inbox(ack=False)

    async def fail(message: IncomingMessage) -> None:
        await inbox(message)
        raise RuntimeError("boom")

    await harness.broker.consume(spec, fail, prefetch=1)
    await harness.broker.publish("poison", b"x")
    await inbox.settle(2)  # requeued once, then dropped
    assert [message.redelivered for message in inbox.messages] == [False, True]
    assert await harness.broker.purge(spec.name) == 0


async def test_mandatory_unroutable_raises(harness: Harness) -> None:
    spec = harness.queue("known.#")
    inbox, _ = await consume(harness, spec)

    with pytest.raises(Unroutable) as raised:
        await harness.broker.publish("unknown.1", b"lost", mandatory=True)
    assert raised.value.routing_keys == ("unknown.1",)
    await harness.broker.publish("unknown.1", b"dropped silently")

    with pytest.raises(Unroutable) as raised:
        await harness.broker.publish_many(
            [("known.1", b"a"), ("unknown.2", b"b"), ("known.2", b"c")], mandatory=True
        )
    assert raised.value.routing_keys == ("unknown.2",)
    await inbox.settle(2)  # the routable ones were delivered all the same
    assert sorted(inbox.bodies) == [b"a", b"c"]


async def test_publish_many_delivers_a_thousand(harness: Harness) -> None:
    spec = harness.queue("bulk.#")
    inbox, _ = await consume(harness, spec, prefetch=200)
    bodies = [str(n).encode() for n in range(1_000)]

    await harness.broker.publish_many([(f"bulk.{n}", body) for n, body in enumerate(bodies)])

    await inbox.wait_for(1_000)
    assert sorted(inbox.bodies) == sorted(bodies)


async def test_stream_queue_is_exclusive_and_goes_with_its_consumer(harness: Harness) -> None:
    spec = harness.track(topology.stream_queue(harness.prefix))
    inbox, consumer = await consume(harness, spec)
    job = uuid.uuid4()
    await harness.broker.publish(topology.status_key(job), b"status", mandatory=True)
    await harness.broker.publish(topology.logs_key(job), b"log", mandatory=True)
    await harness.broker.publish(topology.MONITORING_QUEUE, b"monitor", mandatory=True)
    await inbox.settle(3)

    await consumer.cancel()
    async with asyncio.timeout(WAIT):  # auto-deleted with its last consumer
        while True:
            try:
                await harness.broker.publish(topology.status_key(job), b"x", mandatory=True)
            except Unroutable:
                break
            await asyncio.sleep(0.05)


async def test_redeclaring_with_other_properties_fails(harness: Harness) -> None:
    spec = harness.queue("conflict")
    await harness.broker.declare(spec)
    await harness.broker.declare(spec)  # idempotent
    with pytest.raises(BrokerError):
        await harness.broker.declare(dataclasses.replace(spec, arguments={"x-max-length": 5}))
    await harness.broker.publish("conflict", b"still usable", mandatory=True)


async def test_ping(harness: Harness) -> None:
    assert await harness.broker.ping()


async def test_memory_broker_refuses_use_before_connect() -> None:
    broker = InMemoryBroker()
    assert not await broker.ping()
    with pytest.raises(BrokerError):
        await broker.publish("x", b"")


@pytest.mark.rabbitmq
async def test_rabbitmq_consumers_and_publishers_survive_a_dropped_connection() -> None:
    url = require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        if CI:
            unavailable("rabbitmqctl", "PATH")
        pytest.skip("rabbitmqctl is not on PATH")
    prefix = f"smartq-test-{uuid.uuid4().hex[:10]}"
    broker = RabbitMQBroker(url, exchange=prefix, connection_name=prefix, reconnect_interval=0.2)
    await broker.connect()
    harness = Harness(broker, "rabbitmq", prefix)
    spec = harness.queue("survive.#")
    try:
        inbox, _ = await consume(harness, spec, ack=False)
        await broker.publish("survive.1", b"before", mandatory=True)
        stale = (await inbox.wait_for(1))[0]

        await close_connection_from_server(prefix)
        await broker.publish("survive.2", b"after", mandatory=True)

        # the consumer is back, and what it held unacked was redelivered
        await inbox.settle(3)
        await stale.ack()  # its channel is gone: a no-op, not an error
        for message in inbox.messages[1:]:
            await message.ack()
        assert sorted(inbox.bodies[1:]) == [b"after", b"before"]
        assert [m.redelivered for m in inbox.messages if m.body == b"before"] == [False, True]
        assert await broker.ping()
    finally:
        await broker.delete_queue(spec.name)
        await broker.delete_exchange()
        await broker.close()


async def close_connection_from_server(connection_name: str) -> None:
    """Have RabbitMQ close (only) our connection, as a restart or a network cut would."""
    listed = await run(
        "rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    pids = [line.split("\t")[0] for line in listed.splitlines() if connection_name in line]
    assert pids, f"no connection named {connection_name} in {listed!r}"
    for pid in pids:
        await run("rabbitmqctl", "close_connection", pid, "smartq test: simulated outage")


async def run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()
