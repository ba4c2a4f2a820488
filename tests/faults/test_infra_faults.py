"""The servers misbehave: RabbitMQ restarts, PostgreSQL connections are killed (issue 5,
scenarios 6 and 7)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from tests.faults.checker import check
from tests.faults.cluster import Cluster, Stopwatch


def _jobs(n: int, prefix: str, seconds: float = 0.1) -> list[dict[str, object]]:
    return [
        {
            "key": f"{prefix}{i}",
            "type": "side_effect",
            "payload": {"seconds": seconds},
            "retry": {"max_attempts": 3, "initial_delay_seconds": 0.1},
        }
        for i in range(n)
    ]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def _wait_rabbit(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["rabbitmqctl", "-q", "await_startup"], capture_output=True, timeout=60, check=False
        )
        if done.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("RabbitMQ did not come back")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rabbitmq_restart_under_load(faults: Cluster) -> None:
    """RabbitMQ's app is stopped for 3 s while 200 jobs flow, then started. Connections
    recover, persistent messages in durable queues survive, publishes are retried, the
    scheduler does not expire leases it could not renew (it hears its own probes again first),
    and every job completes; no job runs twice."""
    c, t = faults, Stopwatch()
    c.boot({"w1": 16, "w2": 16})
    t.mark("boot")
    ids = c.submit_batch(_jobs(200, "a", seconds=0.2))
    c.wait_for(
        lambda: list(c.statuses(ids).values()).count("completed") >= 20,
        timeout=60,
        what="work under way",
    )
    _rabbitmqctl("stop_app")
    t.mark("stop_app")
    time.sleep(3)
    _rabbitmqctl("start_app")
    _wait_rabbit()
    t.mark("start_app")
    more = c.submit_batch(_jobs(50, "b"))
    counts = check(c, accepted=ids + more, settle_timeout=120, quiet_timeout=30)
    t.mark("settled")
    print(f"\n{t}\n{counts!r}")
    assert set(c.statuses(ids + more).values()) == {"completed"}
    counts.assert_clean()
    twice = c.rows("SELECT job_id FROM side_effects GROUP BY job_id HAVING count(*) > 1")
    assert twice == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgres_connections_killed_under_load(faults: Cluster) -> None:
    """Every PostgreSQL connection of every process is terminated three times while jobs are
    submitted and run. Requests in flight get a clear 503 (retried by the client), never a
    500; the scheduler rebuilds and the leader re-acquires its lock; the logger re-stores what
    it had not committed. Every accepted job completes; nothing is stuck or held."""
    c, t = faults, Stopwatch()
    c.boot({"w1": 16})
    t.mark("boot")
    accepted: list[str] = []
    codes: list[int] = []
    stop = threading.Event()

    def submit_forever() -> None:
        n = 0
        with c.client(timeout=30) as client:
            while not stop.is_set():
                n += 1
                body = {"jobs": _jobs(10, f"s{n}-")}
                r = client.post("/jobs/batch", json=body, headers={"Idempotency-Key": f"batch-{n}"})
                while r.status_code == 503:  # nothing was written: retry the same request
                    codes.append(503)
                    time.sleep(0.2)
                    r = client.post(
                        "/jobs/batch", json=body, headers={"Idempotency-Key": f"batch-{n}"}
                    )
                codes.append(r.status_code)
                if r.status_code in (200, 201):
                    accepted.extend(j["id"] for j in r.json()["jobs"])
                time.sleep(0.05)

    submitter = threading.Thread(target=submit_forever)
    submitter.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            killed = c.scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            t.mark(f"terminated {killed} connections")
        time.sleep(1.0)
    finally:
        stop.set()
        submitter.join(60)
    counts = check(c, accepted=accepted, settle_timeout=120)
    t.mark("settled")
    print(f"\n{t}\n{counts!r}\nresponses: {sorted(set(codes))}")
    assert accepted, "nothing was accepted"
    assert all(code in (200, 201, 503) for code in codes), sorted(set(codes))
    assert set(c.statuses(accepted).values()) == {"completed"}
    counts.assert_clean()
