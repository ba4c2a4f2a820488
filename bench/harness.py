"""Start smartq as a user would, against real PostgreSQL and RabbitMQ, and count what it costs.

A :class:`Stack` owns, for one benchmark:

* a fresh database ``smartq_bench_<token>`` (created, ``smartq migrate``-d, dropped at the end);
* an API key of the tenant ``bench`` with every scope (``smartq keys create``), which every
  request and WebSocket handshake presents (:attr:`Stack.headers`): keys are checked, as in
  production, and a tenant's key (not an admin's) also runs the tenant checks;
* a fresh exchange ``smartq_bench_<token>`` (so every queue smartq declares is named under it)
  and the queues deleted at the end;
* the processes, started with the ``smartq`` command as subprocesses (``api``, ``scheduler``,
  ``worker --cpu-units N --memory-mb M``, ``logger``), ready once ``GET /readyz`` answers 200,
  the scheduler knows the worker (its row in ``workers``) and the logger consumes its queue;
  stopped with SIGTERM, then SIGKILL after a grace period;
* the counters, from :meth:`Stack.mark` to the end:

  - PostgreSQL transactions: ``xact_commit``/``xact_rollback`` of the bench database in
    ``pg_stat_database``, read after the processes exited (a backend flushes its statistics
    at exit; an idle one may hold them for up to 10 s), minus the harness's own queries;
  - AMQP messages by kind: RabbitMQ keeps no per-exchange publish counters without its
    management plugin, so the harness binds one *tap* queue per kind of routing key
    (``job.dispatch.#``, ``job.report.#``...) to the exchange and purges it every second,
    adding up what each purge dropped. A tap is non-durable and unconsumed: it costs RabbitMQ
    one in-memory enqueue per message, and a status event or log line that no queue wanted
    (no WebSocket client yet) still counts, as smartq did publish it;
  - CPU time per smartq process (psutil, user + system, children included), of the database
    backends serving the bench database, and of RabbitMQ (``beam.smp``, machine-wide: other
    users of the broker count too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import psutil
import psycopg
from psycopg.rows import TupleRow
from sqlalchemy.engine import make_url

from bench.http import Connection
from models.enums import ACTIVE_STATUSES
from smartq import topology

PG_URL = os.environ.get(
    "SMARTQ_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("SMARTQ_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
SMARTQ = str(Path(sys.executable).with_name("smartq"))
ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATUSES))
#: Any active job? Spelled like the partial index ``ix_jobs_active`` so it is the one used.
ACTIVE_ONE = "SELECT 1 FROM jobs WHERE status IN ({}) LIMIT 1".format(
    ", ".join(f"'{s}'" for s in ACTIVE)
)

#: One tap queue per kind of message: name suffix → binding key.
TAPS = {
    "submitted": topology.JOB_SUBMITTED,
    "cancel_requested": topology.JOB_CANCEL_REQUESTED,
    "dispatch": "job.dispatch.#",
    "cancel": "job.cancel.#",
    "report": "job.report.#",
    "status": "job.status.#",
    "logs": "job.logs.#",
    "heartbeat": "worker.heartbeat.#",
    "monitoring": "job.monitoring.#",
}
ALL_PARTS = ("api", "scheduler", "worker", "logger")
SCOPES = "submit,read,cancel,monitor"
#: Fast enough shutdown for a benchmark; quiet logs.
BASE_ENV = {
    "SMARTQ_LOG_LEVEL": "WARNING",
    "SMARTQ_LOG_FORMAT": "text",
    "SMARTQ_SHUTDOWN_GRACE_SECONDS": "2",
}


class HarnessError(Exception):
    pass


# -- databases ------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return str(make_url(url).database)


def admin() -> psycopg.Connection[TupleRow]:
    """An autocommit connection to the maintenance database."""
    return psycopg.connect(psycopg_dsn(PG_URL), autocommit=True)


def psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(token: str) -> str:
    name = f"smartq_bench_{token}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(PG_URL, name)


def drop_database(url: str) -> None:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


def xacts(url: str) -> tuple[int, int]:
    """(commits, rollbacks) of the database, as PostgreSQL's statistics have them now."""
    with admin() as conn:
        row = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database_name(url),),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def smartq_env(db_url: str, exchange: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTQ_")}
    env.update(BASE_ENV)
    env.update(
        SMARTQ_DATABASE_URL=db_url, SMARTQ_BROKER_URL=AMQP_URL, SMARTQ_BROKER_EXCHANGE=exchange
    )
    env.update(extra or {})
    return env


def run_smartq(env: dict[str, str], *args: str) -> str:
    """Run ``smartq ARGS`` to its end; its standard output."""
    done = subprocess.run(
        [SMARTQ, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise HarnessError(f"smartq {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def migrate(env: dict[str, str]) -> None:
    run_smartq(env, "migrate")


def create_key(env: dict[str, str]) -> str:
    """A key of the tenant ``bench`` with every scope, made as an operator makes one."""
    made = run_smartq(env, "keys", "create", "--tenant", "bench", "--scope", SCOPES, "-o", "json")
    key: str = json.loads(made)["key"]
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ms(proc: psutil.Process) -> float:
    """User + system CPU of a process and its waited-for children, in ms (0 once gone)."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + t.children_user + t.children_system) * 1000


def rabbit_process() -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    return None


# -- costs ----------------------------------------------------------------------------------


@dataclass
class Costs:
    """What the stack spent between :meth:`Stack.mark` and the end."""

    commits: int = 0
    rollbacks: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def per_job(self, jobs: int) -> dict[str, Any]:
        n = max(jobs, 1)
        return {
            "jobs": jobs,
            "pg_transactions": round((self.commits + self.rollbacks) / n, 3),
            "pg_commits": round(self.commits / n, 3),
            "pg_rollbacks": round(self.rollbacks / n, 3),
            "amqp_messages": round(sum(self.messages.values()) / n, 3),
            "amqp_by_kind": {k: round(v / n, 3) for k, v in sorted(self.messages.items()) if v},
            "cpu_ms": {k: round(v / n, 3) for k, v in self.cpu_ms.items()},
            "window_seconds": round(self.seconds, 2),
        }


# -- the stack ------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    ps: psutil.Process
    log: Path


class Stack:
    """A running smartq (see the module docstring). Use ``async with Stack(...) as stack``."""

    def __init__(
        self,
        parts: tuple[str, ...] = ALL_PARTS,
        *,
        worker_units: int = 64,
        worker_memory_mb: int = 65_536,
        env: dict[str, str] | None = None,
        taps: bool = True,
    ) -> None:
        self.parts = parts
        self.worker_units = worker_units
        self.worker_memory_mb = worker_memory_mb
        self.token = uuid.uuid4().hex[:10]
        self.exchange = f"smartq_bench_{self.token}"
        self.worker_id = f"bench-{self.token}"
        self.port = free_port()
        self.extra_env = env or {}
        self.use_taps = taps
        self.workdir = Path(tempfile.mkdtemp(prefix="smartq-bench-"))
        self.db_url = ""
        self.env: dict[str, str] = {}
        #: What every request sends: ``Authorization: Bearer <the stack's key>``.
        self.headers: dict[str, str] = {}
        self.procs: dict[str, Proc] = {}
        self.db: psycopg.AsyncConnection[TupleRow] | None = None
        self.queries = 0
        self.costs = Costs()
        self._amqp: aio_pika.abc.AbstractConnection | None = None
        self._taps: dict[str, aio_pika.abc.AbstractQueue] = {}
        self._tapper: asyncio.Task[None] | None = None
        self._mark: dict[str, Any] = {}
        self._mark_backends = 0.0
        self._failed = False

    # -- life cycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            self._failed = True
            await self._stop()
            raise
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        self._failed = self._failed or exc_type is not None
        await self._stop()

    async def _start(self) -> None:
        self.db_url = create_database(self.token)
        self.env = smartq_env(self.db_url, self.exchange, self.extra_env)
        await asyncio.to_thread(migrate, self.env)
        key = await asyncio.to_thread(create_key, self.env)
        self.headers = {"Authorization": f"Bearer {key}"}
        self.db = await psycopg.AsyncConnection.connect(psycopg_dsn(self.db_url), autocommit=True)
        self._amqp = await aio_pika.connect(AMQP_URL)
        if self.use_taps:
            await self._declare_taps()
        for part in self.parts:
            self._spawn(part)
        await self.wait_ready()
        await self.mark()

    def _command(self, part: str) -> list[str]:
        if part == "api":
            return [SMARTQ, "api", "--port", str(self.port)]
        if part == "worker":
            return [
                SMARTQ,
                "worker",
                "--cpu-units",
                str(self.worker_units),
                "--memory-mb",
                str(self.worker_memory_mb),
                "--worker-id",
                self.worker_id,
            ]
        return [SMARTQ, part]

    def _spawn(self, part: str) -> None:
        log = self.workdir / f"{part}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                self._command(part), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs[part] = Proc(part, popen, psutil.Process(popen.pid), log)

    def check_alive(self) -> None:
        for proc in self.procs.values():
            code = proc.popen.poll()
            if code is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise HarnessError(f"smartq {proc.name} exited with {code}:\n{tail}")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        checks = [self._api_ready, self._worker_known, self._logger_consuming]
        for check in checks:
            while not await check():
                self.check_alive()
                if time.monotonic() > deadline:
                    raise HarnessError(f"not ready after {timeout}s ({check.__name__})")
                await asyncio.sleep(0.1)

    async def _api_ready(self) -> bool:
        if "api" not in self.procs:
            return True
        conn = self.http()
        try:
            status, _ = await conn.request("GET", "/readyz", timeout=5)
        except (OSError, TimeoutError):
            return False
        finally:
            await conn.close()
        return status == 200

    async def _worker_known(self) -> bool:
        if "worker" not in self.procs or "scheduler" not in self.procs:
            return True
        rows = await self.fetch("SELECT count(*) FROM workers WHERE state <> 'offline'")
        return bool(rows[0][0])

    async def _logger_consuming(self) -> bool:
        if "logger" not in self.procs:
            return True
        assert self._amqp is not None
        channel = await self._amqp.channel()
        try:
            queue = await channel.declare_queue(
                topology.logger_queue(self.exchange).name, passive=True
            )
            result = queue.declaration_result
            return bool(result.consumer_count)
        except aio_pika.exceptions.ChannelClosed:
            return False
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    def http(self) -> Connection:
        return Connection("127.0.0.1", self.port, self.headers)

    async def fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one query on the harness's connection (counted apart from smartq's)."""
        assert self.db is not None
        self.queries += 1
        cur = await self.db.execute(sql, params)
        return await cur.fetchall()

    # -- counters -----------------------------------------------------------------------------
    async def _declare_taps(self) -> None:
        assert self._amqp is not None
        channel = await self._amqp.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for kind, key in TAPS.items():
            queue = await channel.declare_queue(f"{self.exchange}.bench.tap.{kind}", durable=False)
            await queue.bind(exchange, key)
            self._taps[kind] = queue
        self._tapper = asyncio.create_task(self._drain_taps())

    async def _purge_taps(self) -> None:
        for kind, queue in self._taps.items():
            result = await queue.purge()
            self.costs.messages[kind] += int(result.message_count or 0)

    async def _drain_taps(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._purge_taps()

    def _cpu(self) -> dict[str, float]:
        out = {name: cpu_ms(p.ps) for name, p in self.procs.items()}
        rabbit = rabbit_process()
        if rabbit is not None:
            out["rabbitmq"] = cpu_ms(rabbit)
        return out

    async def _backend_cpu(self) -> float:
        """CPU of the database's backends, harness excluded (they live as long as the pools)."""
        rows = await self.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        total = 0.0
        for (pid,) in rows:
            with contextlib.suppress(psutil.Error):
                total += cpu_ms(psutil.Process(pid))
        return total

    async def cpu_now(self) -> dict[str, float]:
        """CPU-ms so far of each smartq process, the database's backends and RabbitMQ."""
        return {**self._cpu(), "postgres": await self._backend_cpu()}

    async def mark(self) -> None:
        """Start counting from now (start-up and readiness checks are left out)."""
        self._mark_backends = await self._backend_cpu()
        self._mark = {
            "t": time.perf_counter(),
            "cpu": self._cpu(),
            "xacts": xacts(self.db_url),
            "queries": self.queries,
            "messages": Counter(self.costs.messages),
        }

    async def _finish_costs(self) -> None:
        """CPU before the processes stop; transactions after (backends flush at exit)."""
        self.costs.seconds = time.perf_counter() - self._mark["t"]
        now = self._cpu()
        cpu = {k: v - self._mark["cpu"].get(k, 0.0) for k, v in now.items() if k != "rabbitmq"}
        with contextlib.suppress(psycopg.Error):
            cpu["postgres"] = await self._backend_cpu() - self._mark_backends
        if "rabbitmq" in now:
            cpu["rabbitmq"] = now["rabbitmq"] - self._mark["cpu"].get("rabbitmq", 0.0)
        self.costs.cpu_ms = cpu
        if self._taps:
            await self._purge_taps()
        self.costs.messages = Counter(
            {k: v - self._mark["messages"].get(k, 0) for k, v in self.costs.messages.items()}
        )

    async def _stop(self) -> None:
        if self._mark and not self._failed:
            with contextlib.suppress(Exception):
                await self._finish_costs()
        if self._tapper is not None:
            self._tapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tapper
        await asyncio.to_thread(self._terminate)
        if self.db is not None:
            await self.db.close()
        if self._mark and self.db_url and not self._failed:
            commits, rollbacks = xacts(self.db_url)
            own = self.queries - self._mark["queries"]
            self.costs.commits = commits - self._mark["xacts"][0] - own
            self.costs.rollbacks = rollbacks - self._mark["xacts"][1]
        await self._delete_queues()
        if self.db_url:
            drop_database(self.db_url)
        if self._failed:
            print(f"smartq bench: process logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()

    async def _delete_queues(self) -> None:
        if self._amqp is None:
            return
        names = [
            topology.scheduler_queue(self.exchange).name,
            topology.logger_queue(self.exchange).name,
            topology.worker_queue(self.worker_id, self.exchange).name,
            *(f"{self.exchange}.bench.tap.{kind}" for kind in TAPS),
        ]
        channel = await self._amqp.channel()
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(self.exchange)
        await self._amqp.close()
        self._amqp = None

    # -- helpers for workloads ----------------------------------------------------------------
    async def wait_idle(self, timeout: float, every: float = 0.1) -> bool:
        """Until no job is active (call once every job was accepted); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if not await self.fetch(ACTIVE_ONE):
                return True
            await asyncio.sleep(every)
        return False

    async def statuses(self, batch_ids: list[uuid.UUID]) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT status, count(*) FROM jobs WHERE batch_id = ANY(%s) GROUP BY status",
            (batch_ids,),
        )
        return {status: int(n) for status, n in rows}

    async def last_finished(self, batch_ids: list[uuid.UUID]) -> float:
        """Epoch seconds of the last job of these batches to finish (the scheduler's clock)."""
        rows = await self.fetch(
            "SELECT extract(epoch FROM max(finished_at)) FROM jobs WHERE batch_id = ANY(%s)",
            (batch_ids,),
        )
        return float(rows[0][0])
