"""Jobs submitted over REST run to the end through the real scheduler, workers and logger, on
PostgreSQL + RabbitMQ and on the embedded SQLite + in-process broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.system import System


def node(key: str, deps: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"key": key, "type": kw.pop("type", "noop"), "depends_on": deps or [], **kw}


async def test_dag_runs_in_dependency_order(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4)
    system.start_logger()
    made = await system.batch(
        node("a", type="sleep", payload={"seconds": 0.1}),
        node("b", ["a"], type="log", payload={"lines": 3}),
        node("c", ["a"]),
        node("d", ["b", "c"]),
    )
    final = await system.wait_final([j["id"] for j in made.values()])
    assert {j["status"] for j in final.values()} == {"completed"}
    by_key = {k: final[v["id"]] for k, v in made.items()}
    for child, parents in {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.items():
        for parent in parents:
            assert by_key[child]["started_at"] >= by_key[parent]["finished_at"]
    assert by_key["b"]["result"] == {"lines": 3}
    logs = (await system.client.get(f"/jobs/{made['b']['id']}/logs")).json()
    deadline = time.monotonic() + 5
    while len(logs["lines"]) < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        logs = (await system.client.get(f"/jobs/{made['b']['id']}/logs")).json()
    assert [ln["message"] for ln in logs["lines"]][1:4] == [
        "line 1 of 3",
        "line 2 of 3",
        "line 3 of 3",
    ]
    assert logs["attempts"][0]["outcome"] == "succeeded"
    assert logs["attempts"][0]["worker_id"] == "w1"
    assert isinstance(datetime.fromisoformat(logs["attempts"][0]["finished_at"]), datetime)


def peak_use(attempts: list[dict[str, Any]], worker: str) -> tuple[int, int]:
    """Highest cpu and memory a worker held at once, from the recorded attempts."""
    edges: list[tuple[datetime, int, int, int]] = []
    for a in attempts:
        if a["worker_id"] != worker or a["started_at"] is None or a["finished_at"] is None:
            continue
        edges.append((a["started_at"], 1, a["cpu_units"], a["memory_mb"]))
        edges.append((a["finished_at"], 0, -a["cpu_units"], -a["memory_mb"]))
    cpu = mem = peak_cpu = peak_mem = 0
    for _, _, dc, dm in sorted(edges):  # ends (0) sort before starts (1) at the same instant
        cpu, mem = cpu + dc, mem + dm
        peak_cpu, peak_mem = max(peak_cpu, cpu), max(peak_mem, mem)
    return peak_cpu, peak_mem


async def test_failed_parent_cancels_descendants_with_reason(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    made = await system.batch(
        node(
            "root",
            type="flaky",
            payload={"fail_times": -1},
            retry={"max_attempts": 2, "initial_delay_seconds": 0.05},
        ),
        node("child", ["root"]),
        node("grandchild", ["child"]),
        node("other"),
    )
    final = await system.wait_final([j["id"] for j in made.values()])
    root = final[made["root"]["id"]]
    assert root["status"] == "failed" and root["attempts"] == 2
    assert "flaky: attempt 2 fails" in root["error"]
    for key in ("child", "grandchild"):
        job = final[made[key]["id"]]
        assert job["status"] == "cancelled"
        assert job["attempts"] == 0
        assert job["status_reason"].startswith(f"upstream job root ({made['root']['id']}) failed")
    assert final[made["other"]["id"]]["status"] == "completed"


async def test_jobs_submitted_after_their_dependencies_ended_see_how_they_ended(
    system: System,
) -> None:
    """The scheduler reads a new job's dependencies' states when it takes the job in: one that
    failed earlier cancels it at once, one that completed earlier does not hold it back."""
    system.start_scheduler()
    system.start_worker("w1")
    made = await system.batch(
        node("bad", type="flaky", payload={"fail_times": -1}, retry={"max_attempts": 1}),
        node("good"),
    )
    await system.wait_final([j["id"] for j in made.values()])
    late = await system.batch(
        {"key": "after_bad", "type": "noop", "depends_on": [made["bad"]["id"]]},
        {"key": "after_good", "type": "noop", "depends_on": [made["good"]["id"]]},
        {"key": "after_both", "type": "noop", "depends_on": [made["good"]["id"], "after_good"]},
    )
    final = await system.wait_final([j["id"] for j in late.values()])
    cancelled = final[late["after_bad"]["id"]]
    assert cancelled["status"] == "cancelled" and cancelled["attempts"] == 0
    assert cancelled["status_reason"].startswith(f"upstream job bad ({made['bad']['id']}) failed")
    assert final[late["after_good"]["id"]]["status"] == "completed"
    assert final[late["after_both"]["id"]]["status"] == "completed"


async def test_priorities_are_respected_under_contention(system: System) -> None:
    system.start_scheduler()
    blocker = await system.submit(type="hold", payload={"seconds": 0.6}, cpu_units=1)
    order = ["low", 3, "normal", "high", 9, "critical"]
    jobs = [await system.submit(type="hold", payload={"seconds": 0.02}, priority=p) for p in order]
    # every job taken in first: a worker heard before the last submissions were read started
    # the best job known then (a race of the test, seen in CI, not of the scheduler)
    for j in [blocker, *jobs]:
        await system.wait_status(j["id"], "ready")
    system.start_worker("solo", cpu_units=1)
    await system.wait_final([blocker["id"], *[j["id"] for j in jobs]])
    started = {a["job_id"]: a["started_at"] for a in await system.attempts()}
    by_start = sorted(jobs, key=lambda j: started[uuid.UUID(j["id"])])
    assert [j["priority"] for j in by_start] == ["critical", 9, "high", "normal", 3, "low"]


async def test_workers_never_hold_more_than_their_capacity(system: System) -> None:
    import random

    rng = random.Random(7)
    system.start_scheduler()
    system.start_worker("a", cpu_units=4, memory_mb=2048)
    system.start_worker("b", cpu_units=2, memory_mb=4096)
    specs = [
        {
            "type": "hold",
            "payload": {"seconds": 0.05},
            "cpu_units": rng.randint(1, 2),
            "memory_mb": rng.choice([256, 512, 1024, 2048]),
        }
        for _ in range(40)
    ]
    r = await system.client.post("/jobs/batch", json={"jobs": specs})
    ids = [j["id"] for j in r.json()["jobs"]]
    final = await system.wait_final(ids, timeout=60)
    assert {j["status"] for j in final.values()} == {"completed"}
    attempts = await system.attempts()
    assert peak_use(attempts, "a")[0] <= 4 and peak_use(attempts, "a")[1] <= 2048
    assert peak_use(attempts, "b")[0] <= 2 and peak_use(attempts, "b")[1] <= 4096
    assert peak_use(attempts, "a")[0] >= 2  # it did run things side by side


async def test_job_no_worker_can_fit_waits_with_reason(system: System) -> None:
    system.start_scheduler()
    system.start_worker("small", cpu_units=2, memory_mb=1024)
    big = await system.submit(cpu_units=8)
    small = await system.submit()
    await system.wait_final([small["id"]])
    await asyncio.sleep(0.3)
    job = await system.job(big["id"])
    assert job["status"] == "ready"
    assert (
        job["waiting_reason"]
        == "no worker could ever fit it: needs 8 cpu_units, largest worker has 2"
    )


async def test_big_job_is_not_starved_by_small_ones(system: System) -> None:
    system.settings.scheduler_reserve_after_seconds = 0.3
    system.start_scheduler()
    system.start_worker("w", cpu_units=4, memory_mb=4096)
    first = [
        await system.submit(type="hold", payload={"seconds": 0.3}, cpu_units=1) for _ in range(3)
    ]
    big = await system.submit(type="hold", payload={"seconds": 0.05}, cpu_units=4)
    stream: list[dict[str, Any]] = []
    deadline = time.monotonic() + 6
    while (await system.job(big["id"]))["status"] != "completed" and time.monotonic() < deadline:
        stream.append(await system.submit(type="hold", payload={"seconds": 0.3}, cpu_units=1))
        await asyncio.sleep(0.1)
    assert (await system.job(big["id"]))["status"] == "completed", "the big job starved"
    await system.wait_final([j["id"] for j in first + stream], timeout=30)
    assert peak_use(await system.attempts(), "w")[0] <= 4


async def test_retries_follow_backoff_and_stop_at_max_attempts(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    job = await system.submit(
        type="flaky",
        payload={"fail_times": -1},
        retry={"max_attempts": 3, "initial_delay_seconds": 0.3, "backoff_multiplier": 2},
    )
    final = (await system.wait_final([job["id"]], timeout=20))[job["id"]]
    assert final["status"] == "failed" and final["attempts"] == 3
    rows = sorted((a for a in await system.attempts()), key=lambda a: a["attempt"])
    assert [a["outcome"] for a in rows] == ["failed"] * 3
    gaps = [(rows[i + 1]["started_at"] - rows[i]["finished_at"]).total_seconds() for i in range(2)]
    assert 0.3 <= gaps[0] < 0.3 + 0.4, gaps
    assert 0.6 <= gaps[1] < 0.6 + 0.4, gaps


async def test_a_finished_job_shows_the_worker_of_its_last_attempt(system: System) -> None:
    """The job's row names its worker only while it runs; GET /jobs/{id} still says where a
    finished job ran."""
    system.start_scheduler()
    system.start_worker("w1")
    done = await system.submit(type="noop")
    failed = await system.submit(type="flaky", payload={"fail_times": -1, "retryable": False})
    await system.wait_final([done["id"], failed["id"]])
    assert (await system.job(done["id"]))["worker_id"] == "w1"
    assert (await system.job(failed["id"]))["worker_id"] == "w1"
    never_ran = await system.submit(type="noop", run_at="2099-01-01T00:00:00Z")
    assert (await system.client.patch(f"/jobs/{never_ran['id']}/cancel")).status_code == 200
    assert (await system.job(never_ran["id"]))["worker_id"] is None


async def test_non_retryable_error_does_not_retry(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    job = await system.submit(type="flaky", payload={"fail_times": 1, "retryable": False})
    final = (await system.wait_final([job["id"]]))[job["id"]]
    assert final["status"] == "failed" and final["attempts"] == 1
    assert [a["outcome"] for a in await system.attempts()] == ["failed_permanently"]


async def test_job_can_ask_for_a_retry_after_a_delay(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    job = await system.submit(type="ask_retry", payload={"delay": 0.4})
    final = (await system.wait_final([job["id"]]))[job["id"]]
    assert final["status"] == "completed" and final["result"] == {"attempt": 2}
    rows = sorted(await system.attempts(), key=lambda a: a["attempt"])
    assert rows[0]["outcome"] == "retry_requested"
    assert (rows[1]["started_at"] - rows[0]["finished_at"]).total_seconds() >= 0.4


async def test_timeouts_stop_async_and_plain_jobs(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4)
    slow_async = await system.submit(
        type="sleep", payload={"seconds": 30}, timeout_seconds=0.5, retry={"max_attempts": 1}
    )
    stubborn = await system.submit(
        type="stubborn",
        payload={"seconds": 2},
        timeout_seconds=0.5,
        retry={"max_attempts": 1},
        cpu_units=3,
    )
    t0 = time.monotonic()
    final = await system.wait_final([slow_async["id"], stubborn["id"]])
    assert time.monotonic() - t0 < 1.8  # both reported at their deadline, not when done
    for j in final.values():
        assert j["status"] == "failed" and "timed out" in j["status_reason"]
    # the stubborn thread still holds 3 cpu_units until it returns: a 2-unit job waits for it
    follower = await system.submit(cpu_units=2)
    follower_done = (await system.wait_final([follower["id"]]))[follower["id"]]
    attempt = next(a for a in await system.attempts() if str(a["job_id"]) == stubborn["id"])
    assert follower_done["started_at"] >= attempt["started_at"] + __import__("datetime").timedelta(
        seconds=1.9
    )


async def test_cancelling_a_running_job_stops_it(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    made = await system.batch(
        node("long", type="sleep", payload={"seconds": 30}), node("after", ["long"])
    )
    await system.wait_status(made["long"]["id"], "running")
    r = await system.client.patch(f"/jobs/{made['long']['id']}/cancel")
    assert r.status_code == 202
    final = await system.wait_final([made["long"]["id"], made["after"]["id"]], timeout=10)
    assert final[made["long"]["id"]]["status"] == "cancelled"
    assert final[made["after"]["id"]]["status"] == "cancelled"
    assert "was cancelled" in final[made["after"]["id"]]["status_reason"]
    outcomes = [a["outcome"] for a in await system.attempts()]
    assert outcomes == ["cancelled"]


async def test_idempotent_resubmission_never_runs_twice(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    first = await system.submit(type="log", payload={"lines": 1}, idempotency_key="once")
    await system.wait_final([first["id"]])
    again = await system.submit(type="log", payload={"lines": 1}, idempotency_key="once")
    assert again["id"] == first["id"] and again["status"] == "completed"
    await asyncio.sleep(0.5)
    assert len(await system.attempts()) == 1


async def test_run_at_is_respected(system: System) -> None:
    from datetime import UTC

    system.start_scheduler()
    system.start_worker("w1")
    at = datetime.now(UTC) + timedelta(seconds=1)
    job = await system.submit(run_at=at.isoformat())
    await asyncio.sleep(0.3)
    waiting = await system.job(job["id"])
    assert waiting["status"] in ("pending", "blocked") and waiting["waiting_reason"].startswith(
        "scheduled"
    )
    final = (await system.wait_final([job["id"]]))[job["id"]]
    assert final["started_at"] >= at


async def test_graceful_shutdown_hands_back_and_loses_nothing(system: System) -> None:
    system.settings.shutdown_grace_seconds = 0.3
    system.start_scheduler()
    system.start_worker("leaving", cpu_units=2)
    quick = await system.submit(type="sleep", payload={"seconds": 0.1})
    longs = [
        await system.submit(type="sleep", payload={"seconds": 1.5}, retry={"max_attempts": 1})
        for _ in range(2)
    ]
    for j in longs:
        await system.wait_status(j["id"], "running")
    await system.stop_worker("leaving")
    system.start_worker("staying", cpu_units=2)
    final = await system.wait_final([quick["id"], *[j["id"] for j in longs]], timeout=20)
    history = [
        (a["job_id"], a["attempt"], a["worker_id"], a["outcome"], a["error"])
        for a in await system.attempts()
    ]
    assert {j["status"] for j in final.values()} == {"completed"}, (final, history)
    for j in longs:
        rows = [a for a in await system.attempts() if str(a["job_id"]) == j["id"]]
        history = [(a["worker_id"], a["outcome"]) for a in sorted(rows, key=lambda a: a["attempt"])]
        assert history == [("leaving", "handed_back"), ("staying", "succeeded")]


async def test_failed_jobs_can_be_resubmitted_with_their_cancelled_descendants(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    made = await system.batch(
        node(
            "root",
            type="flaky",
            payload={"fail_times": 2},
            retry={"max_attempts": 2, "initial_delay_seconds": 0.05},
        ),
        node("child", ["root"]),
        node("alone", type="flaky", payload={"fail_times": -1}, retry={"max_attempts": 1}),
    )
    ids = [j["id"] for j in made.values()]
    await system.wait_final(ids)
    dead = (await system.client.get("/jobs", params={"status": "failed"})).json()["items"]
    assert {j["id"] for j in dead} == {made["root"]["id"], made["alone"]["id"]}
    assert all(j["error"] for j in dead)
    r = await system.client.post(f"/jobs/{made['root']['id']}/retry?with_descendants=true")
    assert r.status_code == 200, r.text
    assert set(r.json()["resubmitted"]) == {made["root"]["id"], made["child"]["id"]}
    final = await system.wait_final(ids)
    root, child = final[made["root"]["id"]], final[made["child"]["id"]]
    assert root["status"] == "completed" and root["attempts"] == 3  # a fresh budget of 2
    assert root["result"] == {"succeeded_on_attempt": 3}
    assert child["status"] == "completed"
    assert (await system.client.post(f"/jobs/{made['root']['id']}/retry")).status_code == 409
    assert (await system.client.post(f"/jobs/{made['child']['id']}/retry")).status_code == 409
    alone = await system.client.post(f"/jobs/{made['alone']['id']}/retry")
    assert alone.status_code == 200 and alone.json()["resubmitted"] == [made["alone"]["id"]]
    final = await system.wait_final([made["alone"]["id"]])
    assert final[made["alone"]["id"]]["attempts"] == 2
    unknown = await system.client.post("/jobs/00000000-0000-0000-0000-000000000000/retry")
    assert unknown.status_code == 404


async def test_unstorable_logs_errors_and_results_do_not_poison_anything(system: System) -> None:
    """A NUL in a log line, an error or a result, a 70-bit integer or NaN in a result: each
    failed the scheduler's or the logger's transaction at every redelivery before."""
    system.start_scheduler()
    system.start_worker("w1", cpu_units=2)
    system.start_logger()
    job = await system.submit(
        type="unstorable", retry={"max_attempts": 2, "initial_delay_seconds": 0}
    )
    after = await system.submit(type="noop")  # the scheduler still works afterwards
    final = await system.wait_final([job["id"], after["id"]])
    assert final[job["id"]]["status"] == "completed"
    assert final[job["id"]]["result"] == {"k\ufffd": "v\ufffd", "big": str(2**70), "nan": None}
    assert final[after["id"]]["status"] == "completed"
    logs: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = (await system.client.get(f"/jobs/{job['id']}/logs")).json()
        if sum(ln["message"] == "a\ufffdb" for ln in logs["lines"]) == 2:
            break
        await asyncio.sleep(0.1)
    assert sum(ln["message"] == "a\ufffdb" for ln in logs["lines"]) == 2  # both attempts
    assert "bad\ufffderror" in (logs["attempts"][0]["error"] or "")
