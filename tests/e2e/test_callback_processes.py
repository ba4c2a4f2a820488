"""Batch callbacks with real processes on PostgreSQL + RabbitMQ: the leading scheduler is
killed (-9) right after it committed a finished batch's ``batch.finished`` delivery and before
it sent it; a scheduler started afterwards sends it. The receiver gets it exactly once, under
the delivery id the log shows, with a valid signature. (The embedded mode runs the same code
in one process: tests/integration/test_callbacks_delivery.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartq import callbacks
from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster
from tests.receiver import Receiver, receiving

pytestmark = pytest.mark.slow
SECRET = "e2e-callback-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def hooks(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    env = {
        "SMARTQ_CALLBACK_POLL_SECONDS": "0.2",
        "SMARTQ_CALLBACK_SECRET": SECRET,
        "SMARTQ_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
    }
    with cluster(postgres_databases, tmp_path, **env) as c:
        yield c


def test_a_delivery_outlives_a_scheduler_killed_before_sending(
    hooks: Cluster, receiver: Receiver
) -> None:
    c = hooks
    c.procs.start("scheduler", "scheduler", env={"SMARTQ_FAILPOINTS": "callbacks_after_enqueue"})
    c.boot({"w1": 4}, scheduler=False)
    body = {
        "jobs": [{"key": "a", "type": "noop"}, {"key": "b", "type": "noop", "depends_on": ["a"]}],
        "callbacks": [{"url": receiver.url("/done"), "events": ["batch.finished"]}],
    }
    with c.client() as http:
        made = http.post("/jobs/batch", json=body)
        assert made.status_code == 201, made.text
        batch_id = made.json()["batch_id"]
    leader = c.procs.running["scheduler"]
    c.wait_for(lambda: leader.poll() is not None, timeout=60, what="the failpoint to kill it")
    assert receiver.events() == []  # killed after the commit, before the send
    pending = c.rows("SELECT id::text, status, attempts FROM callback_deliveries")
    assert [(d["status"], d["attempts"]) for d in pending] == [("pending", 0)]
    c.procs.running.pop("scheduler")
    c.procs.start("scheduler-2", "scheduler")
    c.wait_for(lambda: len(receiver.events()) >= 1, timeout=60, what="the delivery")
    time.sleep(1.5)  # several polls: nothing is sent twice
    got = receiver.events("/done")
    assert len(got) == 1
    delivered = got[0]
    assert callbacks.verify(SECRET, delivered.headers[callbacks.SIGNATURE_HEADER], delivered.body)
    assert delivered.doc["delivery_id"] == pending[0]["id"]
    assert delivered.headers[callbacks.DELIVERY_HEADER] == pending[0]["id"]
    assert delivered.doc["batch"]["done"] is True
    assert [j["key"] for j in delivered.doc["passed"]] == ["a", "b"]
    with c.client() as http:
        log = http.get(f"/batches/{batch_id}/deliveries").json()["items"]
    assert [(d["id"], d["status"], d["attempts"]) for d in log] == [
        (pending[0]["id"], "delivered", 1)
    ]
