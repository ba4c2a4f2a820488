"""The stream hub without a socket: filters, bounded buffers, ordering fences."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from api.metrics import Metrics
from api.stream import (
    CLOSE_TOO_SLOW,
    Command,
    EventKeys,
    StreamClient,
    StreamFilter,
    StreamHub,
    command_from_query,
    status_order,
)
from models.enums import JobStatus
from models.messages import JobStatusEvent, LogLine, StreamEvent
from models.monitoring import QueueMonitor
from smartq.brokers.memory import InMemoryBroker
from smartq.errors import StreamRequestError

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
        (JobStatus.CANCELLED, 2),  # an end carries the attempts made, like every event
        (JobStatus.RUNNING, 3),  # resubmitted (POST /jobs/{id}/retry): a new life
        (JobStatus.COMPLETED, 3),
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
    f = StreamFilter().with_command(Command.model_validate({"action": "set", **cmd})).filter
    assert f.matches(event, batch_of) is matches  # type: ignore[arg-type]


def test_subscribe_adds_unsubscribe_removes_set_replaces() -> None:
    f, jobs, batches = StreamFilter().with_command(
        Command(action="subscribe", job_ids=[J1], types=["job.status"])
    )
    assert (jobs, batches) == ([J1], [])
    f, jobs, batches = f.with_command(Command(action="subscribe", job_ids=[J1, J2]))
    assert (jobs, batches) == ([J2], [])
    assert f.job_ids == {J1, J2} and f.types == {"job.status"}
    f = f.with_command(Command(action="unsubscribe", job_ids=[J1])).filter
    assert f.job_ids == {J2}
    f = f.with_command(Command(action="set", batch_ids=[B1])).filter
    assert (f.job_ids, f.batch_ids, f.types) == (set(), {B1}, frozenset())


def test_query_parameters() -> None:
    cmd = command_from_query([("job_id", str(J1)), ("job_id", str(J2)), ("status", "ready")])
    assert cmd.job_ids == [J1, J2] and cmd.statuses == [JobStatus.READY]
    with pytest.raises(StreamRequestError, match="unknown query parameter"):
        command_from_query([("jobid", str(J1))])
    with pytest.raises(StreamRequestError, match="types"):
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


# The hub's index: it must never miss a client whose filter matches (it may offer more
# candidates; the filter check decides).


def make_hub() -> StreamHub:
    return StreamHub(InMemoryBroker(), Metrics(), capacity=100_000)


def watch(
    hub: StreamHub,
    client: StreamClient,
    action: str = "set",
    batches: dict[uuid.UUID, list[uuid.UUID]] | None = None,
    **cmd: Any,
) -> None:
    """Change a client's filter the way the socket session does: the command, then the jobs of
    the batches it newly watches, read from the database."""
    batches = batches or {}
    if batches:
        cmd["batch_ids"] = list(batches)
    change = client.filter.with_command(Command.model_validate({"action": action, **cmd}))
    hub.refilter(client, change.filter)
    if change.new_batches:
        hub.refilter(
            client, client.filter.with_batches({b: batches[b] for b in change.new_batches})
        )


def received(client: StreamClient) -> list[str]:
    return [text for text, _ in client.buffer]


def send(hub: StreamHub, event: StreamEvent) -> str:
    text = event.dumps().decode()
    hub.dispatch(text.encode())
    return text


A, B = uuid.UUID(int=200), uuid.UUID(int=300)
A_JOBS = [uuid.UUID(int=201), uuid.UUID(int=202)]
B_JOBS = [uuid.UUID(int=301), uuid.UUID(int=302)]


def test_a_client_moved_from_batch_a_to_batch_b_gets_b_and_no_longer_a() -> None:
    hub = make_hub()
    client = hub.connect()
    watch(hub, client, batches={A: A_JOBS})
    got_a = send(hub, status(A_JOBS[0], JobStatus.RUNNING, batch=A))
    send(hub, status(B_JOBS[0], JobStatus.RUNNING, batch=B))
    assert received(client) == [got_a]
    watch(hub, client, batches={B: B_JOBS})
    send(hub, status(A_JOBS[1], JobStatus.RUNNING, batch=A))
    send(hub, line(A_JOBS[0]))  # the hub knows A_JOBS[0] is in A
    b_status = send(hub, status(B_JOBS[1], JobStatus.RUNNING, batch=B))
    b_line = send(hub, line(B_JOBS[0]))  # the hub knows B_JOBS[0] is in B
    assert received(client) == [got_a, b_status, b_line]
    # The index itself moved: A's events no longer even reach the client's filter check.
    assert client not in hub.index.candidates(_keys(status(A_JOBS[1], JobStatus.READY, batch=A)))
    assert client in hub.index.candidates(_keys(status(B_JOBS[1], JobStatus.READY, batch=B)))
    watch(hub, client, "unsubscribe", batch_ids=[B])  # now every job again
    anything = send(hub, line(uuid.UUID(int=999)))
    assert received(client)[-1] == anything


def test_a_batch_job_matches_before_the_hub_learns_its_batch() -> None:
    hub = make_hub()
    client = hub.connect()
    watch(hub, client, batches={A: A_JOBS})
    first_line = send(hub, line(A_JOBS[1]))  # no status event yet: batch unknown to the hub
    no_batch = send(hub, status(A_JOBS[1], JobStatus.CANCELLED, attempt=0))  # names no batch
    send(hub, line(B_JOBS[0]))
    assert received(client) == [first_line, no_batch]


def test_job_subscribe_and_unsubscribe_move_a_client_in_the_index() -> None:
    hub = make_hub()
    client = hub.connect()
    watch(hub, client, job_ids=[J1])
    watch(hub, client, "subscribe", job_ids=[J2])
    one, two = send(hub, line(J1)), send(hub, line(J2))
    watch(hub, client, "unsubscribe", job_ids=[J1])
    send(hub, line(J1, 1))
    three = send(hub, line(J2, 1))
    assert received(client) == [one, two, three]


def test_a_filter_change_is_a_new_filter_and_the_hub_routes_by_it() -> None:
    hub = make_hub()
    client = hub.connect()
    watch(hub, client, job_ids=[J1])
    old = client.filter
    was = (old.describe(), old.index_keys())
    change = old.with_command(Command(action="subscribe", job_ids=[J2], batch_ids=[A]))
    with_a = change.filter.with_batches({A: A_JOBS})
    assert (change.new_jobs, change.new_batches) == ([J2], [A])
    assert (old.describe(), old.index_keys()) == was and not old.batch_jobs
    assert change.filter.job_ids == {J1, J2} and not change.filter.batch_jobs
    assert with_a.batch_jobs == {A: frozenset(A_JOBS)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.job_ids = frozenset()  # type: ignore[misc]
    assert client not in hub.index.candidates(_keys(line(J2)))  # filed under J1 only
    hub.refilter(client, with_a)
    # Only the index can know J2 and A_JOBS[1] now (the hub learns no batch from a log line).
    got = [send(hub, line(J1)), send(hub, line(J2)), send(hub, line(A_JOBS[1]))]
    assert received(client) == got


def test_unkeyed_clients_get_everything_their_filter_matches() -> None:
    hub = make_hub()
    everything, finals, logs, monitoring, jobs_and_monitoring = (hub.connect() for _ in range(5))
    watch(hub, everything)
    watch(hub, finals, statuses=["completed", "failed"])
    watch(hub, logs, types=["job.log"])
    watch(hub, monitoring, types=["monitoring"])
    watch(hub, jobs_and_monitoring, job_ids=[J1], types=["job.log", "monitoring.queue"])
    ready = send(hub, status(J1, JobStatus.READY, batch=B1))
    done = send(hub, status(J1, JobStatus.COMPLETED, batch=B1))
    log = send(hub, line(J2))
    j1_log = send(hub, line(J1))
    queue = send(hub, QUEUE)
    assert received(everything) == [ready, done, log, j1_log, queue]
    assert received(finals) == [done, log, j1_log, queue]  # statuses filter status events only
    assert received(logs) == [log, j1_log]
    assert received(monitoring) == [queue]
    assert received(jobs_and_monitoring) == [j1_log, queue]


def test_a_tenants_client_gets_its_tenants_events_whatever_its_filter_says() -> None:
    hub = make_hub()
    acme = hub.connect(StreamFilter(tenant="acme", monitor=False))
    acme_logs = hub.connect(StreamFilter(tenant="acme", monitor=True))
    admin = hub.connect()
    watch(hub, acme_logs, types=["job.log", "monitoring"])
    watch(hub, acme)  # a "set" keeps the tenant and the monitoring right of the connection
    assert (acme.filter.tenant, acme.filter.monitor) == ("acme", False)
    mine = send(hub, status(J1, JobStatus.RUNNING).model_copy(update={"tenant": "acme"}))
    theirs = send(hub, status(J2, JobStatus.RUNNING).model_copy(update={"tenant": "bravo"}))
    untold = send(hub, status(uuid.UUID(int=3), JobStatus.RUNNING))  # an older sender
    my_line = send(hub, line(J1).model_copy(update={"tenant": "acme"}))
    their_line = send(hub, line(J2).model_copy(update={"tenant": "bravo"}))
    queue = send(hub, QUEUE)
    assert received(acme) == [mine, my_line]  # no monitoring: it may not see it
    assert received(acme_logs) == [my_line, queue]
    assert received(admin) == [mine, theirs, untold, my_line, their_line, queue]
    with pytest.raises(StreamRequestError) as refused:
        acme.filter.with_command(Command(action="subscribe", types=["monitoring.queue"]))
    assert refused.value.kind == StreamRequestError.FORBIDDEN
    # naming another tenant's job changes nothing: the API refuses it first (4404), and the
    # filter would not pass its events anyway
    watch(hub, acme, job_ids=[J2])
    send(hub, status(J2, JobStatus.COMPLETED).model_copy(update={"tenant": "bravo"}))
    assert received(acme) == [mine, my_line]


def test_disconnect_removes_the_client_from_the_index() -> None:
    hub = make_hub()
    clients = [hub.connect() for _ in range(3)]
    watch(hub, clients[0], batches={A: A_JOBS})
    watch(hub, clients[1], job_ids=[J1])
    watch(hub, clients[2], statuses=["running"])
    for client in clients:
        hub.disconnect(client)
    assert len(hub.index) == 0 and not hub.clients
    assert hub.index.candidates(_keys(status(A_JOBS[0], JobStatus.RUNNING, batch=A))) == set()
    watch(hub, clients[1], job_ids=[J2])  # a late change from a closing session: not re-indexed
    send(hub, status(J2, JobStatus.RUNNING))
    assert not any(c.buffer for c in clients) and len(hub.index) == 0


def _keys(event: StreamEvent) -> EventKeys:
    return EventKeys.of(event, {})


class RandomWorld:
    """Batches of jobs, jobs in no batch, and random filters and events over them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.batches = {
            uuid.UUID(int=1000 + b): [uuid.UUID(int=1000 * b + j) for j in range(1, 6)]
            for b in range(1, 5)
        }
        loose = [uuid.UUID(int=50 + j) for j in range(4)]
        self.jobs = [j for js in self.batches.values() for j in js] + loose
        self.batch_of = {j: b for b, js in self.batches.items() for j in js}

    def change_filter(self, hub: StreamHub, client: StreamClient) -> None:
        rng, cmd = self.rng, {}
        picked: dict[uuid.UUID, list[uuid.UUID]] = {}
        if rng.random() < 0.4:
            cmd["job_ids"] = rng.sample(self.jobs, rng.randint(1, 3))
        if rng.random() < 0.4:
            picked = {b: self.batches[b] for b in rng.sample(list(self.batches), rng.randint(1, 2))}
        if rng.random() < 0.3:
            cmd["statuses"] = rng.sample([s.value for s in JobStatus], 2)
        if rng.random() < 0.3:
            cmd["types"] = rng.sample(
                ["job.status", "job.log", "monitoring", "monitoring.queue"], 2
            )
        action = rng.choice(["set", "set", "subscribe", "unsubscribe"])
        if action == "unsubscribe":
            ids = {"job_ids": cmd.get("job_ids", []), "batch_ids": list(picked)}
            watch(hub, client, "unsubscribe", **ids)
        else:
            watch(hub, client, action, picked, **cmd)

    def event(self) -> StreamEvent:
        rng = self.rng
        job, roll = rng.choice(self.jobs), rng.random()
        if roll < 0.1:
            return QUEUE
        if roll < 0.5:
            return line(job, rng.randint(0, 10**6))
        named = self.batch_of.get(job) if rng.random() < 0.8 else None  # some name no batch
        attempt = rng.randint(0, 10**6)  # mostly newer than the job's last status
        return status(job, rng.choice([JobStatus.RUNNING, JobStatus.READY]), attempt, named)


def test_index_agrees_with_checking_every_filter() -> None:
    """Random filters, changed and disconnected along the way, against random events: each
    client gets exactly what checking its filter against every event would give it."""
    world = RandomWorld(seed=6)
    hub = make_hub()
    clients = [hub.connect() for _ in range(40)]
    expected: dict[StreamClient, list[str]] = {c: [] for c in clients}
    for client in clients:
        world.change_filter(hub, client)
    for step in range(3_000):
        if step % 50 == 0:
            world.change_filter(hub, world.rng.choice(clients))
        if step % 400 == 0:
            gone = clients.pop(world.rng.randrange(len(clients)))
            hub.disconnect(gone)
        event = world.event()
        before = hub.events
        text = send(hub, event)
        if hub.events == before:  # a stale status: nobody gets it
            continue
        for client in clients:  # the check the hub used to make for every client
            if client.filter.matches(event, hub.batch_of):
                expected[client].append(text)
    assert sum(len(expected[c]) for c in clients) > 3_000
    for client in clients:
        assert received(client) == expected[client], client.filter.describe()


def test_an_event_checks_only_the_filters_of_its_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 clients, 10 per batch: an event of one batch is checked against those 10."""
    hub = make_hub()
    batches = {
        uuid.UUID(int=10_000 + b): [uuid.UUID(int=100_000 + 10 * b + j) for j in range(10)]
        for b in range(100)
    }
    clients = [hub.connect() for _ in range(1_000)]
    order = list(batches)
    for i, client in enumerate(clients):
        b = order[i % len(order)]
        watch(hub, client, batches={b: batches[b]})
    calls = {"n": 0}
    accepts = StreamFilter.accepts

    def counting(self: StreamFilter, keys: EventKeys) -> bool:
        calls["n"] += 1
        return accepts(self, keys)

    monkeypatch.setattr(StreamFilter, "accepts", counting)
    batch = order[7]
    job = batches[batch][3]
    send(hub, status(job, JobStatus.RUNNING, batch=batch))
    send(hub, line(job))
    send(hub, status(job, JobStatus.COMPLETED))  # names no batch: found by job
    assert calls["n"] <= 3 * 10
    got = [c for c in clients if c.buffer]
    assert len(got) == 10 and all(len(c.buffer) == 3 for c in got)
    assert all(c.filter.batch_ids == {batch} for c in got)


def test_a_job_resubmitted_after_failing_is_followed_again() -> None:
    """POST /jobs/{id}/retry runs a failed job again under higher attempt numbers: its new
    statuses must pass the hub (they were dropped as older than 'failed')."""
    hub = make_hub()
    client = hub.connect()
    watch(hub, client, job_ids=[J1])
    sent = [
        send(hub, status(J1, JobStatus.RUNNING, 1)),
        send(hub, status(J1, JobStatus.FAILED, 1)),
    ]
    send(hub, status(J1, JobStatus.RUNNING, 1))  # a late duplicate: still dropped
    sent += [
        send(hub, status(J1, JobStatus.RUNNING, 2)),
        send(hub, status(J1, JobStatus.COMPLETED, 2)),
    ]
    assert received(client) == sent
    assert status_order(JobStatus.FAILED, 1) < status_order(JobStatus.RUNNING, 2)
    assert status_order(JobStatus.RETRYING, 1) < status_order(JobStatus.FAILED, 1)
    assert status_order(JobStatus.READY, 0) < status_order(JobStatus.CANCELLED, 0)
