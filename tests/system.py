"""A whole smartq — API, scheduler, workers, logger — inside the test's event loop, on either
backend: ``servers`` (real PostgreSQL + RabbitMQ, with an exchange and queues of its own) or
``embedded`` (SQLite + the in-process broker). The processes are the real services; only the
process boundary is missing (tests/e2e starts real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.store import attempts_t, jobs
from api.stream import StreamHub
from logger.service import LogStore
from models.enums import FINAL_STATUSES
from scheduler.resources import Offer
from scheduler.service import SchedulerService
from smartq import keystore, topology
from smartq.broker import Broker, declare_shared_queues
from smartq.brokers.memory import InMemoryBroker
from smartq.brokers.rabbitmq import RabbitMQBroker
from smartq.db import create_async
from smartq.keys import Scope
from smartq.registry import Registry, registry
from smartq.settings import Settings
from tests.wsclient import AsgiWebSocket
from worker.service import WorkerService

FAST = {
    "scheduler_poll_seconds": 0.5,
    "heartbeat_seconds": 0.2,
    "worker_lease_seconds": 2.0,
    "shutdown_grace_seconds": 2.0,
    "log_batch_seconds": 0.02,
    "monitor_seconds": 0.2,
    # Most tests run no logger: workers then report at once, as they did before they waited
    # for the logger's confirmation. start_logger() puts the production wait back.
    "worker_log_wait_seconds": 0.0,
    # Tests of other things run types that always fail (``flaky``) many times a minute: the
    # default breaker would rightly hold them. Breakers are tested with their own policies
    # (tests/e2e/flowjobs.py) or by overriding this.
    "breaker_min_attempts": 1_000_000,
}


@dataclass
class Part:
    task: asyncio.Task[None]
    stop: asyncio.Event


@dataclass
class System:
    settings: Settings
    engine: AsyncEngine
    broker: Broker
    client: httpx.AsyncClient
    parts: dict[str, Part] = field(default_factory=dict)
    workers: dict[str, WorkerService] = field(default_factory=dict)
    scheduler: SchedulerService | None = None
    logger: LogStore | None = None
    app: FastAPI | None = None
    #: The key ``client`` and ``stream`` present (tenant ``default``, every scope).
    key: str = ""

    @property
    def hub(self) -> StreamHub:
        assert self.app is not None
        hub: StreamHub = self.app.state.ctx.hub
        return hub

    def stream(self, query: str = "", max_queue: int = 0) -> AsgiWebSocket:
        """A client of ``WS /jobs/stream`` (``async with system.stream("job_id=…") as ws``)."""
        assert self.app is not None
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else None
        return AsgiWebSocket(self.app, "/jobs/stream", query, max_queue, headers=headers)

    def _start(self, name: str, run: Any) -> None:
        stop = asyncio.Event()
        self.parts[name] = Part(asyncio.create_task(run(stop), name=name), stop)

    async def stop(self, name: str) -> None:
        part = self.parts.pop(name)
        part.stop.set()
        await asyncio.wait_for(part.task, 30)

    def start_scheduler(self) -> SchedulerService:
        self.scheduler = SchedulerService(self.settings, self.engine, self.broker)
        self._start("scheduler", self.scheduler.run)
        return self.scheduler

    def start_logger(self) -> LogStore:
        """The logger; from now on workers hold each attempt's report until it confirms the
        attempt's lines stored, as in production (the setting is read at each report)."""
        default = Settings.model_fields["worker_log_wait_seconds"].default
        self.settings.worker_log_wait_seconds = default
        self.logger = LogStore(self.settings, self.engine, self.broker)
        self._start("logger", self.logger.run)
        return self.logger

    def start_worker(
        self,
        worker_id: str,
        cpu_units: int = 4,
        memory_mb: int = 4096,
        job_registry: Registry | None = None,
        offer: Offer | None = None,
    ) -> WorkerService:
        w = WorkerService(
            self.settings,
            self.broker,
            job_registry or registry,
            worker_id=worker_id,
            cpu_units=cpu_units,
            memory_mb=memory_mb,
            offer=offer,
        )
        self.workers[worker_id] = w
        self._start(f"worker:{worker_id}", w.run)
        return w

    async def wait_worker(self, worker_id: str, timeout: float = 10) -> dict[str, Any]:
        """Until ``GET /workers`` shows the worker online (the scheduler heard it)."""
        deadline = time.monotonic() + timeout
        while True:
            for w in (await self.client.get("/workers")).json():
                if w["id"] == worker_id and w["state"] != "offline":
                    return dict(w)
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {worker_id} not online after {timeout}s")
            await asyncio.sleep(0.05)

    async def admin(self) -> httpx.AsyncClient:
        """A client of the API with a new admin key (of tenant ``ops``); close it after use."""
        async with self.engine.connect() as conn:
            key = (await keystore.create_key(conn, tenant="ops", scopes=(), admin=True)).key
        assert self.app is not None
        transport = httpx.ASGITransport(app=self.app)
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.AsyncClient(transport=transport, base_url="http://smartq", headers=headers)

    async def stop_worker(self, worker_id: str) -> None:
        await self.stop(f"worker:{worker_id}")

    async def submit(self, **body: Any) -> dict[str, Any]:
        body.setdefault("type", "noop")
        r = await self.client.post("/jobs", json=body)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    async def batch(self, *specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Submit a batch; returns its jobs by key."""
        r = await self.client.post("/jobs/batch", json={"jobs": list(specs)})
        assert r.status_code == 201, r.text
        return {j["key"]: j for j in r.json()["jobs"]}

    async def job(self, job_id: str) -> dict[str, Any]:
        return dict((await self.client.get(f"/jobs/{job_id}")).json())

    async def wait_final(self, ids: list[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Wait until every job is completed, failed or cancelled; return them."""
        wanted = [uuid.UUID(i) for i in ids]
        deadline = time.monotonic() + timeout
        finals = {s.value for s in FINAL_STATUSES}
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    (await conn.execute(select(jobs).where(jobs.c.id.in_(wanted)))).mappings().all()
                )
            if len(rows) == len(wanted) and all(r["status"] in finals for r in rows):
                return {str(r["id"]): dict(r) for r in rows}
            if time.monotonic() > deadline:
                late = {str(r["id"]): r["status"] for r in rows if r["status"] not in finals}
                raise AssertionError(f"jobs not final after {timeout}s: {late}")
            await asyncio.sleep(0.05)

    async def wait_status(self, job_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] == status:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['status']}, not {status}")
            await asyncio.sleep(0.05)

    async def attempts(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(attempts_t))
            return [dict(r) for r in rows.mappings()]


async def _cleanup_rabbitmq(broker: RabbitMQBroker, workers: list[str]) -> None:
    x = broker.exchange
    names = [topology.scheduler_queue(x).name, topology.logger_queue(x).name]
    names += [topology.worker_queue(w, x).name for w in workers]
    for name in names:
        with contextlib.suppress(Exception):
            await broker.delete_queue(name)
    with contextlib.suppress(Exception):
        await broker.delete_exchange()


@contextlib.asynccontextmanager
async def running_system(
    kind: str, database_url: str, rabbitmq_url: str | None, **overrides: Any
) -> AsyncIterator[System]:
    """A system with nothing started yet; start the parts the test needs."""
    exchange = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        database_url=database_url,
        broker_url=rabbitmq_url if kind == "servers" else None,
        broker_exchange=exchange,
        **{"auth": "on", **FAST, **overrides},
    )
    engine = create_async(database_url)
    broker: Broker = (
        RabbitMQBroker(rabbitmq_url, exchange=exchange)
        if kind == "servers" and rabbitmq_url
        else InMemoryBroker(exchange=exchange)
    )
    await broker.connect()
    # As every process's runner does: lines and reports published before the logger or the
    # scheduler first ran wait in their queues (a test starting the logger late saw its first
    # lines dropped by an exchange with no queue bound, and never got their confirmation).
    await declare_shared_queues(broker)
    app = create_app(settings, engine=engine, broker=broker, job_registry=registry)
    system: System | None = None
    try:
        async with engine.connect() as conn:
            key = (await keystore.create_key(conn, tenant="default", scopes=set(Scope))).key
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://smartq", headers=headers
            ) as client:
                system = System(settings, engine, broker, client, app=app, key=key)
                try:
                    yield system
                finally:
                    for name in list(system.parts):
                        with contextlib.suppress(Exception):
                            await system.stop(name)
    finally:
        if isinstance(broker, RabbitMQBroker):
            await _cleanup_rabbitmq(broker, list(system.workers) if system else [])
        await broker.close()
        await engine.dispose()


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Poll ``check`` every 0.1 s until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (got := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return got
