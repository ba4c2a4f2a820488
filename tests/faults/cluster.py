"""A smartq of real processes for fault injection: ``smartq api|scheduler|worker|logger`` as
subprocesses (started as tests/e2e/procs.py does) on a database and an exchange of the test's
own, with the knobs a fault test needs (short leases, per-process settings, kill -9).

The API requires keys, as in production: the cluster makes one for the test to present
(:attr:`Cluster.headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg

from smartq import keystore, topology
from smartq.brokers.rabbitmq import RabbitMQBroker
from smartq.db import create_async
from smartq.keys import Scope
from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.e2e.procs import ROOT, Procs, free_port, wait_ready
from tests.faults.jobs import SIDE_EFFECTS_DDL, SIDE_EFFECTS_URL_ENV
from tests.services import require_rabbitmq

T = TypeVar("T")

#: Settings every process of a fault test runs with: a worker that stops heartbeating is
#: declared offline after ``LEASE_SECONDS``; the scheduler and the logger react quickly.
LEASE_SECONDS = 3.0
FAST_ENV = {
    "SMARTQ_IMPORTS": "tests.faults.jobs",
    "SMARTQ_HEARTBEAT_SECONDS": "0.5",
    "SMARTQ_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
    "SMARTQ_SCHEDULER_POLL_SECONDS": "0.5",
    "SMARTQ_SHUTDOWN_GRACE_SECONDS": "2",
    "SMARTQ_MONITOR_SECONDS": "0.5",
    "SMARTQ_LOG_BATCH_SECONDS": "0.02",
    "SMARTQ_LOG_LEVEL": "INFO",
    # Faults lose many attempts at once (a worker killed under load), and the default breaker
    # would rightly hold their type for its cool-down; the flow-control tests set policies per
    # type (tests/e2e/flowjobs.py).
    "SMARTQ_BREAKER_MIN_ATTEMPTS": "1000000",
}
FINAL = ("completed", "failed", "cancelled")
#: The tenant the cluster's key acts for.
TENANT = "faults"


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop in its own thread: callable from sync tests and from
    inside a running loop alike."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=target, name="faults-aio")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


class Stopwatch:
    """Phase durations of a scenario, printed with its counts (``pytest -s``)."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def mark(self, phase: str) -> float:
        now = time.monotonic()
        self.phases.append((phase, now - self.last))
        self.last = now
        return self.phases[-1][1]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {took:.1f}s" for name, took in self.phases)
        return f"{shown} (total {time.monotonic() - self.began:.1f}s)"


class FaultProcs(Procs):
    """:class:`Procs` whose processes may each add settings of their own."""

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.logdir / f"{name}.log").open("wb") as log:  # the child keeps its own fd
            proc = subprocess.Popen(
                [sys.executable, "-m", "smartq.cli", *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = proc
        return proc


def wait_for(check: Any, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``check()`` until true; returns the seconds it took, fails after ``timeout``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - began


@dataclass
class Cluster:
    """The processes of one test, its database (``db_url``) and its exchange."""

    db_url: str
    rabbit_url: str
    exchange: str
    procs: FaultProcs
    port: int = field(default_factory=free_port)
    workers: list[str] = field(default_factory=list)
    #: What every request of the test sends: a key of one tenant (not an admin's, so the
    #: tenant checks run under every fault) with every scope.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- processes ------------------------------------------------------------------------
    def boot(self, workers: dict[str, int], *, scheduler: bool = True, logger: bool = True) -> None:
        """Start the API, the scheduler, the logger and ``workers`` (id → cpu_units) at once
        (each process spends seconds importing), then wait until all are up."""
        self.start_api(wait=False)
        if scheduler:
            self.start_scheduler()
        if logger:
            self.start_logger()
        for worker_id, cpu_units in workers.items():
            self.start_worker(worker_id, cpu_units, wait=False)
        wait_ready(self.base, timeout=90)
        for worker_id in workers:
            self.wait_worker(worker_id)

    def start_api(self, *, wait: bool = True) -> None:
        self.procs.start("api", "api", "--port", str(self.port))
        if wait:
            wait_ready(self.base, timeout=90)

    def start_scheduler(self) -> None:
        self.procs.start("scheduler", "scheduler")

    def start_logger(self, name: str = "logger", **env: str) -> None:
        self.procs.start(name, "logger", env=env)

    def start_worker(
        self, worker_id: str, cpu_units: int, memory_mb: int = 65_536, *, wait: bool = True
    ) -> None:
        """Start a worker; with ``wait``, until the scheduler has seen its first heartbeat."""
        self.workers.append(worker_id)
        args = ("--cpu-units", str(cpu_units), "--memory-mb", str(memory_mb))
        self.procs.start(worker_id, "worker", *args, "--worker-id", worker_id)
        if wait:
            self.wait_worker(worker_id)

    def wait_worker(self, worker_id: str) -> None:
        """Until the scheduler has taken the worker's heartbeat (it is then placeable)."""
        sql = "SELECT count(*) FROM workers WHERE id = %s AND state <> 'offline'"
        self.wait_for(
            lambda: self.scalar(sql, (worker_id,)) == 1,
            timeout=90,
            what=f"worker {worker_id} online",
        )

    def kill(self, name: str) -> None:
        """``kill -9``: no drain, no goodbye, unacked messages go back to their queues."""
        proc = self.procs.running.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def freeze(self, name: str) -> None:
        """SIGSTOP: the process stops mid-step, its TCP connections stay open (the kernel
        still answers for them), as in a long GC pause, a frozen VM or a stalled network path."""
        self.procs.running[name].send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.procs.running[name].send_signal(signal.SIGCONT)

    def terminate(self, name: str, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the process took to exit."""
        began = time.monotonic()
        code = self.procs.stop(name, signal.SIGTERM, timeout=timeout)
        return code, time.monotonic() - began

    def alive(self, name: str) -> bool:
        proc = self.procs.running.get(name)
        return proc is not None and proc.poll() is None

    def log_problems(self) -> list[str]:
        """Error-level records of smartq's own loggers, anything mentioning a deadlock, and
        plain-text tracebacks (a crash) in every process's output.

        The AMQP client libraries' own error records (aiormq, aio_pika) are left out: they log
        a dropped connection at error level even when smartq recovers from it; the counts of
        :mod:`tests.faults.checker` judge whether anything was lost."""
        found: list[str] = []
        for path in sorted(self.procs.logdir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    bad = "Traceback" in line or "deadlock" in line.lower()
                else:
                    ours = not str(record.get("logger", "")).startswith(("aiormq", "aio_pika"))
                    error = record.get("level") in ("ERROR", "CRITICAL")
                    bad = (ours and error) or "deadlock" in line.lower()
                if bad:
                    found.append(f"{path.stem}: {line[:300]}")
        return found

    # -- the database ---------------------------------------------------------------------
    def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, row_factory=psycopg.rows.dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Any = None) -> Any:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

    def statuses(self, ids: list[str]) -> dict[str, str]:
        rows = self.rows("SELECT id::text, status FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))
        return {r["id"]: r["status"] for r in rows}

    @staticmethod
    def wait_for(check: Any, timeout: float, what: str, every: float = 0.05) -> float:
        return wait_for(check, timeout, what, every)

    # -- the API --------------------------------------------------------------------------
    def create_key(self, *, tenant: str = TENANT, admin: bool = False) -> str:
        """A new key with every scope, written to the database as ``smartq keys create``
        does."""

        async def create() -> str:
            engine = create_async(self.db_url, pool_size=1)
            try:
                async with engine.connect() as conn:
                    new = await keystore.create_key(
                        conn, tenant=tenant, scopes=set(Scope), admin=admin, label="faults"
                    )
                    return new.key
            finally:
                await engine.dispose()

        return run_coroutine(create())

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client on the API that presents the cluster's key."""
        return httpx.Client(base_url=self.base, headers=self.headers, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """The same, for asyncio."""
        return httpx.AsyncClient(base_url=self.base, headers=self.headers, **kwargs)

    def submit_batch(self, jobs: list[dict[str, Any]]) -> list[str]:
        r = httpx.post(
            f"{self.base}/jobs/batch", json={"jobs": jobs}, headers=self.headers, timeout=60
        )
        assert r.status_code == 201, r.text
        return [j["id"] for j in r.json()["jobs"]]

    # -- RabbitMQ -------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        x = self.exchange
        names = [topology.scheduler_queue(x).name, topology.logger_queue(x).name]
        return names + [topology.worker_queue(w, x).name for w in self.workers]

    def delete_queues(self) -> None:
        async def delete() -> None:
            broker = RabbitMQBroker(self.rabbit_url, exchange=self.exchange)
            await broker.connect()
            try:
                for name in self.queue_names():
                    with contextlib.suppress(Exception):
                        await broker.delete_queue(name)
                with contextlib.suppress(Exception):
                    await broker.delete_exchange()
            finally:
                await broker.close()

        run_coroutine(delete())


@contextlib.contextmanager
def cluster(dbs: PostgresDatabases, logdir: Path, **env: str) -> Iterator[Cluster]:
    """A database (with the ``side_effects`` table) and an exchange of their own; nothing
    started yet. Afterwards every process is stopped, the queues and the database dropped."""
    rabbit = require_rabbitmq()
    url = dbs.create()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SIDE_EFFECTS_DDL)
    exchange = f"f{uuid.uuid4().hex[:10]}"
    base_env = {
        "SMARTQ_DATABASE_URL": url,
        "SMARTQ_BROKER_URL": rabbit,
        "SMARTQ_BROKER_EXCHANGE": exchange,
        SIDE_EFFECTS_URL_ENV: url,
        **FAST_ENV,
        **env,
    }
    procs = FaultProcs(base_env, logdir)
    c = Cluster(db_url=url, rabbit_url=rabbit, exchange=exchange, procs=procs)
    try:
        c.headers = bearer(c.create_key())
        yield c
    finally:
        try:
            _stop_all(procs)
            c.delete_queues()
        finally:
            dbs.drop(url)


def _stop_all(procs: Procs, timeout: float = 10) -> None:
    """SIGTERM every process at once, then wait (SIGKILL after ``timeout``)."""
    running = list(procs.running.values())
    procs.running.clear()
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
