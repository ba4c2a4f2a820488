"""A real smartq for the dashboard tests: ``smartq api`` (keys required), ``scheduler``,
``worker`` and ``logger`` as processes on PostgreSQL + RabbitMQ, and headless Chromium from
the system (``/usr/bin/chromium``, driven by Playwright; no browser is ever downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.apikeys import bearer
from tests.e2e.procs import ROOT, Procs, free_port, processes, wait_ready
from tests.services import CI

CHROMIUM = os.environ.get("SMARTQ_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "ui"
FINAL = {"completed", "failed", "cancelled"}
#: The tests' own requests: what they check is the page, not how fast a loaded 2-core machine
#: answers them (a 10 s read timed out once beside a 2,000-job chain being scheduled).
HTTP_TIMEOUT = 60


def require_chromium() -> str:
    """The system's Chromium; missing, the test skips on a laptop and fails in CI."""
    if shutil.which(CHROMIUM) is None:
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if CI:
            pytest.fail(message + " (CI=true: the dashboard tests fail rather than skip)")
        pytest.skip(message)
    return CHROMIUM


@dataclass
class Smartq:
    """The running processes, the API's URL and an admin key of tenant ``default``."""

    procs: Procs
    base: str
    key: str
    database_url: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def get(self, path: str) -> Any:
        r = httpx.get(self.url(path), headers=self.headers, timeout=HTTP_TIMEOUT)
        assert r.status_code == 200, r.text
        return r.json()

    def submit(self, **body: Any) -> dict[str, Any]:
        r = httpx.post(self.url("/jobs"), json=body, headers=self.headers, timeout=HTTP_TIMEOUT)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def batch(self, *jobs: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """Submit a DAG; its batch id and its job ids by key."""
        r = httpx.post(
            self.url("/jobs/batch"),
            json={"jobs": list(jobs)},
            headers=self.headers,
            timeout=HTTP_TIMEOUT,
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        return doc["batch_id"], {j["key"]: j["id"] for j in doc["jobs"]}

    def wait_status_in_db(self, job_id: str, wanted: str, timeout: float = 30) -> None:
        """Until the job's row says ``wanted`` (for when the API is down)."""
        u = make_url(self.database_url)
        deadline = time.monotonic() + timeout
        with psycopg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            autocommit=True,
        ) as conn:
            while True:
                row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
                if row and row[0] == wanted:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} is {row}, not {wanted}")
                time.sleep(0.1)

    def stop_api(self) -> None:
        self.procs.stop("api")

    def start_api(self) -> None:
        """``smartq api`` again on the same port (a restart, as a deploy does)."""
        self.procs.start("api", "api", "--port", self.base.rsplit(":", 1)[1])
        wait_ready(self.base)

    def cancel(self, job_id: str) -> None:
        httpx.patch(self.url(f"/jobs/{job_id}/cancel"), headers=self.headers, timeout=HTTP_TIMEOUT)

    def wait_status(self, job_id: str, *wanted: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.get(f"/jobs/{job_id}")
            if job["status"] in wanted:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['status']}, not {wanted}")
            time.sleep(0.1)


@contextmanager
def running_smartq(database_url: str, rabbitmq_url: str, logdir: Path) -> Iterator[Smartq]:
    """Migrate, make an admin key as an operator would, start the four processes."""
    env = {
        "SMARTQ_DATABASE_URL": database_url,
        "SMARTQ_BROKER_URL": rabbitmq_url,
        "SMARTQ_BROKER_EXCHANGE": f"ui{uuid.uuid4().hex[:8]}",
        "SMARTQ_IMPORTS": "tests.ui.uijobs",
        "SMARTQ_HEARTBEAT_SECONDS": "0.5",
        "SMARTQ_MONITOR_SECONDS": "1",
        "SMARTQ_SCHEDULER_POLL_SECONDS": "0.5",
        # The views' tests run always-failing jobs all session: a breaker would hold them.
        "SMARTQ_BREAKER_MIN_ATTEMPTS": "1000000",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, logdir) as procs:
        migrated = procs.run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        key = procs.create_key("default", "--admin", "--label", "dashboard tests")
        procs.start("api", "api", "--port", str(port))
        procs.start("scheduler", "scheduler")
        procs.start("worker", "worker", "--cpu-units", "8", "--memory-mb", "8192")
        procs.start("logger", "logger")
        wait_ready(base)
        smartq = Smartq(procs, base, key, database_url)
        _wait_worker(smartq)
        yield smartq


def _wait_worker(smartq: Smartq, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w["state"] != "offline" for w in smartq.get("/workers")):
            return
        time.sleep(0.2)
    raise AssertionError("no worker came online:\n" + smartq.procs.log("worker"))


def key_script(key: str) -> str:
    """An init script that puts the key where the dashboard keeps it, as if typed once."""
    return f"sessionStorage.setItem('smartq.key', {json.dumps(key)});"


def shot(page: Any, name: str) -> None:
    """A named screenshot of a view, for the CI artefacts (``artifacts/ui/``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
