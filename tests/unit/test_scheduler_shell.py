"""The scheduler shell's rules, alone: liveness (leases, deafness, goodbyes), the inbox, and the
publisher (held status events, unroutable dispatches as values, retries)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from models.enums import JobStatus, Outcome
from models.messages import (
    AttemptFinished,
    Dispatch,
    JobsSubmitted,
    JobStatusEvent,
    SchedulerProbe,
    pack,
)
from scheduler.inbox import decode
from scheduler.liveness import Liveness
from scheduler.publisher import EVENTS_HELD_MAX, Publisher
from smartq import topology
from smartq.broker import BrokerError, IncomingMessage
from smartq.brokers.memory import InMemoryBroker
from smartq.topology import QueueSpec

LEASE, DEAF = 10.0, 3.0


def probed(live: Liveness, until: float, since: float = 1.0) -> None:
    """Probes come back every second from ``since`` up to ``until`` (the broker path works)."""
    t = since
    while t <= until:
        live.probe_back(t)
        t += 1.0


@pytest.mark.parametrize(
    ("heard_at", "probes_until", "now", "expired"),
    [
        # (last heartbeat, probes come back until, now) → offline?
        (0.0, 20.0, 20.0, ["w"]),  # silent past the lease, and we can hear: offline
        (15.0, 20.0, 20.0, []),  # within the lease
        (10.0, 20.0, 20.0, []),  # exactly at the lease: not yet
        (0.0, 12.0, 20.0, []),  # no probe for 8 s: we are deaf, silence proves nothing
        (0.0, 17.5, 20.0, ["w"]),  # the last probe 3 s ago (not past deaf_after): we hear
    ],
)
def test_who_expires(heard_at: float, probes_until: float, now: float, expired: list[str]) -> None:
    live = Liveness(LEASE, DEAF, now=0.0)
    live.heard("w", heard_at)
    probed(live, probes_until)
    assert live.expired(now) == expired
    assert live.expired(now) == []  # returned once, then forgotten


def test_leases_restart_when_the_broker_path_comes_back() -> None:
    live = Liveness(LEASE, DEAF, now=0.0)
    probed(live, 5.0)
    live.heard("w", 5.0)
    assert live.expired(30.0) == [] and live.deaf(30.0)  # 25 s without a probe
    assert live.probe_back(30.0) is True  # the gap ends: every lease starts again now
    assert live.expired(39.0) == []
    probed(live, 41.0, since=31.0)
    assert live.expired(40.5) == ["w"]
    assert live.probe_back(41.5) is False  # no gap


def test_a_goodbye_cannot_expire_and_a_remembered_worker_gets_one_lease() -> None:
    live = Liveness(LEASE, DEAF, now=0.0)
    live.heard("gone", 0.0)
    live.forget("gone")
    live.remember("known", 5.0)
    live.remember("known", 50.0)  # does not extend what it already has
    probed(live, 16.0)
    assert live.expired(16.0) == ["known"]
    assert "gone" not in live


class _Message(IncomingMessage):
    def __init__(self, body: bytes) -> None:
        super().__init__(body, "job.x", redelivered=False)

    async def _ack(self) -> None: ...

    async def _nack(self, requeue: bool) -> None: ...


def test_the_inbox_sorts_batches_and_drops_malformed_messages() -> None:
    now = datetime.now(UTC)
    job = uuid.uuid4()
    report = AttemptFinished(
        job_id=job,
        attempt=1,
        worker_id="w",
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now,
    )
    batch = pack([report.dumps(), JobsSubmitted(job_ids=[job]).dumps()])
    inbox = decode(
        [_Message(batch), _Message(b"{nonsense"), _Message(SchedulerProbe(sent=1.0).dumps())]
    )
    assert [f.job_id for f in inbox.finished] == [job]
    assert inbox.submitted == [job] and inbox.probed


def _event(job: uuid.UUID) -> tuple[str, bytes]:
    e = JobStatusEvent(
        job_id=job, status=JobStatus.READY, attempt=0, ts=datetime.now(UTC), job_type="noop"
    )
    return topology.status_key(job), e.dumps()


def _dispatch(worker: str) -> tuple[str, bytes]:
    job = uuid.uuid4()
    d = Dispatch(
        job_id=job,
        attempt=1,
        worker_id=worker,
        job_type="noop",
        name="n",
        payload={},
        cpu_units=1,
        memory_mb=1,
        dispatched_at=datetime.now(UTC),
    )
    return topology.dispatch_key(worker, job), d.dumps()


async def _broker() -> tuple[InMemoryBroker, list[str]]:
    broker = InMemoryBroker(exchange="t")
    await broker.connect()
    seen: list[str] = []

    async def on(message: IncomingMessage) -> None:
        seen.append(message.routing_key)
        await message.ack()

    await broker.consume(QueueSpec("sink", ("job.status.#", "job.dispatch.here.#")), on, prefetch=0)
    return broker, seen


async def test_status_events_are_held_for_the_linger_window_dispatches_are_not() -> None:
    broker, seen = await _broker()
    publisher = Publisher(broker, linger=0.2)
    task = asyncio.create_task(publisher.run())
    try:
        await publisher.put([_event(uuid.uuid4()), _dispatch("here")])
        await publisher.join()
        await asyncio.sleep(0.05)
        assert [k.split(".")[1] for k in seen] == ["dispatch"]  # the event waits
        await asyncio.sleep(0.3)
        assert len(seen) == 2 and seen[1].startswith("job.status")
    finally:
        task.cancel()


async def test_a_full_hold_goes_out_at_once() -> None:
    broker, seen = await _broker()
    publisher = Publisher(broker, linger=60.0)
    task = asyncio.create_task(publisher.run())
    try:
        await publisher.put([_event(uuid.uuid4()) for _ in range(EVENTS_HELD_MAX)])
        await publisher.join()
        await asyncio.sleep(0.05)
        assert seen  # not after the minute
    finally:
        task.cancel()


async def test_unroutable_dispatches_come_back_as_values() -> None:
    broker, _ = await _broker()
    woken: list[bool] = []
    publisher = Publisher(broker, linger=0.0, on_unrouted=lambda: woken.append(True))
    task = asyncio.create_task(publisher.run())
    try:
        routed, lost = _dispatch("here"), _dispatch("nowhere")
        await publisher.put([routed, lost])
        await publisher.join()
        unrouted = publisher.take_unrouted()
        assert [w for _, _, w in unrouted.first] == ["nowhere"] and not unrouted.republished
        assert woken and not publisher.take_unrouted()
    finally:
        task.cancel()


async def test_refused_dispatches_are_retried_before_anything_newer() -> None:
    broker, seen = await _broker()
    calls = 0
    real = broker.publish_many

    async def flaky(messages: object, *, mandatory: bool = False) -> None:
        nonlocal calls
        calls += 1
        if mandatory and calls <= 2:
            raise BrokerError("refused")
        await real(messages, mandatory=mandatory)  # type: ignore[arg-type]

    broker.publish_many = flaky  # type: ignore[method-assign]
    publisher = Publisher(broker, linger=0.0)
    task = asyncio.create_task(publisher.run())
    try:
        await publisher.put([_dispatch("here")])
        await asyncio.wait_for(publisher.join(), 5)
        assert [k.split(".")[1] for k in seen] == ["dispatch"]
    finally:
        task.cancel()
