"""Predictions seen from outside, on both backends: a type's learned run time on ``GET /types``
(kept across a scheduler restart, read back from the attempts), and a waiting job's predicted
start on ``GET /jobs/{id}`` and in its waiting reason, and a running batch's predicted finish on
``GET /batches/{id}`` (issue 18)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from smartq.client.batch import BatchReport
from tests.system import System, until


async def learned(system: System, name: str, runs: int) -> dict[str, Any] | None:
    types = (await system.client.get("/types")).json()
    row = next((t for t in types if t["name"] == name), None)
    return row if row is not None and row["runs_seen"] >= runs else None


async def test_run_times_are_learned_shown_and_kept_across_a_restart(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=2, memory_mb=2048)
    ids = [(await system.submit(type="sleep", payload={"seconds": 0.3}))["id"] for _ in range(3)]
    finals = await system.wait_final(ids)
    assert {j["status"] for j in finals.values()} == {"completed"}
    row = await until(lambda: learned(system, "sleep", 3))
    assert 0.25 <= row["predicted_seconds"] <= 1.5, row
    assert row["p90_seconds"] >= row["predicted_seconds"]

    await system.stop("scheduler")  # a new scheduler reads the runs back from job_attempts
    system.start_scheduler()
    row = await until(lambda: learned(system, "sleep", 3))
    assert 0.25 <= row["predicted_seconds"] <= 1.5, row


async def test_a_waiting_job_has_a_predicted_start(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=1, memory_mb=2048)
    first = [(await system.submit(type="sleep", payload={"seconds": 0.5}))["id"]]
    await system.wait_final(first)
    await until(lambda: learned(system, "sleep", 1))
    busy = (await system.submit(type="sleep", payload={"seconds": 3}))["id"]
    await system.wait_status(busy, "running")
    waiting = (await system.submit(type="sleep", payload={"seconds": 0.5}))["id"]
    asked = time.time()

    async def predicted() -> dict[str, Any] | None:
        job = await system.job(waiting)
        return job if job.get("predicted_start_at") else None

    job = await until(predicted)
    assert job["status"] == "ready"
    start = datetime.fromisoformat(job["predicted_start_at"]).timestamp()
    late = datetime.fromisoformat(job["predicted_start_late_at"]).timestamp()
    assert asked - 1 <= start <= late <= asked + 10, job
    assert "predicted start " in job["waiting_reason"], job["waiting_reason"]
    done = await system.wait_final([busy, waiting])
    assert done[waiting]["status"] == "completed"
    after = await system.job(waiting)
    assert after["predicted_start_at"] is None


async def test_a_running_batch_has_a_predicted_finish_and_none_once_finished(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=1, memory_mb=2048)
    await system.wait_final([(await system.submit(type="sleep", payload={"seconds": 0.3}))["id"]])
    await until(lambda: learned(system, "sleep", 1))
    chain = [
        {"key": f"s{n}", "type": "sleep", "payload": {"seconds": 1.0}}
        | ({"depends_on": [f"s{n - 1}"]} if n else {})
        for n in range(3)
    ]
    r = await system.client.post("/jobs/batch", json={"name": "chain", "jobs": chain})
    assert r.status_code == 201, r.text
    batch_id, ids = r.json()["batch_id"], [j["id"] for j in r.json()["jobs"]]
    asked = time.time()

    async def predicted() -> dict[str, Any] | None:
        report = (await system.client.get(f"/batches/{batch_id}")).json()
        return report if report.get("predicted_finish_at") else None

    report = await until(predicted)
    assert not report["done"]
    finish = datetime.fromisoformat(report["predicted_finish_at"]).timestamp()
    late = datetime.fromisoformat(report["predicted_finish_late_at"]).timestamp()
    # three runs of about a second (0.3 learned, then 1.0 each) are left: in the future
    assert asked < finish <= late <= asked + 30, report
    sdk = BatchReport.of(report)  # the SDK's batch report reads it too
    assert sdk.predicted_finish_at is not None
    assert sdk.predicted_finish_at.timestamp() == finish
    await system.wait_final(ids)
    done = (await system.client.get(f"/batches/{batch_id}")).json()
    assert done["done"] and done["predicted_finish_at"] is None, done
