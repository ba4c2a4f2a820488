"""Pause and resume, on both backends (issue 19): a batch paused mid-run starts nothing new
while what runs finishes, and completes once resumed; a paused type waits while another runs;
pausing everything outlives a scheduler restart; each change is a ``pause.changed`` event;
bad requests get 403/404 in the one error shape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.system import System, until

FAST_POLL = {"limits_poll_seconds": 0.2}


async def statuses(system: System, ids: list[str]) -> dict[str, str]:
    return {i: (await system.job(i))["status"] for i in ids}


@pytest.mark.system_settings(**FAST_POLL)
async def test_a_batch_paused_mid_run_starts_nothing_new_then_completes(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    # At INFO, as smartq runs: the pause's own log line once killed the scheduler's pass.
    caplog.set_level(logging.INFO)
    system.start_scheduler()
    system.start_worker("w1", cpu_units=2, memory_mb=2048)
    await system.wait_worker("w1")
    jobs = {f"s{i}": {"type": "sleep", "payload": {"seconds": 0.6}} for i in range(8)}
    r = await system.client.post(
        "/jobs/batch", json={"jobs": [{"key": k, **v} for k, v in jobs.items()]}
    )
    assert r.status_code == 201, r.text
    batch_id, ids = r.json()["batch_id"], [j["id"] for j in r.json()["jobs"]]
    await system.wait_status(ids[0], "running")
    async with system.stream("type=pause.changed") as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        r = await system.client.post(f"/batches/{batch_id}/pause")
        assert r.status_code == 200 and r.json()["paused"] is True, r.text
        event = await ws.receive_json(5)
        assert (event["type"], event["kind"], event["paused"]) == ("pause.changed", "batch", True)
        assert event["name"] == batch_id

    async def settled() -> bool:
        return "running" not in (await statuses(system, ids)).values()

    await until(settled)  # what ran when it was paused finished
    before = await statuses(system, ids)
    done = sum(s == "completed" for s in before.values())
    assert 1 <= done < len(ids), before
    await asyncio.sleep(1.0)
    assert await statuses(system, ids) == before  # nothing new started
    waiting = next(i for i, s in before.items() if s == "ready")
    reason = (await system.job(waiting))["waiting_reason"]
    assert reason.startswith(f"paused: batch {batch_id} paused by key "), reason

    r = await system.client.post(f"/batches/{batch_id}/resume")
    assert r.status_code == 200 and r.json()["paused"] is False, r.text
    final = await system.wait_final(ids)
    assert {j["status"] for j in final.values()} == {"completed"}


@pytest.mark.system_settings(**FAST_POLL)
async def test_a_paused_type_waits_while_another_runs_and_everything_outlives_a_restart(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=4096)
    await system.wait_worker("w1")
    async with await system.admin() as ops:
        assert (await ops.post("/types/sleep/pause")).status_code == 200
        await asyncio.sleep(0.5)
        held = (await system.submit(type="sleep", payload={"seconds": 0.1}))["id"]
        other = (await system.submit(type="noop"))["id"]
        assert (await system.wait_final([other]))[other]["status"] == "completed"
        job = await system.job(held)
        assert job["status"] == "ready"
        assert job["waiting_reason"].startswith("paused: job type sleep paused by key ")
        assert [p["name"] for p in (await ops.get("/admin/pauses")).json()] == ["sleep"]

        r = await ops.post("/admin/pause")
        assert r.status_code == 200 and r.json()["kind"] == "all"
        assert (await ops.post("/types/sleep/resume")).status_code == 200
        await system.stop("scheduler")  # a new leader reads the pause back
        system.start_scheduler()
        await asyncio.sleep(1.0)
        more = (await system.submit(type="noop"))["id"]
        await asyncio.sleep(1.0)
        assert await statuses(system, [held, more]) == {held: "ready", more: "ready"}
        reason = (await system.job(more))["waiting_reason"]
        assert reason.startswith("paused: everything paused by key "), reason

        assert (await ops.post("/admin/resume")).status_code == 200
        final = await system.wait_final([held, more])
        assert {j["status"] for j in final.values()} == {"completed"}


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/admin/pause", 403, "admin"),
        ("/types/noop/pause", 403, "admin"),
        ("/batches/00000000-0000-0000-0000-000000000001/pause", 404, "no batch"),
        ("/batches/not-an-id/pause", 422, "uuid"),
    ],
)
async def test_pauses_refused(system: System, path: str, status: int, words: str) -> None:
    r = await system.client.post(path)  # a tenant's key with every scope, not an admin's
    assert r.status_code == status, r.text
    body: Any = r.json()
    assert words in r.text and "error" in body


async def test_stopping_a_batch_cancels_what_waits_and_stops_what_runs(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=1, memory_mb=1024)
    await system.wait_worker("w1")
    specs = [{"key": "long", "type": "sleep", "payload": {"seconds": 30}}]
    specs += [{"key": f"n{i}", "type": "noop", "depends_on": ["long"]} for i in range(3)]
    specs += [{"key": "free", "type": "noop"}]
    r = await system.client.post("/jobs/batch", json={"jobs": specs})
    batch_id, made = r.json()["batch_id"], {j["key"]: j["id"] for j in r.json()["jobs"]}
    await system.wait_status(made["long"], "running")
    outside = (await system.submit(type="noop", depends_on=[made["n0"]]))["id"]
    r = await system.client.post(f"/batches/{batch_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json() == {"batch_id": batch_id, "cancelled": 4, "stopping": 1}
    final = await system.wait_final([*made.values(), outside])
    assert {j["status"] for j in final.values()} == {"cancelled"}
    assert (await system.job(made["n1"]))["status_reason"] == "batch cancelled by user"
    report = (await system.client.get(f"/batches/{batch_id}")).json()
    assert report["done"] is True and report["totals"]["cancelled"] == 5
    again = await system.client.post(f"/batches/{batch_id}/cancel")
    assert again.json()["cancelled"] == again.json()["stopping"] == 0
    missing = await system.client.post(f"/batches/{made['long']}/cancel")
    assert missing.status_code == 404 and "no batch" in missing.text
