"""Memory escalation with the real processes, started as a user would: ``smartq api``,
``scheduler``, ``worker``, ``logger`` on PostgreSQL + RabbitMQ, and ``smartq dev`` on the
embedded default. A ``memory`` job asking 100 MB that needs 300 succeeds on its 2nd or 3rd
attempt; one that needs more than the largest worker fails at once; a timeout and a
self-SIGKILL are classified and not escalated; the scheduler (``smartq dev`` as a whole on the
embedded default) restarted between two attempts keeps the raised ask."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.e2e.procs import Procs, free_port, processes, wait_final, wait_ready
from tests.services import require_rabbitmq

WORKER_MB = 512
GROWS = {"type": "memory", "payload": {"mb": 300, "seconds": 0.2}, "memory_mb": 100}
ONCE = {"max_attempts": 1}
TWICE = {"max_attempts": 2, "initial_delay_seconds": 0.1}


class Deployment:
    """One smartq of either kind, with the HTTP calls the test makes."""

    def __init__(self, kind: str, procs: Procs, port: int) -> None:
        self.kind, self.procs = kind, procs
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        size = ("--cpu-units", "4", "--memory-mb", str(WORKER_MB))
        if self.kind == "embedded":
            self.procs.start("dev", "dev", "--port", str(self.port), *size)
        else:
            self.procs.start("api", "api", "--port", str(self.port))
            self.procs.start("scheduler", "scheduler")
            self.procs.start("worker", "worker", *size, "--worker-id", "mem-w1")
            self.procs.start("logger", "logger")
            self.headers = bearer(self.procs.create_key("mem", "--scope", "submit,read"))
        wait_ready(self.base, timeout=60)

    def restart_scheduler(self) -> None:
        name = "dev" if self.kind == "embedded" else "scheduler"
        self.procs.stop(name, signal.SIGINT if name == "dev" else signal.SIGTERM)
        if name == "dev":
            self.start()
        else:
            self.procs.start("scheduler", "scheduler")

    def submit(self, **body: Any) -> str:
        got = httpx.post(f"{self.base}/jobs", json=body, headers=self.headers, timeout=10)
        assert got.status_code == 201, got.text
        return str(got.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        got = httpx.get(f"{self.base}/jobs/{job_id}", headers=self.headers, timeout=10)
        assert got.status_code == 200, got.text
        return dict(got.json())

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.base}/jobs/{job_id}/logs", headers=self.headers, timeout=10)
        assert got.status_code == 200, got.text
        return list(got.json()["attempts"])

    def final(self, ids: list[str]) -> None:
        wait_final(self.base, ids, timeout=90, headers=self.headers)

    def wait_for(self, job_id: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            doc = self.job(job_id)
            if all(doc.get(k) == v for k, v in fields.items()):
                return doc
            assert time.monotonic() < deadline, f"job {job_id} never had {fields}: {doc}"
            time.sleep(0.1)


@pytest.fixture(params=["servers", "embedded"])
def deployment(
    request: pytest.FixtureRequest, postgres_databases: PostgresDatabases, tmp_path: Path
) -> Iterator[Deployment]:
    env = {"SMARTQ_IMPORTS": "tests.jobs", "SMARTQ_SHUTDOWN_GRACE_SECONDS": "0.5"}
    url = None
    if request.param == "servers":
        url = postgres_databases.create()
        env |= {
            "SMARTQ_DATABASE_URL": url,
            "SMARTQ_BROKER_URL": require_rabbitmq(),
            "SMARTQ_BROKER_EXCHANGE": f"mem{uuid.uuid4().hex[:8]}",
            "SMARTQ_HEARTBEAT_SECONDS": "0.5",
        }
    else:
        env["SMARTQ_SQLITE_PATH"] = str(tmp_path / "dev.sqlite3")
    try:
        with processes(env, tmp_path) as procs:
            yield Deployment(request.param, procs, free_port())
    finally:
        if url is not None:
            postgres_databases.drop(url)


def check_escalated(d: Deployment, job_id: str) -> list[dict[str, Any]]:
    doc, tries = d.job(job_id), d.attempts(job_id)
    assert doc["status"] == "completed" and doc["attempts"] in (2, 3), (doc, tries)
    assert (doc["memory_mb"], doc["memory_escalations"]) == (100, doc["attempts"] - 1)
    held = [a["memory_mb"] for a in tries]
    assert held[0] == 100 and held == sorted(set(held)) and held[-1] <= WORKER_MB
    assert doc["memory_escalated_mb"] == held[-1]
    assert [a["failure_class"] for a in tries] == ["memory"] * (len(tries) - 1) + [None]
    assert all(a["peak_memory_mb"] > a["memory_mb"] for a in tries[:-1])
    return tries


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_memory_escalation_with_real_processes(deployment: Deployment) -> None:
    d = deployment
    d.start()
    grows = d.submit(**GROWS, retry=ONCE)
    huge = d.submit(type="memory", payload={"mb": 1000, "seconds": 1}, memory_mb=450, retry=ONCE)
    slow = d.submit(
        type="memory", payload={"mb": 10, "seconds": 30}, memory_mb=128, timeout_seconds=0.5,
        retry=TWICE,
    )  # fmt: skip
    dies = d.submit(type="self_kill", memory_mb=128, retry=TWICE)
    d.final([grows, huge, slow, dies])

    check_escalated(d, grows)
    failed = d.job(huge)
    assert (failed["status"], failed["attempts"], failed["memory_escalated_mb"]) == (
        "failed",
        1,
        None,
    )
    assert f"the largest worker has {WORKER_MB} MB" in failed["status_reason"]
    for job_id, kind in ((slow, "timeout"), (dies, "signal")):
        doc = d.job(job_id)
        assert (doc["status"], doc["memory_escalations"], doc["memory_escalated_mb"]) == (
            "failed",
            0,
            None,
        )
        assert [(a["failure_class"], a["memory_mb"]) for a in d.attempts(job_id)] == [
            (kind, 128),
            (kind, 128),
        ]

    # Between two attempts: the raised ask (200 or more) waits for room a 400 MB job holds.
    blocker = d.submit(type="hold", payload={"seconds": 6}, memory_mb=400, priority="high")
    d.wait_for(blocker, status="running")
    again = d.submit(**GROWS, retry=ONCE)
    raised = d.wait_for(again, status="ready", memory_escalations=1)["memory_escalated_mb"]
    assert raised >= 200
    d.restart_scheduler()
    d.final([again, blocker])
    tries = check_escalated(d, again)
    # The rebuilt scheduler asked for what the first one had raised it to (on the embedded
    # default the stop also handed the blocker back, so the raised job may run at once).
    assert [a["memory_mb"] for a in tries][:2] == [100, raised]
