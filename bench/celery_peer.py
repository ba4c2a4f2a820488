"""A Celery peer for ``bench sdk``: the same no-op loop through Celery, in the same run.

Celery 5.6.3 lives in a venv of its own, made once and kept under ``.bench-peers/`` (gitignored;
pip takes the wheels from this machine's disk or PyPI). :class:`CeleryPeer` gives it, for one
benchmark:

* a fresh database ``celery_bench_<token>`` for the result backend (SQLAlchemy,
  ``db+postgresql://``; Celery makes its ``celery_taskmeta`` table on the first result), dropped
  at the end;
* a queue of its own on the RabbitMQ broker, ``celery_bench_<token>`` (and the direct exchange
  of that name Celery declares for it), deleted at the end;
* one worker, ``celery worker --pool threads --concurrency 8`` with ``task_acks_late=True``
  (bench/celery_app.py), without gossip, mingle or heartbeats, stopped with SIGTERM.

:meth:`CeleryPeer.run` starts a fresh client process that calls ``noop.delay()`` N times from
one thread and measures from the first delay to the last result stored (``max(date_done)``,
the worker's clock, which is this machine's). A ``.delay()`` returns once the message is
written to the socket: py-amqp does not wait for the broker's confirm.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import psutil

from bench.harness import AMQP_URL, PG_URL, HarnessError, admin, cpu_ms, with_database

VERSION = "5.6.3"
REQUIREMENTS = (f"celery=={VERSION}", "sqlalchemy>=2,<2.1", "psycopg2-binary")
ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / ".bench-peers" / f"celery-{VERSION}"
APP = Path(__file__).resolve().with_name("celery_app.py")
CONCURRENCY = 8


def peer_python() -> Path:
    """The peer venv's interpreter, the venv made first if it is not there yet."""
    python = PEER_DIR / "bin" / "python"
    marker = PEER_DIR / "installed.txt"
    if marker.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_DIR)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    done = subprocess.run(pip, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"the Celery peer's venv: {done.stderr[-2000:]}")
    marker.write_text("\n".join(REQUIREMENTS) + "\n")
    return python


class CeleryPeer:
    """A running Celery worker and what it needs. Use ``async with CeleryPeer() as peer``."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:10]
        self.queue = f"celery_bench_{self.token}"
        self.database = f"celery_bench_{self.token}"
        self.python = Path()
        self.env: dict[str, str] = {}
        self.worker: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="celery-bench-", suffix=".log")[1])

    async def __aenter__(self) -> CeleryPeer:
        self.python = await asyncio.to_thread(peer_python)
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        backend = with_database(PG_URL, self.database).replace("postgresql", "db+postgresql", 1)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(APP.parent),
            "BENCH_CELERY_BROKER": AMQP_URL.replace("amqp://", "pyamqp://", 1),
            "BENCH_CELERY_BACKEND": backend,
            "BENCH_CELERY_QUEUE": self.queue,
        }
        self._start_worker()
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await asyncio.to_thread(self._stop_worker)
        await self._delete_queue()
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if exc_type is None:
            self.log.unlink(missing_ok=True)
        else:
            print(f"celery bench: worker log kept in {self.log}", file=sys.stderr)

    def _start_worker(self) -> None:
        command = [
            str(self.python), "-m", "celery", "-A", "celery_app", "worker",
            "--pool", "threads", "--concurrency", str(CONCURRENCY), "--queues", self.queue,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING", "--hostname", f"{self.queue}@%h",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.worker = subprocess.Popen(
                command, env=self.env, cwd=APP.parent, stdout=out, stderr=subprocess.STDOUT
            )

    def _stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()

    async def _delete_queue(self) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(self.queue)
            await channel.exchange_delete(self.queue)

    def worker_cpu_ms(self) -> float:
        assert self.worker is not None
        try:
            return cpu_ms(psutil.Process(self.worker.pid))
        except psutil.Error:
            return 0.0

    async def run(self, count: int) -> dict[str, Any]:
        """One loop of ``count`` delays in a fresh client; jobs/s end to end and the costs."""
        if self.worker is None or self.worker.poll() is not None:
            raise HarnessError(f"the Celery worker exited; its log: {self.log}")
        cpu0 = self.worker_cpu_ms()
        done = await asyncio.to_thread(
            subprocess.run,
            [str(self.python), str(APP), "loop", str(count)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"the Celery loop failed: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["worker_cpu_ms"] = (self.worker_cpu_ms() - cpu0) / count
        return result
