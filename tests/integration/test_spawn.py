"""Jobs that spawn jobs (issue 19), on both backends: ``ctx.submit`` and ``ctx.continue_with``
from a thread job and from an isolated one, ``ctx.batch`` with an edge, children linked by
``parent_id`` and listed by ``GET /jobs?parent_id=``, in the parent's batch, made once across a
retry of the parent, and the continuation run after every child."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from models.messages import JobsSpawned, SpawnedJob
from scheduler.spawns import insert_spawned
from tests.system import System
from worker.spawn import child_id


async def _children(system: System, parent: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"parent_id": parent, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await system.client.get("/jobs", params=params)).json()
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


async def test_a_retried_parent_makes_its_100_children_once_and_the_continuation_runs_last(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    await system.wait_worker("w1")
    batch = await system.batch(
        {
            "key": "parent",
            "type": "fan_out",
            "payload": {"n": 100, "fail_first": True},
            "retry": {"max_attempts": 2, "initial_delay_seconds": 0},
        },
    )
    parent_id = batch["parent"]["id"]
    await system.wait_final([parent_id])
    parent = await system.job(parent_id)
    assert parent["status"] == "completed" and parent["attempts"] == 2
    continuation_id = parent["result"]["continuation"]
    await system.wait_final([continuation_id], timeout=60)
    continuation = await system.job(continuation_id)
    assert continuation["status"] == "completed", continuation
    assert continuation["result"] == {"gathered": 100}
    children = await _children(system, parent_id)
    holds = [c for c in children if c["type"] == "hold"]
    # once each, though both attempts asked for them: 100 holds and one continuation
    assert len(holds) == 100 and len(children) == 101
    assert sorted(c["payload"]["i"] for c in holds) == list(range(100))
    assert {c["batch_id"] for c in children} == {parent["batch_id"]}
    assert all(c["parent_id"] == parent_id and c["tenant"] == "default" for c in children)
    done = await system.wait_final([c["id"] for c in holds])
    assert {j["status"] for j in done.values()} == {"completed"}
    assert sorted(continuation["depends_on"]) == sorted(c["id"] for c in holds)
    started = (await system.wait_final([continuation_id]))[continuation_id]["started_at"]
    assert started >= max(j["finished_at"] for j in done.values())
    assert continuation["parent_id"] == parent_id
    report = (await system.client.get(f"/batches/{parent['batch_id']}")).json()
    assert report["job_count"] == 102 and report["totals"]["completed"] == 102, report
    assert report["done"] is True


async def test_a_batch_from_a_job_keeps_its_edges_and_an_isolated_job_can_spawn(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    await system.wait_worker("w1")
    dag = (await system.submit(type="spawn_dag"))["id"]
    isolated = (await system.submit(type="spawn_isolated"))["id"]
    await system.wait_final([dag, isolated])
    parents = {i: await system.job(i) for i in (dag, isolated)}
    assert {p["status"] for p in parents.values()} == {"completed"}, parents
    first, second = parents[dag]["result"]["first"], parents[dag]["result"]["second"]
    rows = await system.wait_final([first, second])
    assert rows[second]["started_at"] >= rows[first]["finished_at"]
    kids = {i: await system.job(i) for i in (first, second)}
    assert kids[first]["priority"] == "high" and kids[first]["name"] == "first"
    assert kids[second]["depends_on"] == [first]
    assert parents[dag]["batch_id"] is None and kids[first]["batch_id"] is None
    child, then = parents[isolated]["result"]["child"], parents[isolated]["result"]["continuation"]
    await system.wait_final([child, then])
    ends = {i: await system.job(i) for i in (child, then)}
    assert {j["status"] for j in ends.values()} == {"completed"}
    assert ends[then]["depends_on"] == [child]
    assert {j["parent_id"] for j in ends.values()} == {isolated}


async def test_jobs_of_an_attempt_that_no_longer_runs_or_that_cannot_be_inserted_are_dropped(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    await system.wait_worker("w1")
    done = (await system.submit(type="noop"))["id"]
    await system.wait_final([done])
    now = datetime.now(UTC)

    def spawned(parent: str, attempt: int, *jobs: SpawnedJob) -> JobsSpawned:
        return JobsSpawned(parent_id=parent, attempt=attempt, worker_id="w1", jobs=list(jobs))

    def job(key: str, depends_on: list[uuid.UUID] | None = None) -> SpawnedJob:
        return SpawnedJob(
            id=child_id(uuid.UUID(done), key),
            key=key,
            name=key,
            job_type="noop",
            priority=5,
            cpu_units=1,
            memory_mb=1,
            max_attempts=1,
            initial_delay_seconds=0,
            backoff_multiplier=1,
            depends_on=depends_on or [],
        )

    # the parent has finished: its late jobs are dropped
    assert await insert_spawned(system.engine, [spawned(done, 1, job("late"))], now) == []
    # a parent that runs: a job depending on a job that does not exist is refused, the
    # message's other jobs with it, while the next message still goes in
    running = (await system.submit(type="hold", payload={"seconds": 3}))["id"]
    await system.wait_status(running, "running")
    bad = spawned(running, 1, job("ok"), job("orphan", [uuid.uuid4()]))
    good = spawned(running, 1, job("fine"))
    assert await insert_spawned(system.engine, [bad, good], now) == [
        child_id(uuid.UUID(done), "fine")
    ]
    assert (await system.client.get(f"/jobs/{child_id(uuid.UUID(done), 'ok')}")).status_code == 404
    # delivered twice: inserted once
    assert await insert_spawned(system.engine, [good], now) == []
