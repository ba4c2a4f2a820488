"""Cron schedules with real processes on PostgreSQL + RabbitMQ: the leading scheduler is killed
(-9) in the middle of a tick, before its transaction commits, and the hot standby takes over.
A schedule every second with ``catchup: all`` has then fired every tick exactly once, with no
gap and no duplicate; one with ``overlap: skip`` never ran two runs at once and counted what
it skipped. (The embedded mode runs the same code in one process: tests/integration/
test_schedules_firing, where the scheduler is stopped and started again.)"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def crons(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(postgres_databases, tmp_path, SMARTQ_SCHEDULES_POLL_SECONDS="0.2") as c:
        yield c


def _runs(c: Cluster, sid: str) -> list[dict[str, Any]]:
    with c.client() as http:
        answer = http.get("/jobs", params={"schedule_id": sid, "limit": 500})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return sorted(items, key=lambda j: j["idempotency_key"])


def _ticks(runs: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(j["idempotency_key"].split(":", 2)[2]) for j in runs]


def test_every_second_exactly_once_across_a_kill_at_the_tick(crons: Cluster) -> None:
    c = crons
    # The leader dies at its 6th tick transaction, before the commit; a standby waits.
    c.procs.start(
        "scheduler", "scheduler", env={"SMARTQ_FAILPOINTS": "schedule_tick_before_commit:6"}
    )
    c.boot({"w1": 8}, scheduler=False)
    c.procs.start("standby", "scheduler")
    with c.client() as http:
        every = {"cron": "* * * * * *", "overlap": "allow", "catchup": "all"}
        all_id = http.post("/schedules", json={**every, "job": {"type": "noop"}}).json()["id"]
        skip = {"cron": "* * * * * *", "overlap": "skip", "catchup": "none"}
        sleepy = {"type": "sleep", "payload": {"seconds": 2.5}}
        skip_id = http.post("/schedules", json={**skip, "job": sleepy}).json()["id"]
    leader = c.procs.running["scheduler"]
    c.wait_for(lambda: leader.poll() is not None, timeout=60, what="the failpoint to kill it")
    killed_at = time.monotonic()
    c.wait_for(
        lambda: len(_runs(c, all_id)) >= 6 and time.monotonic() - killed_at > 4,
        timeout=60,
        what="the standby to fire again",
    )
    with c.client() as http:
        for sid in (all_id, skip_id):
            assert http.post(f"/schedules/{sid}/pause").status_code == 200
        shown = {sid: http.get(f"/schedules/{sid}").json() for sid in (all_id, skip_id)}
    ticks = _ticks(_runs(c, all_id))
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], ticks
    assert shown[all_id]["runs"] == len(ticks)
    skipped = _ticks(_runs(c, skip_id))
    assert len(set(skipped)) == len(skipped)
    assert all(b - a >= timedelta(seconds=2) for a, b in itertools.pairwise(skipped))
    assert shown[skip_id]["skipped"] >= 2
    assert "standby" in c.procs.running
