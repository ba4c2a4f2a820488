"""Messages nobody waits on are gathered: a worker's log lines and the scheduler's status events
of jobs that end close together travel in one message, and none is lost on the way (nor when
the scheduler stops with events still held)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from models.messages import unpack
from smartq.broker import IncomingMessage
from smartq.topology import QueueSpec
from tests.system import System

JOBS = 8


class Tap:
    """Every message routed to ``job.logs.#`` and ``job.status.#``, as (routing key, items)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[dict[str, object]]]] = []

    async def __call__(self, message: IncomingMessage) -> None:
        self.messages.append((message.routing_key, list(unpack(message.body))))
        await message.ack()

    def of(self, prefix: str) -> list[list[dict[str, object]]]:
        return [items for key, items in self.messages if key.startswith(prefix)]


@pytest.fixture
async def tap(system: System) -> AsyncIterator[Tap]:
    spec = QueueSpec(
        f"tap-{uuid.uuid4().hex[:10]}",
        ("job.logs.#", "job.status.#"),
        durable=False,
        auto_delete=True,
    )
    found = Tap()
    consumer = await system.broker.consume(spec, found, prefetch=1_000)
    try:
        yield found
    finally:
        await consumer.cancel()


async def staggered_jobs(system: System) -> list[str]:
    """``JOBS`` sleep jobs ending 30 ms apart on one worker that runs them all at once."""
    jobs = await system.batch(
        *({"key": f"j{i}", "type": "sleep", "payload": {"seconds": 0.03 * i}} for i in range(JOBS))
    )
    ids = [j["id"] for j in jobs.values()]
    await system.wait_final(ids)
    return ids


async def test_lines_and_events_of_jobs_ending_close_together_share_messages(
    system: System, tap: Tap
) -> None:
    system.settings.worker_log_flush_seconds = 0.5
    system.settings.scheduler_event_flush_seconds = 0.5
    system.start_scheduler()
    system.start_worker("w1", cpu_units=JOBS)
    ids = await staggered_jobs(system)
    await asyncio.sleep(1.5)  # both flush windows have passed

    log_messages = tap.of("job.logs.")
    lines = Counter(str(item["job_id"]) for items in log_messages for item in items)
    assert set(lines) == set(ids) and all(n >= 2 for n in lines.values())  # start + end each
    status_messages = tap.of("job.status.")
    completed = {
        str(item["job_id"])
        for items in status_messages
        for item in items
        if item["status"] == "completed"
    }
    assert completed == set(ids)
    # Ends 30 ms apart: one message per job without gathering; a few with 0.5 s windows.
    assert len(log_messages) <= 3, [len(m) for m in log_messages]
    assert len(status_messages) <= 3, [len(m) for m in status_messages]


async def test_no_gathering_sends_each_end_on_its_own(system: System, tap: Tap) -> None:
    system.settings.worker_log_flush_seconds = 0
    system.settings.scheduler_event_flush_seconds = 0
    system.start_scheduler()
    system.start_worker("w1", cpu_units=JOBS)
    await staggered_jobs(system)
    await asyncio.sleep(0.5)
    assert len(tap.of("job.logs.")) >= JOBS - 1
    assert len(tap.of("job.status.")) >= JOBS - 1


async def test_a_stopping_scheduler_sends_the_events_it_holds(system: System, tap: Tap) -> None:
    system.settings.scheduler_event_flush_seconds = 60
    system.start_scheduler()
    system.start_worker("w1")
    job = await system.submit()
    await system.wait_final([job["id"]])
    assert not tap.of("job.status."), "held for 60 s"
    await system.stop("scheduler")
    await asyncio.sleep(0.3)
    statuses = [item["status"] for items in tap.of("job.status.") for item in items]
    assert statuses[-1] == "completed", statuses


async def test_a_flood_is_not_held_and_a_stopping_worker_sends_what_it_holds(
    system: System, tap: Tap
) -> None:
    system.settings.worker_log_flush_seconds = 30  # far longer than the test may take
    system.start_scheduler()
    system.start_worker("w1")
    job = await system.submit(type="log", payload={"lines": 1_000})
    await system.wait_final([job["id"]])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    lines = 0
    while lines < 800 and loop.time() < deadline:
        await asyncio.sleep(0.05)
        lines = sum(len(items) for items in tap.of("job.logs."))
    assert lines >= 800, f"{lines} of 1,002 lines published within 3 s"  # full batches at once
    started = loop.time()
    await system.stop_worker("w1")
    assert loop.time() - started < 5  # not the 10 s drain limit, nor the 30 s window
    await asyncio.sleep(0.3)
    assert sum(len(items) for items in tap.of("job.logs.")) == 1_002  # start, 1,000, end
