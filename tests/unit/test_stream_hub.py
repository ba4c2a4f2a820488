"""The stream hub without a socket: filters, bounded buffers, ordering fences."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from api.metrics import Metrics
from api.stream import (
    CLOSE_TOO_SLOW,
    Command,
    FilterError,
    StreamClient,
    StreamFilter,
    StreamHub,
    command_from_query,
    status_order,
)
from models.enums import JobStatus
from models.messages import JobStatusEvent, LogLine, QueueMonitor
from smartq.brokers.memory import InMemoryBroker

NOW = datetime(2025, 1, 1, tzinfo=UTC)
J1, J2, B1 = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=100)


def status(job: uuid.UUID, s: JobStatus, attempt: int = 1, batch: uuid.UUID | None = None):
    return JobStatusEvent(job_id=job, status=s, attempt=attempt, ts=NOW, batch_id=batch)


def line(job: uuid.UUID, seq: int = 0) -> LogLine:
    return LogLine(job_id=job, attempt=1, seq=seq, level="info", message="m", ts=NOW)


QUEUE = QueueMonitor(
    ts=NOW, jobs_by_status={}, ready_by_priority={}, oldest_ready_wait_seconds=None
)


def test_statuses_only_move_forward() -> None:
    walk = [
        (JobStatus.PENDING, 0),
        (JobStatus.BLOCKED, 0),
        (JobStatus.READY, 0),
        (JobStatus.RUNNING, 1),
        (JobStatus.RETRYING, 1),
        (JobStatus.READY, 1),
        (JobStatus.RUNNING, 2),
        (JobStatus.CANCELLED, 0),  # the API's cancel events carry attempt 0
    ]
    keys = [status_order(s, a) for s, a in walk]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("cmd", "event", "batch_of", "matches"),
    [
        ({}, QUEUE, {}, True),
        ({}, line(J1), {}, True),
        ({"job_ids": [J1]}, QUEUE, {}, False),  # naming jobs implies job events only
        ({"job_ids": [J1], "types": ["monitoring"]}, QUEUE, {}, True),
        ({"job_ids": [J1]}, status(J2, JobStatus.READY), {}, False),
        ({"job_ids": [J1]}, status(J1, JobStatus.READY), {}, True),
        ({"batch_ids": [B1]}, status(J2, JobStatus.READY, batch=B1), {}, True),
        ({"batch_ids": [B1]}, line(J2), {J2: B1}, True),  # job → batch learnt by the hub
        ({"batch_ids": [B1]}, line(J2), {}, False),
        ({"statuses": ["completed"]}, status(J1, JobStatus.READY), {}, False),
        ({"statuses": ["completed"]}, line(J1), {}, True),  # statuses filter status events
        ({"types": ["job.log"]}, status(J1, JobStatus.READY), {}, False),
    ],
)
def test_filter(cmd: dict, event: object, batch_of: dict, matches: bool) -> None:
    f = StreamFilter()
    f.apply(Command.model_validate({"action": "set", **cmd}))
    assert f.matches(event, batch_of) is matches  # type: ignore[arg-type]


def test_subscribe_adds_unsubscribe_removes_set_replaces() -> None:
    f = StreamFilter()
    assert f.apply(Command(action="subscribe", job_ids=[J1], types=["job.status"])) == ([J1], [])
    assert f.apply(Command(action="subscribe", job_ids=[J1, J2])) == ([J2], [])
    assert f.job_ids == {J1, J2} and f.types == {"job.status"}
    f.apply(Command(action="unsubscribe", job_ids=[J1]))
    assert f.job_ids == {J2}
    f.apply(Command(action="set", batch_ids=[B1]))
    assert (f.job_ids, f.batch_ids, f.types) == (set(), {B1}, frozenset())


def test_query_parameters() -> None:
    cmd = command_from_query([("job_id", str(J1)), ("job_id", str(J2)), ("status", "ready")])
    assert cmd.job_ids == [J1, J2] and cmd.statuses == [JobStatus.READY]
    with pytest.raises(FilterError, match="unknown query parameter"):
        command_from_query([("jobid", str(J1))])
    with pytest.raises(FilterError, match="types"):
        command_from_query([("type", "everything")])


async def test_a_full_buffer_drops_counts_and_says_so() -> None:
    client = StreamClient(capacity=3, stall_seconds=60)
    for seq in range(10):
        client.offer(f"e{seq}", line(J1, seq))
    assert len(client.buffer) == 3 and client.missed == 7
    assert [await client.next() for _ in range(3)] == ["e0", "e1", "e2"]
    client.offer("e10", line(J1, 10))
    assert await client.next() == '{"type":"stream.dropped","missed":7}'
    assert await client.next() == "e10"
    assert client.high_water <= 4


def test_a_client_dropping_for_too_long_is_closed() -> None:
    client = StreamClient(capacity=1, stall_seconds=0.0)
    for seq in range(3):
        client.offer("e", line(J1, seq))
    assert client.close_code == CLOSE_TOO_SLOW and client.closed.is_set()
    assert not client.buffer


async def test_snapshot_goes_first_and_fences_older_buffered_events() -> None:
    client = StreamClient(capacity=10, stall_seconds=60)
    client.offer("running", status(J1, JobStatus.RUNNING))
    client.offer("log", line(J1))
    client.snapshot(status(J1, JobStatus.COMPLETED).model_copy(update={"snapshot": True}), {})
    client.offer("completed-live", status(J1, JobStatus.COMPLETED))
    first = await client.next()
    assert '"snapshot":true' in first and '"completed"' in first
    assert await client.next() == "log"  # the stale "running" is skipped
    client.offer("after", line(J1, 1))
    assert await client.next() == "after"  # and so is the duplicate "completed"


async def test_hub_drops_duplicate_and_stale_status_events() -> None:
    broker = InMemoryBroker()
    await broker.connect()
    metrics = Metrics()
    hub = StreamHub(broker, metrics)
    client = hub.connect()
    hub.dispatch(status(J1, JobStatus.CANCELLED, attempt=0).dumps())
    hub.dispatch(status(J1, JobStatus.READY, attempt=0).dumps())  # overtaken: dropped
    hub.dispatch(status(J1, JobStatus.CANCELLED, attempt=0).dumps())  # redelivered: dropped
    hub.dispatch(b"{not json")
    assert len(client.buffer) == 1
    assert b'smartq_jobs_cancelled_total{type="unknown"} 1.0' in metrics.render()
    await broker.close()
