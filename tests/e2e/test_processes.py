"""The real processes, started as a user would: `smartq migrate`, `keys create`, `api`,
`scheduler`, `worker --import`, `logger` on PostgreSQL + RabbitMQ, and `smartq dev` on the
embedded default (open on loopback: no key)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.e2e.procs import free_port, processes, wait_final, wait_ready
from tests.services import require_rabbitmq

DAG = {
    "jobs": [
        {"key": "extract", "type": "log", "payload": {"lines": 3}},
        {"key": "greet", "type": "greet", "payload": {"name": "smartq"}, "depends_on": ["extract"]},
        {
            "key": "clean",
            "type": "flaky",
            "payload": {"fail_times": 1},
            "depends_on": ["extract"],
            "retry": {"max_attempts": 3, "initial_delay_seconds": 0.2},
        },
        {
            "key": "load",
            "type": "sleep",
            "payload": {"seconds": 0.2},
            "cpu_units": 2,
            "depends_on": ["greet", "clean"],
        },
        {"key": "broken", "type": "flaky", "payload": {"fail_times": -1, "retryable": False}},
        {"key": "never", "type": "noop", "depends_on": ["broken"]},
    ]
}


def check_dag_outcome(base: str, headers: dict[str, str] | None = None) -> None:
    r = httpx.post(f"{base}/jobs/batch", json=DAG, headers=headers)
    assert r.status_code == 201, r.text
    ids = {j["key"]: j["id"] for j in r.json()["jobs"]}
    final = wait_final(base, list(ids.values()), headers=headers)
    status = {k: final[i]["status"] for k, i in ids.items()}
    assert status == {
        "extract": "completed",
        "greet": "completed",
        "clean": "completed",
        "load": "completed",
        "broken": "failed",
        "never": "cancelled",
    }
    assert final[ids["greet"]]["result"] == {"greeting": "hello smartq"}
    assert final[ids["clean"]]["attempts"] == 2
    assert "upstream job broken" in str(final[ids["never"]]["status_reason"])
    report = httpx.get(f"{base}/batches/{r.json()['batch_id']}", headers=headers).json()
    assert report["done"] is True and report["totals"]["completed"] == 4


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.mark.slow
def test_split_processes_on_postgres_and_rabbitmq(pg_url: str, tmp_path: Path) -> None:
    # The template database is already migrated; migrate a blank one as a user would.
    env = {
        "SMARTQ_DATABASE_URL": pg_url,
        "SMARTQ_BROKER_URL": require_rabbitmq(),
        "SMARTQ_BROKER_EXCHANGE": f"e2e{uuid.uuid4().hex[:8]}",
        "SMARTQ_IMPORTS": "tests.e2e.userjobs",
        "SMARTQ_HEARTBEAT_SECONDS": "0.5",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        migrated = procs.run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert "up to date" in migrated.stdout
        procs.start("api", "api", "--port", str(port))
        procs.start("scheduler", "scheduler")
        procs.start(
            "worker", "worker", "--cpu-units", "4", "--memory-mb", "2048", "--worker-id", "e2e-w1"
        )
        procs.start("logger", "logger")
        # One user's key (not an admin's): the tenant checks run on every request below.
        auth = bearer(procs.create_key("e2e", "--scope", "submit,read,cancel,monitor"))
        wait_ready(base)
        check_dag_outcome(base, auth)
        job = httpx.get(f"{base}/jobs", params={"type": "log"}, headers=auth).json()["items"][0]
        logs = httpx.get(f"{base}/jobs/{job['id']}/logs", headers=auth).json()
        assert [ln["message"] for ln in logs["lines"]][1:4] == [
            "line 1 of 3",
            "line 2 of 3",
            "line 3 of 3",
        ]
        assert procs.stop("worker", signal.SIGTERM) == 0
        for name in ("api", "scheduler", "logger"):
            assert procs.stop(name) in (0, -signal.SIGTERM), procs.log(name)
        assert '"action": "worker.stop"' in procs.log("worker").replace('":"', '": "')


@pytest.mark.slow
def test_the_first_key_of_a_fresh_deployment(pg_url: str, tmp_path: Path) -> None:
    """`smartq api` answers a request without a key with 401 and a challenge; the operator
    makes the first key with `smartq keys create --admin` (no API needed for that one), and
    the same request then succeeds. Keys turned off on an address other hosts can reach is
    refused unless `--insecure` says so."""
    env = {
        "SMARTQ_DATABASE_URL": pg_url,
        "SMARTQ_BROKER_URL": require_rabbitmq(),
        "SMARTQ_BROKER_EXCHANGE": f"e2e{uuid.uuid4().hex[:8]}",
    }
    port, open_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        procs.start("api", "api", "--port", str(port))
        key = procs.create_key("ops", "--admin", "--label", "first key")
        wait_ready(base)
        anonymous = httpx.get(f"{base}/jobs")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer"), anonymous.headers
        assert key.startswith("sq_")
        allowed = httpx.get(f"{base}/jobs", headers=bearer(key))
        assert allowed.status_code == 200, allowed.text
        assert procs.stop("api") in (0, -signal.SIGTERM), procs.log("api")

        procs.env["SMARTQ_AUTH"] = "off"
        everywhere = ("api", "--host", "0.0.0.0", "--port", str(open_port))
        refused = procs.run(*everywhere)
        assert refused.returncode != 0, refused.stdout
        assert "--insecure" in refused.stderr and "Traceback" not in refused.stderr
        procs.start("open", *everywhere, "--insecure")
        wait_ready(f"http://127.0.0.1:{open_port}")
        assert httpx.get(f"http://127.0.0.1:{open_port}/jobs").status_code == 200
        assert procs.stop("open") in (0, -signal.SIGTERM), procs.log("open")
        assert "authentication is OFF" in procs.log("open")


@pytest.mark.slow
def test_dev_mode_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env: dict[str, Any] = {
        "SMARTQ_SQLITE_PATH": str(tmp_path / "dev.sqlite3"),
        "SMARTQ_IMPORTS": "tests.e2e.userjobs",
    }
    with processes(env, tmp_path) as procs:
        procs.start("dev", "dev", "--port", str(port), "--cpu-units", "4", "--memory-mb", "2048")
        wait_ready(base, timeout=60)
        check_dag_outcome(base)
        assert procs.stop("dev", signal.SIGINT) == 0, procs.log("dev")
    assert (tmp_path / "dev.sqlite3").exists()


def test_cli_help_and_bad_settings(tmp_path: Path) -> None:
    with processes({"SMARTQ_DATABASE_URL": "mysql://nope"}, tmp_path) as procs:
        helped = procs.run("--help")
        assert helped.returncode == 0
        for sub in ("dev", "api", "scheduler", "worker", "logger", "migrate"):
            assert sub in helped.stdout
        bad = procs.run("migrate")
        assert bad.returncode == 2
        assert "unsupported database" in bad.stderr and "Traceback" not in bad.stderr
