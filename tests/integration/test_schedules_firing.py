"""Cron schedules fired by the leading scheduler, on PostgreSQL + RabbitMQ and embedded: each
tick once (its run's idempotency key names the tick), runs link back (``schedule_id``, the
``GET /jobs`` filter), the overlap rule skips, and after a scheduler's downtime the catch-up
rule decides (real processes killed at the tick: tests/e2e/test_schedule_processes)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.system import System, until

QUICK = {"schedules_poll_seconds": 0.2}


def tick_of(job: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(job["idempotency_key"].split(":", 2)[2])


async def runs(system: System, schedule_id: str) -> list[dict[str, Any]]:
    answer = await system.client.get("/jobs", params={"schedule_id": schedule_id, "limit": 500})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    assert all(j["schedule_id"] == schedule_id for j in items)
    # By tick: the runs one catch-up fires share their created_at (one transaction), so
    # that order is arbitrary between them (sorting by it made the test flaky).
    return sorted(items, key=lambda j: (j["created_at"], j["idempotency_key"] or ""))


async def schedule(system: System, **body: Any) -> str:
    answer = await system.client.post("/schedules", json={"cron": "* * * * * *", **body})
    assert answer.status_code == 201, answer.text
    sid: str = answer.json()["id"]
    return sid


async def until_runs(system: System, sid: str, n: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        got = await runs(system, sid)
        return got if len(got) >= n else None

    found: list[dict[str, Any]] = await until(enough, timeout=30)
    return found


async def down_for(system: System, seconds: float) -> None:
    await system.stop("scheduler")
    await asyncio.sleep(seconds)
    system.start_scheduler()


@pytest.mark.system_settings(**QUICK)
async def test_every_tick_once_and_all_caught_up_after_downtime(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    sid = await schedule(system, job={"type": "noop"}, overlap="allow", catchup="all")
    await until_runs(system, sid, 2)
    await down_for(system, 2.5)
    before = len(await runs(system, sid))
    await until_runs(system, sid, before + 4)
    await system.client.post(f"/schedules/{sid}/pause")
    fired = await runs(system, sid)
    ticks = [tick_of(j) for j in fired]
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], ticks
    done = await system.wait_final([j["id"] for j in fired])
    assert {j["status"] for j in done.values()} == {"completed"}
    shown = (await system.client.get(f"/schedules/{sid}")).json()
    assert shown["runs"] == len(fired)
    assert shown["last_job_id"] == fired[-1]["id"]


@pytest.mark.system_settings(**QUICK)
async def test_missed_ticks_are_skipped_with_catchup_none(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    sid = await schedule(system, job={"type": "noop"}, overlap="allow")
    await until_runs(system, sid, 2)
    await down_for(system, 3.0)
    before = len(await runs(system, sid))
    await until_runs(system, sid, before + 2)
    await system.client.post(f"/schedules/{sid}/pause")
    ticks = [tick_of(j) for j in await runs(system, sid)]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(set(ticks)) == len(ticks)
    assert max(gaps) >= timedelta(seconds=2), ticks  # the downtime's ticks did not fire
    shown = (await system.client.get(f"/schedules/{sid}")).json()
    assert "missed while no scheduler led (catchup none)" in shown["last_skip"]


@pytest.mark.system_settings(**QUICK)
async def test_skip_while_the_previous_run_is_active(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    sid = await schedule(system, job={"type": "sleep", "payload": {"seconds": 2.2}})
    await until_runs(system, sid, 2)
    await system.client.post(f"/schedules/{sid}/pause")
    fired = await runs(system, sid)
    ticks = [tick_of(j) for j in fired]
    assert all(b - a >= timedelta(seconds=2) for a, b in itertools.pairwise(ticks))
    shown = (await system.client.get(f"/schedules/{sid}")).json()
    assert shown["skipped"] >= 2
    assert "is still active (overlap skip)" in shown["last_skip"]


@pytest.mark.system_settings(**QUICK)
async def test_cancel_previous_and_batches(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    dag = {
        "name": "pair",
        "jobs": [
            {"key": "a", "type": "sleep", "payload": {"seconds": 30}},
            {"key": "b", "type": "noop", "depends_on": ["a"]},
        ],
    }
    sid = await schedule(system, cron="*/2 * * * * *", batch=dag, overlap="cancel_previous")
    fired = await until_runs(system, sid, 4)
    await system.client.post(f"/schedules/{sid}/pause")
    first_batch = fired[0]["batch_id"]
    assert first_batch is not None
    mine = [j for j in fired if j["batch_id"] == first_batch]
    done = await system.wait_final([j["id"] for j in mine])
    assert {j["status"] for j in done.values()} == {"cancelled"}
    batch = (await system.client.get(f"/batches/{first_batch}")).json()
    assert batch["name"] == "pair"
