"""The SDK against the real processes, started as a user would: ``smartq dev`` on the embedded
default (open on loopback: no key) running ``examples/sdk_quickstart.py``, and ``smartq api``,
``scheduler``, ``worker``, ``logger`` on PostgreSQL + RabbitMQ with keys from ``smartq keys
create``, where the stream rides out a restart of the API process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import smartq
from models.enums import JobStatus
from smartq.client import StatusEvent
from smartq.client.events import status_order
from tests.databases import PostgresDatabases
from tests.e2e.procs import ROOT, Procs, free_port, processes, wait_ready
from tests.services import require_rabbitmq


@pytest.mark.slow
def test_the_quickstart_example_against_smartq_dev(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SMARTQ_SQLITE_PATH": str(tmp_path / "dev.sqlite3")}
    with processes(env, tmp_path) as procs:
        procs.start("dev", "dev", "--port", str(port), "--cpu-units", "4", "--memory-mb", "2048")
        wait_ready(base, timeout=60)
        ran = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "sdk_quickstart.py")],
            env={**procs.env, "SMARTQ_URL": base},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "{'slept': 0.2}" in ran.stdout
        assert "flaky: completed after 2 attempt(s)" in ran.stdout
        assert "line 3 of 3" in ran.stdout
        assert "3/3 completed" in ran.stdout
        assert procs.stop("dev", signal.SIGINT) == 0, procs.log("dev")


def _start_api(procs: Procs, port: int) -> None:
    procs.start("api", "api", "--port", str(port))
    wait_ready(f"http://127.0.0.1:{port}", timeout=60)


@pytest.mark.slow
def test_the_sdk_on_the_split_processes_with_keys(
    postgres_databases: PostgresDatabases, tmp_path: Path
) -> None:
    """Keys from ``smartq keys create``: a tenant's key does everything, a read-only one may
    not submit, a made-up one is refused; a stream open across a restart of ``smartq api``
    (closed with 1001) reconnects and still gets the job's final status, once."""
    pg_url = postgres_databases.create()
    try:
        _split_processes(pg_url, tmp_path)
    finally:
        postgres_databases.drop(pg_url)


def _split_processes(pg_url: str, tmp_path: Path) -> None:
    env = {
        "SMARTQ_DATABASE_URL": pg_url,
        "SMARTQ_BROKER_URL": require_rabbitmq(),
        "SMARTQ_BROKER_EXCHANGE": f"sdk{uuid.uuid4().hex[:8]}",
        "SMARTQ_HEARTBEAT_SECONDS": "0.5",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        procs.start("scheduler", "scheduler")
        procs.start("worker", "worker", "--cpu-units", "4", "--memory-mb", "2048")
        procs.start("logger", "logger")
        key = procs.create_key("sdk", "--scope", "submit,read,cancel")
        reader = procs.create_key("sdk", "--scope", "read")
        _start_api(procs, port)
        with smartq.Client(base, key) as client:
            assert client.submit("log", {"lines": 5}).result(timeout=60) == {"lines": 5}
            with smartq.Client(base, reader) as read_only, pytest.raises(smartq.Forbidden):
                read_only.submit("noop")
            with smartq.Client(base, "sq_bogus_bogus") as bogus, pytest.raises(smartq.Unauthorized):
                bogus.submit("noop")

            job = client.submit("sleep", {"seconds": 2})
            seen: list[StatusEvent] = []
            with client.stream(job_id=job.id, types=["job.status"]) as stream:
                first = stream.next(timeout=30)
                assert isinstance(first, StatusEvent)
                seen.append(first)
                assert procs.stop("api") in (0, -signal.SIGTERM), procs.log("api")
                time.sleep(3)  # the job completes while no API runs
                _start_api(procs, port)
                while not seen[-1].is_final:
                    event = stream.next(timeout=60)
                    assert isinstance(event, StatusEvent)
                    seen.append(event)
            assert seen[-1].status is JobStatus.COMPLETED
            orders = [status_order(e.status, e.attempt) for e in seen]
            assert orders == sorted(set(orders)), [e.status for e in seen]
            assert job.wait(timeout=10).result() == {"slept": 2}
