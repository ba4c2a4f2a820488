"""The SDK against a real smartq on both backends: the whole system of tests/system.py (API,
scheduler, worker, logger on PostgreSQL + RabbitMQ, or on SQLite + the in-process broker) with
the API served by uvicorn on a loopback port, so both clients talk real HTTP and WebSocket.

The sync client runs in a thread (``asyncio.to_thread``): the server runs in the test's event
loop. Retries are checked against a tiny HTTP stub (503 then 201) and a proxy that drops the
first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import func, select

import smartq
from api.store import jobs as jobs_t
from models.enums import JobStatus
from smartq import keystore
from smartq.client import RetryPolicy, StatusEvent
from smartq.client.events import status_order
from smartq.keys import Scope
from tests.e2e.procs import free_port
from tests.jobs import hold
from tests.system import System

T = TypeVar("T")
pytestmark = pytest.mark.timeout(90)


@dataclass
class Served:
    """The system's API on a real port; ``restart`` stops and starts the server (the app, its
    hub and the other services go on)."""

    system: System
    url: str
    key: str
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]

    def client(self, key: str | None = None, **kwargs: Any) -> smartq.Client:
        return smartq.Client(self.url, key or self.key, **kwargs)

    def aclient(self, key: str | None = None) -> smartq.AsyncClient:
        return smartq.AsyncClient(self.url, key or self.key)

    async def stop_server(self) -> None:
        self.server.should_exit = True
        await self.task

    async def start_server(self) -> None:
        assert self.system.app is not None
        self.server, self.task = await _serve(self.system, self.port)


async def _serve(system: System, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    assert system.app is not None
    return await serve_app(system.app, port)


async def serve_app(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """``app`` (its lifespan already run) under uvicorn on ``port``, once it listens."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


@pytest.fixture
async def served(system: System) -> AsyncIterator[Served]:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("sdk-w1", cpu_units=4, memory_mb=4096)
    await system.wait_worker("sdk-w1")
    port = free_port()
    server, task = await _serve(system, port)
    url = f"http://127.0.0.1:{port}"
    s = Served(system, url, system.key, port, server, task)
    try:
        yield s
    finally:
        await s.stop_server()


def in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """The sync client blocks: run it off the loop that serves it."""
    return asyncio.ensure_future(asyncio.to_thread(fn))


# -- the sync client --------------------------------------------------------------------------


def _sync_outcomes(s: Served) -> None:
    with s.client() as client:
        done = client.submit(hold, {"seconds": 0.05})
        assert done.status in (JobStatus.PENDING, JobStatus.READY)
        assert done.result(timeout=30) == {"held": 0.05}
        assert done.status is JobStatus.COMPLETED

        failing = client.submit("flaky", {"fail_times": -1, "retryable": False})
        with pytest.raises(smartq.JobFailed) as failed:
            failing.result(timeout=30)
        assert failed.value.attempts == 1 and "flaky" in str(failed.value.error)

        later = client.submit("noop", run_at=_in(3600))
        assert "run_at" in str(later.explain())
        later.cancel()
        with pytest.raises(smartq.JobCancelled) as cancelled:
            later.result(timeout=30)
        assert cancelled.value.reason == "cancelled by user"
        with pytest.raises(smartq.Conflict):  # a finished job cannot be cancelled again
            later.cancel()


async def test_sync_submit_wait_and_the_three_outcomes(served: Served) -> None:
    await in_thread(lambda: _sync_outcomes(served))


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _sync_dag(s: Served) -> None:
    with s.client() as client:
        with client.batch(name="etl") as b:
            extract = b.add("log", {"lines": 3})
            clean = b.add(
                "flaky",
                {"fail_times": 1},
                after=[extract],
                retry={"max_attempts": 3, "initial_delay_seconds": 0.1},
            )
            load = b.add("noop", after=[extract, clean])
        assert b.id is not None and [j.key for j in b.jobs] == ["log", "flaky", "noop"]
        order = [job.key for job in b.as_completed(timeout=30)]
        assert order == ["log", "flaky", "noop"]  # each waits for the one before
        assert b.job(clean).result() is not None and b.job(clean).doc["attempts"] == 2
        assert b.job(load).status is JobStatus.COMPLETED
        report = b.wait(timeout=5)
        assert report.succeeded and report.totals["completed"] == 3 and report.name == "etl"


async def test_sync_batch_with_after_and_as_completed(served: Served) -> None:
    await in_thread(lambda: _sync_dag(served))


def _sync_logs(s: Served) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    with s.client() as client:
        job = client.submit("log", {"lines": 200})
        followed = [line.position for line in job.logs(follow=True)]
        assert job.status is JobStatus.COMPLETED
        stored = [line.position for line in job.logs()]
        return followed, stored


async def _async_logs(s: Served) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    async with s.aclient() as client:
        job = await client.submit("log", {"lines": 200})
        followed = [line.position async for line in job.logs(follow=True)]
        assert job.status is JobStatus.COMPLETED
        return followed, [line.position async for line in job.logs()]


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_logs_follow_gets_every_line(served: Served, face: str) -> None:
    """Needs the server's guarantee of issue 15: once a job's final status is visible, its
    lines are stored (the follower reads the rest with GET when the final status comes)."""
    if face == "sync":
        followed, stored = await in_thread(lambda: _sync_logs(served))
    else:
        followed, stored = await _async_logs(served)
    assert len(stored) >= 200
    assert followed == stored  # every stored line, once, in order


# -- the async client -------------------------------------------------------------------------


async def test_async_client_the_same_methods(served: Served) -> None:
    async with served.aclient() as client:
        job = await client.submit(hold, {"seconds": 0.05}, priority="high")
        assert await job.result(timeout=30) == {"held": 0.05}
        failing = await client.submit("flaky", {"fail_times": -1, "retryable": False})
        with pytest.raises(smartq.JobFailed):
            await failing.result(timeout=30)
        later = await client.submit("noop", run_at=_in(3600))
        await later.cancel()
        with pytest.raises(smartq.JobCancelled):
            await later.result(timeout=30)

        async with client.batch() as b:
            first = b.add("noop")
            b.add("noop", after=[first])
        keys = [j.key async for j in b.as_completed(timeout=30)]
        assert keys == ["noop", "noop.2"]
        assert (await b.report()).succeeded


async def test_async_retry_of_a_failed_job_runs_it_again(served: Served) -> None:
    async with served.aclient() as client:
        job = await client.submit("flaky", {"fail_times": 1}, retry=1)
        with pytest.raises(smartq.JobFailed):
            await job.result(timeout=30)
        await job.retry()
        assert job.status in (JobStatus.PENDING, JobStatus.READY)
        # The stream does not show a resubmitted job's new statuses (see the report): the
        # wait's read of a silent stream finds it completed.
        assert await job.result(timeout=30) == {"succeeded_on_attempt": 2}


# -- the stream -------------------------------------------------------------------------------


async def test_stream_reconnects_after_a_server_restart_and_loses_no_status(
    served: Served,
) -> None:
    async with served.aclient() as client:
        job = await client.submit(hold, {"seconds": 1.0})
        seen: list[StatusEvent] = []
        async with client.stream(job_id=job.id, types=["job.status"]) as stream:
            first = await stream.next(timeout=10)
            assert isinstance(first, StatusEvent)
            seen.append(first)
            await served.stop_server()  # the socket closes (1012); the job goes on
            await served.system.wait_final([str(job.id)])
            await served.start_server()
            while not seen[-1].is_final:
                event = await stream.next(timeout=20)
                assert isinstance(event, StatusEvent)
                seen.append(event)
        assert seen[-1].status is JobStatus.COMPLETED and seen[-1].snapshot
        orders = [status_order(e.status, e.attempt) for e in seen]
        assert orders == sorted(set(orders)), [e.status for e in seen]  # no repeat, no step back


async def test_a_wait_rides_out_a_server_restart(served: Served) -> None:
    async with served.aclient() as client:
        job = await client.submit(hold, {"seconds": 0.5})
        waiting = asyncio.ensure_future(job.wait(timeout=60))
        await asyncio.sleep(0.2)
        await served.stop_server()
        await served.system.wait_final([str(job.id)])
        await asyncio.sleep(2.5)  # past a silent stream's check: the read finds no server
        await served.start_server()
        assert (await waiting).status is JobStatus.COMPLETED
        assert await job.result() == {"held": 0.5}


def _sync_stream(s: Served) -> list[str]:
    with s.client() as client:
        with client.batch() as b:
            for _ in range(5):
                b.add("noop")
        finals: set[uuid.UUID] = set()
        kinds = []
        with client.stream(batch_id=b.id) as stream:
            for event in stream:
                kinds.append(event.type)
                if isinstance(event, StatusEvent) and event.is_final:
                    finals.add(event.job_id)
                if len(finals) == 5:
                    break
        assert finals == {j.id for j in b.jobs}
        return kinds


async def test_sync_stream_of_a_batch(served: Served) -> None:
    kinds = await in_thread(lambda: _sync_stream(served))
    assert "job.status" in kinds


# -- lists and errors -------------------------------------------------------------------------


async def test_jobs_iterates_past_one_page(served: Served) -> None:
    async with served.aclient() as client:
        made = await client.submit_many([{"type": "noop", "run_at": _in(3600)}] * 7)
        batch_id = made[0].batch_id
        listed = [j.id async for j in client.jobs(batch_id=batch_id, page_size=3)]
        assert sorted(listed) == sorted(j.id for j in made)
        blocked = [j async for j in client.jobs(status="blocked", type="noop", page_size=2)]
        assert len(blocked) >= 7


async def test_errors_are_mapped(served: Served) -> None:
    engine = served.system.engine
    async with engine.connect() as conn:
        reader = (await keystore.create_key(conn, tenant="default", scopes={Scope.READ})).key
    async with served.aclient() as client:
        with pytest.raises(smartq.NotFound) as missing:
            await client.job(uuid.uuid4())
        assert missing.value.status == 404 and "no job" in missing.value.message
        with pytest.raises(smartq.APIError) as invalid:
            await client.submit("noop", priority="urgent")
        assert invalid.value.status == 422 and "priority" in invalid.value.message
        with pytest.raises(smartq.NotFound):  # a stream of an unknown job: closed 4404
            async with client.stream(job_id=uuid.uuid4()) as stream:
                await stream.next(timeout=10)
    async with served.aclient(key="sq_nope_nope") as bad:
        with pytest.raises(smartq.Unauthorized) as refused:
            await bad.submit("noop")
        assert refused.value.status == 401
        with pytest.raises(smartq.Unauthorized):
            async with bad.stream() as stream:
                await stream.next(timeout=10)
    async with served.aclient(key=reader) as read_only:
        with pytest.raises(smartq.Forbidden) as forbidden:
            await read_only.submit("noop")
        assert forbidden.value.status == 403


async def test_a_retried_submit_makes_one_job(served: Served) -> None:
    """The first answer is lost (the connection drops after the server stored the job); the
    client sends the same request again, with the same idempotency key, and gets that job."""

    def submit(via: str) -> smartq.client.Job:
        with smartq.Client(via, served.key) as client:
            return client.submit("noop", {"n": 1}, run_at=_in(3600))

    with _dropping_proxy(served.url) as (proxy_url, forwarded):
        job = await in_thread(lambda: submit(proxy_url))
    assert uuid.UUID(job.doc["idempotency_key"])  # made by the client
    assert forwarded[0] == 2  # the lost answer and the retry
    async with served.system.engine.connect() as conn:
        count = (
            select(func.count())
            .select_from(jobs_t)
            .where(jobs_t.c.idempotency_key == job.doc["idempotency_key"])
        )
        assert (await conn.execute(count)).scalar_one() == 1


# -- retries against a stub -------------------------------------------------------------------

_DOC = {"id": str(uuid.uuid4()), "status": "pending", "type": "noop", "attempts": 0}


@contextlib.contextmanager
def _http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _stub(
    answers: list[tuple[int, dict[str, str], dict[str, Any]]],
) -> Iterator[tuple[str, list[Any]]]:
    """An HTTP server answering each request with the next of ``answers``; yields its URL and
    the requests it got (method, path, body, time)."""
    got: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            got.append((self.command, self.path, self.rfile.read(length), time.monotonic()))
            status, headers, body = answers[min(len(got), len(answers)) - 1]
            data = orjson.dumps(body)
            self.send_response(status)
            for k, v in {**headers, "content-length": str(len(data))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with _http_server(Handler) as url:
        yield url, got


def test_a_503_is_retried_after_its_retry_after() -> None:
    busy = (503, {"Retry-After": "1"}, {"error": "the database is unavailable", "detail": None})
    with _stub([busy, (201, {}, _DOC)]) as (url, got), smartq.Client(url) as client:
        job = client.submit("noop")
    assert str(job.id) == _DOC["id"]
    assert len(got) == 2 and got[0][2] == got[1][2]  # the same body: the same idempotency key
    assert got[1][3] - got[0][3] >= 1.0


def test_retries_are_bounded() -> None:
    busy = (503, {}, {"error": "busy", "detail": None})
    quick = RetryPolicy(attempts=3, base_delay=0.01)
    with _stub([busy]) as (url, got), smartq.Client(url, retry=quick) as client:
        with pytest.raises(smartq.Unavailable) as failed:
            client.job(_DOC["id"])
        assert failed.value.status == 503 and failed.value.message == "busy"
        assert len(got) == 3


def test_a_post_without_an_idempotency_key_is_not_retried() -> None:
    busy = (503, {}, {"error": "busy", "detail": None})
    with _stub([busy]) as (url, got), smartq.Client(url) as client:
        failed = smartq.client.Job(client, {**_DOC, "status": "failed"})
        with pytest.raises(smartq.Unavailable):
            failed.retry()  # POST /jobs/{id}/retry takes no idempotency key
        assert len(got) == 1


def test_429_gives_retry_after_and_a_dead_port_is_unreachable() -> None:
    limited = (429, {"Retry-After": "0"}, {"error": "slow down", "detail": None})
    twice = RetryPolicy(attempts=2, base_delay=0.01)
    with _stub([limited]) as (url, got), smartq.Client(url, retry=twice) as client:
        with pytest.raises(smartq.RateLimited) as error:
            client.submit("noop")
        assert error.value.retry_after == 0 and len(got) == 2
    dead = f"http://127.0.0.1:{_closed_port()}"
    with smartq.Client(dead, retry=twice) as client, pytest.raises(smartq.Unreachable):
        client.job(_DOC["id"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _dropping_proxy(target: str) -> Iterator[tuple[str, list[int]]]:
    """A proxy to ``target`` that forwards every request but drops the first answer (closes
    the connection without a word); yields its URL and a counter of forwarded requests."""
    forwarded = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            answer = httpx.post(target + self.path, content=body, headers=headers)
            forwarded[0] += 1
            if forwarded[0] == 1:
                self.close_connection = True
                return
            self.send_response(answer.status_code)
            self.send_header("content-length", str(len(answer.content)))
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: Any) -> None:
            pass

    with _http_server(Handler) as url:
        yield url, forwarded


async def test_children_and_parent_through_both_clients(served: Served) -> None:
    async with served.aclient() as client:
        parent = await client.submit("fan_out", {"n": 3})
        assert (await parent.result(timeout=30))["children"] == 3
        kids = [k async for k in parent.children()]
        assert len(kids) == 4 and {k.parent_id for k in kids} == {parent.id}
        then = next(k for k in kids if k.type == "fan_in")
        assert await then.result(timeout=30) == {"gathered": 3}

    def sync_side() -> list[str]:
        with served.client() as sync:
            return sorted(k.type for k in sync.job(parent.id).children())

    assert await in_thread(sync_side) == ["fan_in", "hold", "hold", "hold"]
