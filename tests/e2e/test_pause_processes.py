"""Pausing and draining with real processes on PostgreSQL + RabbitMQ: a batch paused mid-run
starts nothing new, also after its leading scheduler is killed (-9) and the hot standby takes
over (the pause is durable), then resumes and completes; a drained worker takes nothing new
while another worker runs everything. (One process, both backends: tests/integration/
test_pauses.py and test_worker_controls.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster

pytestmark = pytest.mark.slow

STARTED = "SELECT count(*) FROM jobs WHERE batch_id = %s AND started_at IS NOT NULL"


@pytest.fixture
def paused(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(postgres_databases, tmp_path, SMARTQ_LIMITS_POLL_SECONDS="0.2") as c:
        yield c


def _still(c: Cluster, batch_id: str, seconds: float) -> int:
    """How many jobs of the batch have started, checked unchanged for ``seconds``."""
    started = c.scalar(STARTED, (batch_id,))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert c.scalar(STARTED, (batch_id,)) == started, "a job started while paused"
        time.sleep(0.1)
    return int(started)


def test_a_paused_batch_stays_paused_across_a_failover_then_completes(paused: Cluster) -> None:
    c = paused
    c.boot({"w1": 2})
    c.procs.start("standby", "scheduler")
    jobs = [{"key": f"j{i}", "type": "side_effect", "payload": {"seconds": 0.4}} for i in range(12)]
    with c.client() as http:
        answer = http.post("/jobs/batch", json={"jobs": jobs})
        assert answer.status_code == 201, answer.text
        batch_id = answer.json()["batch_id"]
        c.wait_for(lambda: c.scalar(STARTED, (batch_id,)) >= 1, timeout=30, what="a start")
        assert http.post(f"/batches/{batch_id}/pause").json()["paused"] is True
        time.sleep(1.0)  # the scheduler's poll (0.2 s) and what ran then finishing
        before = _still(c, batch_id, 2.0)
        assert 1 <= before < 12
        c.kill("scheduler")
        time.sleep(3.0)  # the standby takes the leader's lock and rebuilds from the database
        assert _still(c, batch_id, 2.0) == before
        shown = http.get("/jobs", params={"batch_id": batch_id, "status": "ready"}).json()
        reasons = [http.get(f"/jobs/{j['id']}").json()["waiting_reason"] for j in shown["items"]]
        assert reasons and all(r.startswith(f"paused: batch {batch_id}") for r in reasons), reasons
        assert http.post(f"/batches/{batch_id}/resume").json()["paused"] is False
    c.wait_for(
        lambda: (
            c.scalar(
                "SELECT count(*) FROM jobs WHERE batch_id = %s AND status = 'completed'",
                (batch_id,),
            )
            == 12
        ),
        timeout=60,
        what="the batch to complete under the standby",
    )
    assert c.log_problems() == []


def test_a_drained_worker_takes_nothing_new(paused: Cluster) -> None:
    c = paused
    c.boot({"w1": 4, "w2": 4})
    admin = {"Authorization": f"Bearer {c.create_key(admin=True)}"}
    with c.client() as http:
        drained = http.post("/workers/w1/drain", headers=admin)
        assert drained.status_code == 200, drained.text
        time.sleep(1.0)  # the scheduler's poll of controls
        jobs = [{"type": "side_effect", "payload": {"seconds": 0.1}} for _ in range(20)]
        ids = c.submit_batch(jobs)
    c.wait_for(lambda: set(c.statuses(ids).values()) == {"completed"}, timeout=60, what="the jobs")
    ran_on = c.rows(
        "SELECT DISTINCT worker_id FROM job_attempts WHERE job_id = ANY(%s::uuid[])", (ids,)
    )
    assert [r["worker_id"] for r in ran_on] == ["w2"]
    with c.client() as http:
        workers = {w["id"]: w for w in http.get("/workers", headers=admin).json()}
    assert workers["w1"]["state"] == "drained" and workers["w2"]["state"] != "drained"
