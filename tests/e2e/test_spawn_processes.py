"""Jobs that spawn jobs with real processes on PostgreSQL + RabbitMQ: a parent submits 100
children and a continuation, and its worker is killed (-9) while it still runs. Another worker
runs the parent again, which asks for the same children: there are still exactly 100 and one
continuation, each child completes, and the continuation runs after the last of them. (The
embedded mode and a plain retry: tests/integration/test_spawn.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def spawning(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(postgres_databases, tmp_path) as c:
        yield c


def test_a_parent_whose_worker_dies_makes_its_100_children_once(spawning: Cluster) -> None:
    c = spawning
    c.boot({"w1": 8})
    with c.client() as http:
        answer = http.post("/jobs", json={"type": "spawner", "payload": {"n": 100, "hold": 60}})
        assert answer.status_code == 201, answer.text
        parent = answer.json()["id"]
    children = "SELECT count(*) FROM jobs WHERE parent_id = %s"
    c.wait_for(lambda: c.scalar(children, (parent,)) == 101, timeout=60, what="the children")
    c.kill("w1")  # the parent is holding w1 on its first attempt
    c.start_worker("w2", 8)
    c.wait_for(
        lambda: c.statuses([parent])[parent] == "completed", timeout=90, what="the parent again"
    )
    [row] = c.rows("SELECT attempts, result FROM jobs WHERE id = %s", (parent,))
    assert row["attempts"] == 2, row
    then = row["result"]["continuation"]
    c.wait_for(lambda: c.statuses([then])[then] == "completed", timeout=90, what="the continuation")
    kids = c.rows(
        "SELECT id, status, finished_at, started_at FROM jobs WHERE parent_id = %s", (parent,)
    )
    assert len(kids) == 101
    assert {k["status"] for k in kids} == {"completed"}
    last = max(k["finished_at"] for k in kids if str(k["id"]) != then)
    assert next(k for k in kids if str(k["id"]) == then)["started_at"] >= last
    # the side effects: every child ran (at least once; one running on w1 ran again on w2)
    ran = c.scalar(
        "SELECT count(DISTINCT job_id) FROM side_effects WHERE job_id IN "
        "(SELECT id FROM jobs WHERE parent_id = %s)",
        (parent,),
    )
    assert ran == 101
    assert c.log_problems() == []
