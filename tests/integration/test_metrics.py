"""``GET /metrics`` figures match what happened, ``GET /workers`` shows the workers, and the
logger's retention deletes old lines — on both backends."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from api.store import logs_t
from logger import service as logger_service
from models.types import utcnow
from tests.system import System


async def scrape(system: System) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await system.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def scrape_until(system: System, wanted: dict[Any, float], timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        figures = await scrape(system)
        if all(figures.get(k) == v for k, v in wanted.items()) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.1)


def by_type(t: str) -> tuple[tuple[str, str], ...]:
    return (("type", t),)


async def test_metrics_match_what_happened(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=2048)
    system.start_logger()
    ids = [(await system.submit(type="noop"))["id"] for _ in range(5)]
    for _ in range(2):
        job = await system.submit(
            type="flaky",
            payload={"fail_times": -1},
            retry={"max_attempts": 3, "initial_delay_seconds": 0.05},
        )
        ids.append(job["id"])
    final = await system.wait_final(ids)
    assert sorted(j["status"] for j in final.values()) == ["completed"] * 5 + ["failed"] * 2
    wanted = {
        ("smartq_jobs_submitted_total", by_type("noop")): 5,
        ("smartq_jobs_submitted_total", by_type("flaky")): 2,
        ("smartq_jobs_completed_total", by_type("noop")): 5,
        ("smartq_jobs_failed_total", by_type("flaky")): 2,
        ("smartq_jobs_retried_total", by_type("flaky")): 4,  # attempts - 1, per job
        ("smartq_job_queued_seconds_count", by_type("noop")): 5,
        ("smartq_job_queued_seconds_count", by_type("flaky")): 2,
        ("smartq_job_run_seconds_count", by_type("noop")): 5,
        ("smartq_job_run_seconds_count", by_type("flaky")): 6,
        ("smartq_jobs", (("status", "completed"),)): 5,
        ("smartq_jobs", (("status", "failed"),)): 2,
        ("smartq_jobs", (("status", "running"),)): 0,
        ("smartq_worker_cpu_units", (("worker", "w1"),)): 4,
        ("smartq_worker_memory_mb", (("worker", "w1"),)): 2048,
        ("smartq_worker_cpu_units_in_use", (("worker", "w1"),)): 0,
        ("smartq_worker_state", (("state", "idle"), ("worker", "w1"))): 1,
    }
    figures = await scrape_until(system, wanted)
    assert {k: figures.get(k) for k in wanted} == wanted
    assert ("smartq_jobs_cancelled_total", by_type("noop")) not in figures
    # Every attempt logs at least its start: 11 attempts, all streamed and stored.
    streamed = figures[("smartq_log_lines_streamed_total", ())]
    assert streamed >= 11
    figures = await scrape_until(system, {("smartq_log_lines_stored_total", ()): streamed})
    assert figures[("smartq_log_lines_stored_total", ())] == streamed


async def test_cancelled_jobs_are_counted_by_type(system: System) -> None:
    system.start_scheduler()
    job = await system.submit(type="noop", run_at=(utcnow() + timedelta(hours=1)).isoformat())
    child = await system.submit(type="sleep", depends_on=[job["id"]])
    r = await system.client.patch(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and len(r.json()["cancelled"]) == 2
    wanted = {
        ("smartq_jobs_cancelled_total", by_type("noop")): 1,
        ("smartq_jobs_cancelled_total", by_type("sleep")): 1,
    }
    figures = await scrape_until(system, wanted)
    assert {k: figures.get(k) for k in wanted} == wanted
    assert (await system.job(child["id"]))["status"] == "cancelled"


async def test_workers_show_capacity_use_and_history(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=2048)
    job = await system.submit(type="hold", payload={"seconds": 0.6}, cpu_units=3, memory_mb=512)
    await system.wait_status(job["id"], "running")
    deadline = time.monotonic() + 5
    while True:
        workers = (await system.client.get("/workers")).json()
        if (workers and workers[0]["state"] == "busy") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    [w] = workers
    assert (w["id"], w["state"], w["cpu_units"], w["memory_mb"]) == ("w1", "busy", 4, 2048)
    assert (w["cpu_in_use"], w["memory_in_use"], w["running_jobs"]) == (3, 512, 1)
    assert w["uptime_seconds"] >= 0 and w["last_heartbeat"]
    await system.wait_final([job["id"]])
    while True:
        [w] = (await system.client.get("/workers")).json()
        if (w["jobs_succeeded"] == 1 and w["state"] == "idle") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (w["state"], w["running_jobs"], w["jobs_succeeded"], w["jobs_failed"]) == (
        "idle",
        0,
        1,
        0,
    )
    assert w["cpu_percent"] is not None and w["rss_mb"] > 0  # psutil, via monitoring
    offline = (await system.client.get("/workers", params={"state": "offline"})).json()
    assert offline == []


async def test_retention_deletes_old_lines_in_batches(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await system.submit(type="noop")
    old, new = utcnow() - timedelta(days=40), utcnow()
    rows = [
        {
            "job_id": uuid.UUID(job["id"]),
            "attempt": 1,
            "seq": i,
            "ts": old if i < 12 else new,
            "level": "info",
            "message": f"line {i}",
        }
        for i in range(15)
    ]
    async with system.engine.begin() as conn:
        await conn.execute(logs_t.insert(), rows)
    monkeypatch.setattr(logger_service, "RETENTION_BATCH", 5)  # several batches in one round
    store = logger_service.LogStore(system.settings, system.engine, system.broker)
    assert await store.retention() == 12
    async with system.engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(logs_t))).scalar()
    assert left == 3
