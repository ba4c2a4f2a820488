"""Start smartq's real processes as a user would, and stop them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        # The caller's SMARTQ_AUTH would change what the tests check: each sets its own.
        inherited = {k: v for k, v in os.environ.items() if k != "SMARTQ_AUTH"}
        self.env = {**inherited, **env, "SMARTQ_LOG_FORMAT": "json"}
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "smartq.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_key(self, tenant: str, *flags: str) -> str:
        """A new key from ``smartq keys create --tenant TENANT FLAGS -o json``, as an operator
        makes one (the command talks to ``SMARTQ_DATABASE_URL`` directly)."""
        made = self.run("keys", "create", "--tenant", tenant, *flags, "-o", "json")
        assert made.returncode == 0, made.stderr
        key: str = json.loads(made.stdout)["key"]
        return key

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logdir / f"{name}.log").open("wb") as log:  # the child keeps its own fd
            proc = subprocess.Popen(
                [sys.executable, "-m", "smartq.cli", *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.running.pop(name)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, timeout=15)


def split_env(database_url: str, rabbitmq_url: str, exchange_prefix: str) -> dict[str, str]:
    """The environment of the split processes on PostgreSQL + RabbitMQ, on an exchange of
    their own (fast heartbeats)."""
    return {
        "SMARTQ_DATABASE_URL": database_url,
        "SMARTQ_BROKER_URL": rabbitmq_url,
        "SMARTQ_BROKER_EXCHANGE": f"{exchange_prefix}{uuid.uuid4().hex[:8]}",
        "SMARTQ_HEARTBEAT_SECONDS": "0.5",
    }


def start_split(procs: Procs, port: int, cpu_units: int, memory_mb: int) -> None:
    """``smartq api`` on ``port``, ``scheduler``, one ``worker`` of that size and ``logger``."""
    procs.start("api", "api", "--port", str(port))
    procs.start("scheduler", "scheduler")
    procs.start("worker", "worker", "--cpu-units", str(cpu_units), "--memory-mb", str(memory_mb))
    procs.start("logger", "logger")


def wait_ready(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not become ready")


@contextmanager
def processes(env: dict[str, str], logdir: Path) -> Iterator[Procs]:
    procs = Procs(env, logdir)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_final(
    base: str, ids: list[str], timeout: float = 30, headers: dict[str, str] | None = None
) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {i: httpx.get(f"{base}/jobs/{i}", headers=headers).json() for i in ids}
        if all(j["status"] in ("completed", "failed", "cancelled") for j in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError({i: j["status"] for i, j in jobs.items()})
        time.sleep(0.1)
