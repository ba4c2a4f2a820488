"""Draining and resizing a worker at runtime, on both backends (issue 19): a drained worker
finishes what runs and takes nothing new, then says it is drained; a smaller size never stops
what runs and never over-commits; both outlive a scheduler restart; bad requests are 4xx in the
one error shape, and only admins may do it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from tests.system import System, until

FAST_POLL = {"limits_poll_seconds": 0.2}


async def worker(system: System, worker_id: str) -> dict[str, Any]:
    rows = (await system.client.get("/workers")).json()
    return dict(next(w for w in rows if w["id"] == worker_id))


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.system_settings(**FAST_POLL)
async def test_a_drained_worker_finishes_what_runs_and_takes_nothing_new(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=4096)
    await system.wait_worker("w1")
    running = (await system.submit(type="sleep", payload={"seconds": 1.0}))["id"]
    await system.wait_status(running, "running")
    async with await system.admin() as ops:
        r = await ops.post("/workers/w1/drain")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "draining" and r.json()["control"]["drain"] is True
        await asyncio.sleep(0.5)  # the scheduler's next poll
        later = (await system.submit(type="noop"))["id"]
        done = await system.wait_final([running])
        assert done[running]["status"] == "completed"  # what ran finished

        async def drained() -> bool:
            return (await worker(system, "w1"))["state"] == "drained"

        await until(drained)
        job = await system.job(later)
        assert job["status"] == "ready"
        assert job["waiting_reason"] == "no worker is accepting jobs (1 draining)"

        # A new scheduler keeps it drained (the control is in the database, not in memory).
        await system.stop("scheduler")
        system.start_scheduler()
        await asyncio.sleep(1.0)
        assert (await system.job(later))["status"] == "ready"

        r = await ops.post("/workers/w1/resume")
        assert r.status_code == 200 and r.json()["state"] == "idle", r.text
        done = await system.wait_final([later])
        assert done[later]["status"] == "completed"


@pytest.mark.system_settings(**FAST_POLL)
async def test_a_smaller_worker_never_stops_what_runs_and_never_overcommits(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=4096)
    await system.wait_worker("w1")
    first = [
        (await system.submit(type="sleep", payload={"seconds": 1.5}, cpu_units=2))["id"]
        for _ in range(2)
    ]
    for job_id in first:
        await system.wait_status(job_id, "running")
    async with await system.admin() as ops:
        r = await ops.patch("/workers/w1", json={"cpu_units": 2})
        assert r.status_code == 200, r.text
        shown = r.json()
        assert shown["cpu_units"] == 2 and shown["control"]["declared_cpu_units"] == 4
        await asyncio.sleep(0.5)
        third = (await system.submit(type="sleep", payload={"seconds": 0.1}, cpu_units=2))["id"]
        await system.wait_final([*first, third])
        jobs = {i: await system.job(i) for i in [*first, third]}
        assert {j["status"] for j in jobs.values()} == {"completed"}
        # 4 units in use on a worker now of 2: the third waited for both, not for one.
        assert when(jobs[third]["started_at"]) >= max(when(jobs[i]["finished_at"]) for i in first)
        assert (await worker(system, "w1"))["cpu_units"] == 2

        r = await ops.patch("/workers/w1", json={"cpu_units": None})  # its own size again
        assert r.status_code == 200 and r.json()["cpu_units"] == 4, r.text
        assert r.json()["control"]["cpu_units"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("patch", "/workers/w1", {}, 422, "give cpu_units, memory_mb or both"),
        ("patch", "/workers/w1", {"cpu_units": 0}, 422, "greater than or equal to 1"),
        ("patch", "/workers/w1", {"cpu_units": "2"}, 422, "valid integer"),
        ("patch", "/workers/w1", {"gpus": 2}, 422, "Extra inputs are not permitted"),
        ("patch", "/workers/nobody", {"cpu_units": 2}, 404, "no worker nobody"),
        ("post", "/workers/nobody/drain", None, 404, "no worker nobody"),
    ],
)
async def test_bad_worker_changes_are_refused(
    system: System, method: str, path: str, body: Any, status: int, words: str
) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=2, memory_mb=1024)
    await system.wait_worker("w1")
    async with await system.admin() as ops:
        r = await ops.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    assert words in r.text and "Traceback" not in r.text
    # Not an admin (every scope, but a tenant's key): refused.
    r = await system.client.post("/workers/w1/drain")
    assert r.status_code == 403, r.text
