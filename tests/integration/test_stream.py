"""``WS /jobs/stream`` on both backends: live logs, batch subscriptions in a valid order, slow
clients that cannot hurt the others, and close codes for bad filters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.stream import status_order
from models.enums import JobStatus
from models.messages import LogLine
from smartq import topology
from smartq.brokers.memory import InMemoryBroker
from smartq.runner import api_server
from smartq.settings import Settings
from tests.apikeys import suite_key
from tests.e2e.procs import free_port
from tests.system import System
from tests.wsclient import AsgiWebSocket, Closed

FINAL = {"completed", "failed", "cancelled"}


async def events_until(ws: AsgiWebSocket, done: Any, timeout: float = 20) -> list[dict[str, Any]]:
    """Receive events until ``done(events)`` is true."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(out):
        out.append(await ws.receive_json(max(0.1, deadline - time.monotonic())))
    return out


async def test_log_lines_arrive_live_in_order_then_are_stored(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    system.start_logger()
    async with system.stream("type=job.log&type=job.status") as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "stream.subscribed"
        job = await system.submit(type="drip", payload={"lines": 4, "every": 0.1})
        mine: list[dict[str, Any]] = []
        status_when_first_line = None
        while not any(e["type"] == "job.status" and e["status"] == "completed" for e in mine):
            event = await ws.receive_json()
            if event.get("job_id") != job["id"]:
                continue
            if event["type"] == "job.log" and status_when_first_line is None:
                status_when_first_line = (await system.job(job["id"]))["status"]
            mine.append(event)
    assert status_when_first_line == "running"
    lines = [e for e in mine if e["type"] == "job.log"]
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    drips = [e["message"] for e in lines if e["message"].startswith("drip")]
    assert drips == [f"drip {i} of 4" for i in range(1, 5)]
    # The same lines, stored by the logger, are then readable over REST.
    deadline = time.monotonic() + 5
    while True:
        stored = (await system.client.get(f"/jobs/{job['id']}/logs")).json()["lines"]
        if len(stored) >= len(lines) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [(s["seq"], s["message"]) for s in stored] == [(e["seq"], e["message"]) for e in lines]


def _check_order(events: list[dict[str, Any]]) -> None:
    """Statuses only move forward: pending → blocked → ready → running → (retrying → ready →
    running)* → final. Steps taken within one scheduling pass appear as one event (a job that
    becomes ready and is placed at once goes blocked → running)."""
    keys = [status_order(JobStatus(e["status"]), e["attempt"]) for e in events]
    assert all(a < b for a, b in itertools.pairwise(keys)), [
        (e["status"], e["attempt"]) for e in events
    ]


async def test_batch_subscriber_sees_every_change_in_a_valid_order(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    made = await system.batch(
        {"key": "a", "type": "hold", "payload": {"seconds": 0.4}},
        {"key": "b", "type": "log", "payload": {"lines": 2}, "depends_on": ["a"]},
        {
            "key": "c",
            "type": "flaky",
            "payload": {"fail_times": 1},
            "depends_on": ["a"],
            "retry": {"max_attempts": 2, "initial_delay_seconds": 0.1},
        },
        {"key": "d", "type": "noop", "depends_on": ["b", "c"]},
    )
    batch_id = made["a"]["batch_id"]
    ids = {j["id"]: k for k, j in made.items()}
    async with system.stream(f"batch_id={batch_id}") as ws:
        hello = await ws.receive_json()
        assert hello["filter"]["batch_ids"] == [batch_id]

        def all_final(events: list[dict[str, Any]]) -> bool:
            last = {e["job_id"]: e["status"] for e in events if e["type"] == "job.status"}
            return len(last) == 4 and set(last.values()) <= FINAL

        events = await events_until(ws, all_final)
    by_job: dict[str, list[dict[str, Any]]] = {k: [] for k in made}
    for e in events:
        assert e["job_id"] in ids  # nothing from outside the batch
        if e["type"] == "job.status":
            by_job[ids[e["job_id"]]].append(e)
    for job_events in by_job.values():
        _check_order(job_events)
        assert job_events[-1]["status"] == "completed"
    seen = {k: [(e["status"], e["attempt"]) for e in v] for k, v in by_job.items()}
    # b, c and d were blocked behind a when we subscribed: every change after that is there.
    assert seen["b"][-2:] == [("running", 1), ("completed", 1)]
    assert seen["c"][-4:] == [("running", 1), ("retrying", 1), ("running", 2), ("completed", 2)]
    assert seen["d"][0][0] in ("pending", "blocked")
    assert seen["d"][-2:] == [("running", 1), ("completed", 1)]
    first = {e["job_id"] for e in events if e.get("snapshot")}
    assert first == set(ids)  # each job's current status came first, from the database
    logs = [e["message"] for e in events if e["type"] == "job.log"]
    assert "line 1 of 2" in logs and "line 2 of 2" in logs  # log lines matched to the batch


async def test_subscribe_message_sends_current_status_then_changes(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    async with system.stream("type=job.status") as ws:
        await ws.receive_json()
        job = await system.submit(type="hold", payload={"seconds": 0.3})
        await ws.send_json({"action": "subscribe", "job_ids": [job["id"]]})
        reply = await ws.receive_json()
        assert reply["type"] == "stream.subscribed"
        assert reply["filter"] == {
            "job_ids": [job["id"]],
            "batch_ids": [],
            "statuses": [],
            "types": ["job.status"],  # kept: subscribe changes only what it names
        }
        events = await events_until(ws, lambda ev: ev and ev[-1]["status"] in FINAL)
        assert events[0]["snapshot"] is True
        assert {e["job_id"] for e in events} == {job["id"]}
        _check_order(events)
        assert events[-1]["status"] == "completed"
        await ws.send_json({"action": "ping"})
        assert (await ws.receive_json())["type"] == "stream.pong"


async def _publish_lines(system: System, job_id: uuid.UUID, first: int, count: int) -> None:
    now = datetime.now(UTC)
    messages = [
        (
            topology.logs_key(job_id),
            LogLine(
                job_id=job_id,
                attempt=1,
                seq=seq,
                level="info",
                message="x",
                ts=now,
                tenant="default",  # the tenant of the system's key
            ).dumps(),
        )
        for seq in range(first, first + count)
    ]
    await system.broker.publish_many(messages)


async def test_a_client_that_never_reads_does_not_hold_up_the_others(system: System) -> None:
    hub = system.hub
    hub.capacity, hub.stall_seconds = 300, 0.3
    job_id = uuid.uuid4()
    received: list[int] = []
    want = {"count": -1}
    got_all = asyncio.Event()
    async with system.stream("type=job.log&type=job.status") as fast:
        await fast.receive_json()

        async def read() -> None:
            while True:
                event = await fast.receive_json()
                assert event["type"] == "job.log", event  # never told it dropped anything
                received.append(event["seq"])
                if len(received) == want["count"]:
                    got_all.set()

        reader = asyncio.create_task(read())
        async with system.stream("type=job.log", max_queue=5) as slow:
            slow_client = next(c for c in hub.clients if c.filter.types == {"job.log"})
            sent, high = 0, 0
            deadline = time.monotonic() + 30
            while (slow.close_code is None or sent < 1000) and time.monotonic() < deadline:
                await _publish_lines(system, job_id, sent, 50)
                sent += 50
                await asyncio.sleep(0.005)
                high = max(high, len(slow_client.buffer))
            closed = await slow.closed()
        want["count"] = sent
        if len(received) == sent:
            got_all.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(got_all.wait(), 10)
        reader.cancel()
    assert closed.code == 4408 and "too slow" in closed.reason
    assert slow_client.missed_total > 0
    assert max(high, slow_client.high_water) <= hub.capacity + 1  # bounded, never more
    assert len(slow_client.buffer) == 0 and slow_client not in hub.clients
    assert received == list(range(sent))  # the reading client got everything, in order


async def test_batched_frames_carry_the_waiting_events_in_order(system: System) -> None:
    """``?frames=batched``: the lines of a burst come as arrays, none lost, in order; a lone
    event still comes as an object."""
    job_id = uuid.uuid4()
    async with system.stream("type=job.log&frames=batched") as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"  # alone: an object
        await _publish_lines(system, job_id, 0, 1_200)
        frames: list[Any] = []
        seqs: list[int] = []
        while len(seqs) < 1_200:
            frame = await ws.receive_json()
            frames.append(frame)
            seqs += [e["seq"] for e in (frame if isinstance(frame, list) else [frame])]
        await _publish_lines(system, job_id, 1_200, 1)
        lone = await ws.receive_json()
    assert seqs == list(range(1_200))
    assert any(isinstance(f, list) and len(f) > 1 for f in frames), [len(f) for f in frames]
    assert all(len(f) <= 500 for f in frames if isinstance(f, list))
    assert len(frames) < 1_200 / 2  # far fewer frames than lines
    assert isinstance(lone, dict) and lone["seq"] == 1_200


BAD = [
    ("status=bogus", None, 4400, "statuses"),
    ("type=job.nope", None, 4400, "types"),
    ("job_id=not-a-uuid", None, 4400, "job_ids"),
    ("colour=blue", None, 4400, "unknown query parameter 'colour'"),
    ("frames=many", None, 4400, "frames must be one of one, batched"),
    (f"job_id={uuid.UUID(int=7)}", None, 4404, "no job"),
    (f"batch_id={uuid.UUID(int=7)}", None, 4404, "no batch"),
    ("", "not json", 4400, ""),
    ("", '{"action": "subscribe", "types": ["nope"]}', 4400, "types"),
    ("", '{"action": "explode"}', 4400, "action"),
    ("", '{"action": "unsubscribe", "statuses": ["ready"]}', 4400, "unsubscribe"),
]


async def test_bad_filters_close_with_a_clear_code(system: System) -> None:
    for query, message, code, reason in BAD:
        async with system.stream(query) as ws:
            if message is not None:
                assert (await ws.receive_json())["type"] == "stream.subscribed"
                await ws.send_text(message)
            with pytest.raises(Closed) as info:
                await ws.receive_json(5)
        assert (info.value.code, query, message) == (code, query, message)
        assert reason in info.value.reason, (query, message, info.value.reason)


async def test_server_shutdown_closes_streams_with_1001(
    settings: Settings, engine: AsyncEngine, memory_broker: InMemoryBroker
) -> None:
    """Under the real server (uvicorn), which on its own closes WebSockets with 1012 before
    the app's shutdown runs: the README promises 1001. The client authenticates the way a
    browser must, with the key in a subprotocol, and the server answers ``smartq`` only."""
    key = await suite_key(engine)
    port = free_port()
    server = api_server(settings, "127.0.0.1", port, engine, memory_broker)
    serving = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and not serving.done(), "server did not start"
            await asyncio.sleep(0.02)
        protocols = [Subprotocol("smartq"), Subprotocol(f"smartq.bearer.{key.key}")]
        async with connect(f"ws://127.0.0.1:{port}/jobs/stream", subprotocols=protocols) as ws:
            assert ws.subprotocol == "smartq"
            assert orjson.loads(await ws.recv())["type"] == "stream.subscribed"
            server.should_exit = True
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1001,
            "server shutting down",
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
