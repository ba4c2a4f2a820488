"""Worker life cycle through the real scheduler, workers and API, on PostgreSQL + RabbitMQ and on
the embedded SQLite + in-process broker: a restart that must not storm, job types in placement,
dispatches meant for an earlier start of a worker, a drain that takes nothing new, and one truth
for capacity held by a timed-out thread."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from models.messages import Dispatch, Heartbeat
from models.tables import Worker
from smartq import topology
from smartq.registry import Registry, registry
from tests.system import System

workers_t = Worker.__table__  # type: ignore[attr-defined]


def only(*names: str) -> Registry:
    """A registry with just these types of the test process's registry."""
    out = Registry()
    for name in names:
        out.register(registry.get(name))
    return out


async def history(system: System, job_id: str) -> list[tuple[int, str | None, str | None]]:
    rows = [a for a in await system.attempts() if str(a["job_id"]) == job_id]
    return sorted((a["attempt"], a["worker_id"], a["outcome"]) for a in rows)


async def settled_lines(system: System, job_id: str) -> list[tuple[int, str]]:
    """The job's stored log lines once their count stops changing."""
    last: list[tuple[int, str]] | None = None
    for _ in range(40):
        logs = (await system.client.get(f"/jobs/{job_id}/logs")).json()
        lines = [(line["attempt"], line["message"]) for line in logs["lines"]]
        if lines and lines == last:
            return lines
        last = lines
        await asyncio.sleep(0.1)
    return last or []


async def test_a_restart_does_not_trust_a_worker_it_never_heard(system: System) -> None:
    """The previous run's worker left a row that still says ``idle`` (its goodbye was never
    written). The new scheduler must not place on it: before the fix it dispatched there,
    the dispatch was unroutable, and the job went round thousands of attempts."""
    now = datetime.now(UTC)
    async with system.engine.begin() as conn:
        await conn.execute(
            insert(workers_t).values(
                id="previous-run",
                hostname="h",
                cpu_units=64,
                memory_mb=65536,
                state="idle",
                job_types=["sleep"],
                started_at=now - timedelta(minutes=5),
                last_heartbeat=now,
                draining=False,
                jobs_succeeded=0,
                jobs_failed=0,
            )
        )
    system.start_scheduler()
    system.start_worker("this-run", cpu_units=4)
    jobs = [
        await system.submit(type="sleep", payload={"seconds": 0.3}, retry={"max_attempts": 3})
        for _ in range(4)
    ]
    final = await system.wait_final([j["id"] for j in jobs], timeout=20)
    assert {j["status"] for j in final.values()} == {"completed"}
    assert {j["attempts"] for j in final.values()} == {1}
    for j in jobs:
        assert await history(system, j["id"]) == [(1, "this-run", "succeeded")]


async def test_a_dispatch_no_queue_takes_is_no_attempt_and_runs_elsewhere(system: System) -> None:
    """A worker that heartbeats but has no queue (it is gone; a stale heartbeat was still in
    flight) gets one dispatch, which comes back unroutable: the job runs at once on a real
    worker as attempt 1 of 1, and the ghost gets nothing more."""
    system.start_scheduler()
    system.start_worker("real", cpu_units=8, memory_mb=8192)
    await system.wait_worker("real")
    now = datetime.now(UTC)
    ghost = Heartbeat(
        worker_id="ghost",
        hostname="h",
        cpu_units=1,  # the tightest fit: chosen first
        memory_mb=256,
        job_types=registry.names(),
        running=[],
        started_at=now,
        ts=now,
    )
    await system.broker.publish(topology.heartbeat_key("ghost"), ghost.dumps())
    await system.wait_worker("ghost")
    jobs = [await system.submit(retry={"max_attempts": 1}) for _ in range(3)]
    t0 = time.monotonic()
    final = await system.wait_final([j["id"] for j in jobs], timeout=10)
    assert time.monotonic() - t0 < 2.0  # not after the ghost's lease
    assert {j["status"] for j in final.values()} == {"completed"}
    for j in jobs:
        assert await history(system, j["id"]) == [(1, "real", "succeeded")]


async def test_a_job_goes_only_to_a_worker_that_knows_its_type(system: System) -> None:
    system.start_scheduler()
    system.start_worker("plain", cpu_units=8, job_registry=only("noop", "sleep"))
    await system.wait_worker("plain")
    job = await system.submit(type="greet", payload={"name": "x"}, retry={"max_attempts": 1})
    await asyncio.sleep(0.6)
    waiting = await system.job(job["id"])
    assert waiting["status"] == "ready", waiting
    assert "no live worker runs job type 'greet'" in waiting["waiting_reason"]
    assert await history(system, job["id"]) == []
    system.start_worker("greeter", cpu_units=1, job_registry=only("greet"))
    final = (await system.wait_final([job["id"]], timeout=10))[job["id"]]
    assert final["status"] == "completed" and final["result"] == {"hello": "x"}
    assert await history(system, job["id"]) == [(1, "greeter", "succeeded")]


async def test_a_worker_drops_dispatches_meant_for_its_earlier_start(system: System) -> None:
    """Dispatches left in a worker's queue by its earlier life (the scheduler already ran
    those attempts elsewhere) must not run when it starts again under the same id."""
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w-other", cpu_units=2)
    done = await system.submit(type="log", payload={"lines": 2})
    final = (await system.wait_final([done["id"]]))[done["id"]]
    assert final["status"] == "completed"
    lines_before = await settled_lines(system, done["id"])
    assert lines_before
    expires = system.settings.worker_queue_expires_seconds
    await system.broker.declare(topology.worker_queue("w-c", system.broker.exchange, expires))
    stale = Dispatch(
        job_id=uuid.UUID(done["id"]),
        attempt=1,
        worker_id="w-c",
        job_type="log",
        name="stale",
        payload={"lines": 2},
        cpu_units=1,
        memory_mb=256,
        dispatched_at=datetime.now(UTC) - timedelta(minutes=1),
        incarnation="2026-01-01T00:00:00.000000+00:00",
    )
    await system.broker.publish(topology.dispatch_key("w-c", stale.job_id), stale.dumps())
    worker = system.start_worker("w-c", cpu_units=2)
    await system.wait_worker("w-c")
    await asyncio.sleep(0.5)
    assert worker.executor.running() == []
    assert await history(system, done["id"]) == [(1, "w-other", "succeeded")]
    assert await settled_lines(system, done["id"]) == lines_before


async def test_a_draining_worker_gets_nothing_new_and_hands_back_at_once(system: System) -> None:
    system.settings.shutdown_grace_seconds = 3.0
    system.start_scheduler()
    leaving = system.start_worker("leaving", cpu_units=4)
    await system.wait_worker("leaving")
    long = await system.submit(type="sleep", payload={"seconds": 1.5})
    await system.wait_status(long["id"], "running")
    stopping = asyncio.create_task(system.stop_worker("leaving"))
    await asyncio.sleep(0.3)  # the drain heartbeat is processed
    assert leaving.draining
    system.start_worker("staying", cpu_units=4)
    await system.wait_worker("staying")
    later = await system.submit(retry={"max_attempts": 1})
    t0 = time.monotonic()
    assert (await system.wait_final([later["id"]], timeout=5))[later["id"]]["status"] == (
        "completed"
    )
    assert time.monotonic() - t0 < 1.5
    assert await history(system, later["id"]) == [(1, "staying", "succeeded")]
    # A dispatch that reaches it during the drain (decided before the scheduler heard) is
    # handed back at once, not left in its queue for the lease.
    sent: list[Any] = []
    reported = asyncio.Event()
    report = leaving.executor._report  # type: ignore[attr-defined]

    def spy(r: Any) -> None:
        sent.append(r)
        if r.job_id == racing.job_id:
            reported.set()
        report(r)

    leaving.executor._report = spy  # type: ignore[attr-defined]
    racing = Dispatch(
        job_id=uuid.uuid4(),
        attempt=1,
        worker_id="leaving",
        job_type="noop",
        name="racing",
        payload={},
        cpu_units=1,
        memory_mb=1,
        dispatched_at=datetime.now(UTC),
        incarnation=leaving.incarnation,
    )
    await system.broker.publish(topology.dispatch_key("leaving", racing.job_id), racing.dumps())
    await asyncio.wait_for(reported.wait(), 1.0)
    # Only the racing dispatch's reports: the long job, still running there, may end meanwhile
    # (it did, on a loaded CI machine, and its success was taken for the racing one's report).
    mine = [(r.job_id, r.outcome.value) for r in sent if r.job_id == racing.job_id]
    assert mine == [(racing.job_id, "handed_back")]
    await stopping
    assert (await system.wait_final([long["id"]]))[long["id"]]["status"] == "completed"


async def test_capacity_held_by_a_timed_out_thread_is_one_truth(system: System) -> None:
    """The stubborn thread ignores its timeout and keeps 2 cpu_units: GET /workers, the
    waiting reason and /metrics all say so, until it returns."""
    system.start_scheduler()
    system.start_worker("w1", cpu_units=2)
    stubborn = await system.submit(
        type="stubborn",
        payload={"seconds": 2.5},
        timeout_seconds=0.3,
        retry={"max_attempts": 1},
        cpu_units=2,
    )
    assert (await system.wait_final([stubborn["id"]]))[stubborn["id"]]["status"] == "failed"
    follower = await system.submit(cpu_units=2)
    await asyncio.sleep(0.5)
    [w1] = (await system.client.get("/workers")).json()
    assert (w1["cpu_in_use"], w1["running_jobs"]) == (2, 1), w1
    assert [(h["job_id"], h["attempt"]) for h in w1["lingering"]] == [(stubborn["id"], 1)]
    reason = (await system.job(follower["id"]))["waiting_reason"]
    assert f"timed-out job {stubborn['id']} (attempt 1)" in reason, reason
    assert reason.startswith("needs 2 cpu_units; most free on any worker is 0")
    metrics = (await system.client.get("/metrics")).text
    assert 'smartq_worker_cpu_units_in_use{worker="w1"} 2.0' in metrics
    final = (await system.wait_final([follower["id"]], timeout=10))[follower["id"]]
    assert final["status"] == "completed"
    [w1] = (await system.client.get("/workers")).json()
    assert (w1["cpu_in_use"], w1["running_jobs"], w1["lingering"]) == (0, 0, [])
