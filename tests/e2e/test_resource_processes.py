"""Named resources and labels with the real processes (issue 18): `smartq worker --resource
gpu=1 --label zone=eu` beside a plain worker on PostgreSQL + RabbitMQ, and `smartq dev
--resource ... --label ...` on the embedded default; bad options exit 2 with the reason."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.e2e.procs import free_port, processes, split_env, wait_final, wait_ready
from tests.services import require_rabbitmq


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


def submit(base: str, headers: dict[str, str] | None, **body: Any) -> str:
    r = httpx.post(f"{base}/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def reason(base: str, headers: dict[str, str] | None, job_id: str, words: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        got = httpx.get(f"{base}/jobs/{job_id}", headers=headers).json().get("waiting_reason")
        if got and words in got:
            return str(got)
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def worker_of(base: str, headers: dict[str, str] | None, job_id: str) -> str:
    return str(httpx.get(f"{base}/jobs/{job_id}", headers=headers).json()["worker_id"])


def wait_workers(base: str, headers: dict[str, str] | None, ids: set[str]) -> list[Any]:
    deadline = time.monotonic() + 30
    while True:
        workers = httpx.get(f"{base}/workers", headers=headers).json()
        if ids <= {w["id"] for w in workers if w["state"] != "offline"}:
            return list(workers)
        assert time.monotonic() < deadline, workers
        time.sleep(0.2)


@pytest.mark.slow
def test_resources_and_labels_with_split_processes(pg_url: str, tmp_path: Path) -> None:
    env = split_env(pg_url, require_rabbitmq(), "res")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        bad = procs.run("worker", "--resource", "gpu=lots")
        assert bad.returncode == 2 and "a count is a positive integer" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
        procs.start("api", "api", "--port", str(port))
        procs.start("scheduler", "scheduler")
        procs.start(
            "gpu", "worker", "--worker-id", "gpu1", "--resource", "gpu=1", "--label", "zone=eu"
        )
        procs.start("plain", "worker", "--worker-id", "plain1", "--cpu-units", "4")
        procs.start("logger", "logger")
        auth = bearer(procs.create_key("res", "--scope", "submit,read,cancel,monitor"))
        wait_ready(base)
        workers = {w["id"]: w for w in wait_workers(base, auth, {"gpu1", "plain1"})}
        assert workers["gpu1"]["resources"] == {"gpu": 1}
        assert workers["gpu1"]["labels"] == {"zone": "eu"}
        assert workers["plain1"]["resources"] == {} and workers["plain1"]["labels"] == {}

        first = submit(base, auth, type="sleep", payload={"seconds": 1.5}, resources={"gpu": 1})
        second = submit(base, auth, type="noop", resources={"gpu": 1})
        eu = submit(base, auth, type="noop", labels={"zone": "eu"})
        us = submit(base, auth, type="noop", labels={"zone": "us"})
        assert reason(base, auth, second, "needs gpu=1").startswith(
            "needs gpu=1; most free on any worker is gpu=0"
        )
        assert "no live worker has label zone=us" in reason(base, auth, us, "zone=us")
        done = wait_final(base, [first, second, eu], headers=auth)
        assert {j["status"] for j in done.values()} == {"completed"}
        assert {worker_of(base, auth, i) for i in (first, second, eu)} == {"gpu1"}
        assert httpx.get(f"{base}/jobs/{us}", headers=auth).json()["status"] == "ready"
        for name in ("gpu", "plain", "api", "scheduler", "logger"):
            assert procs.stop(name) in (0, -signal.SIGTERM), procs.log(name)


@pytest.mark.slow
def test_resources_in_dev_mode_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SMARTQ_SQLITE_PATH": str(tmp_path / "dev.sqlite3")}
    with processes(env, tmp_path) as procs:
        bad = procs.run("dev", "--label", "zone")
        assert bad.returncode == 2 and "write NAME=VALUE" in bad.stderr, bad.stderr
        procs.start("dev", "dev", "--port", str(port), "--resource", "gpu=2", "--label", "zone=eu")
        wait_ready(base, timeout=60)
        gpu = submit(base, None, type="noop", resources={"gpu": 2}, labels={"zone": "eu"})
        three = submit(base, None, type="noop", resources={"gpu": 3})
        done = wait_final(base, [gpu], headers=None)
        assert done[gpu]["status"] == "completed"
        assert reason(base, None, three, "gpu=3") == (
            "no worker could ever fit it: needs gpu=3; the most any live worker has is gpu=2"
        )
        refused = httpx.post(f"{base}/jobs", json={"type": "noop", "resources": {"memory": 1}})
        assert refused.status_code == 422 and "reserved" in refused.text
        assert procs.stop("dev", signal.SIGINT) == 0, procs.log("dev")
