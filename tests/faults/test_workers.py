"""Workers that die, stop, or run jobs that will not stop (issue 5, scenarios 1-3)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.faults.checker import check
from tests.faults.cluster import Cluster, Stopwatch


def _effects(c: Cluster) -> int:
    return int(c.scalar("SELECT count(*) FROM side_effects"))


def _running(c: Cluster, ids: list[str]) -> int:
    return sum(s == "running" for s in c.statuses(ids).values())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_a_worker_running_200_jobs(faults: Cluster) -> None:
    """200 jobs run at once on one worker (cpu 200: they are sleeping threads, cheap on two
    cores); it is killed -9 once the shortest have finished, so some reports are in flight
    and most attempts are mid-run. After the lease, every attempt it held is lost and runs
    again on a second worker: all 200 complete, nothing is stuck or held, and a job ran twice
    only where its first attempt was lost (at least once: ``effects_unsuccessful <=
    lost_attempts``)."""
    c, t = faults, Stopwatch()
    c.boot({"w1": 200})
    t.mark("boot")
    # 0.5 s to 2.75 s: the kill lands while some jobs are done and most still run.
    jobs = [
        {
            "key": f"j{i}",
            "type": "side_effect",
            "payload": {"seconds": 0.5 + (i % 10) * 0.25},
            "retry": {"max_attempts": 3, "initial_delay_seconds": 0.1},
        }
        for i in range(200)
    ]
    ids = c.submit_batch(jobs)
    c.wait_for(lambda: _running(c, ids) == 200, timeout=60, what="200 jobs running")
    t.mark("200 running")
    c.start_worker("w2", cpu_units=200, wait=False)  # imports while w1 works; gets no job yet
    done = "SELECT count(*) FROM jobs WHERE status = 'completed'"
    c.wait_for(lambda: c.scalar(done) >= 10, timeout=60, what="the first jobs to complete")
    completed = [r["id"] for r in c.rows("SELECT id::text FROM jobs WHERE status = 'completed'")]
    c.kill("w1")
    t.mark(f"{len(completed)} completed, kill -9")
    c.wait_worker("w2")
    t.mark("w2 up")
    counts = check(c, accepted=ids, settle_timeout=90)
    t.mark("settled and checked")
    print(f"\n{t}\n{counts!r}")
    assert set(c.statuses(ids).values()) == {"completed"}
    assert 100 <= counts.lost_attempts <= 200 - len(completed), counts
    before = "SELECT DISTINCT attempts FROM jobs WHERE id = ANY(%s::uuid[])"
    assert c.rows(before, (completed,)) == [{"attempts": 1}], "a completed job ran again"
    counts.assert_clean(allow_effects_unsuccessful=counts.lost_attempts)
    lost = c.rows("SELECT worker_id, error FROM job_attempts WHERE outcome = 'lost'")
    assert {r["worker_id"] for r in lost} == {"w1"}
    assert all("w1 went offline" in r["error"] for r in lost)
    assert not c.log_problems()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_a_worker_hands_back_its_long_jobs(faults: Cluster) -> None:
    """A worker stopped with SIGTERM during long jobs exits 0 within its grace period (1 s)
    plus its goodbye, hands the unfinished attempts back (outcome ``handed_back`` at once, not
    ``lost`` after the lease, and not counted against ``max_attempts=1``), and they complete
    on another worker. Short jobs that finished before the stop do not run again, and a
    handed-back attempt, stopped cooperatively, left no side effect."""
    c = faults
    grace = 1.0
    c.procs.env["SMARTQ_SHUTDOWN_GRACE_SECONDS"] = str(grace)
    c.boot({"w1": 12})
    once = {"max_attempts": 1}
    short = c.submit_batch(
        [{"type": "side_effect", "payload": {"seconds": 0.1}, "retry": once}] * 4
    )
    long = c.submit_batch([{"type": "side_effect", "payload": {"seconds": 4}, "retry": once}] * 8)
    c.wait_for(lambda: _effects(c) == 4 and _running(c, long) == 8, 30, "jobs to run")
    code, took = c.terminate("w1")
    stopped = time.monotonic()
    assert code == 0, c.procs.log("w1")
    assert took < grace + 3, f"took {took:.1f}s to stop"
    handed = "SELECT count(*) FROM job_attempts WHERE outcome = 'handed_back' AND worker_id = 'w1'"
    c.wait_for(lambda: c.scalar(handed) == 8, 10, "the scheduler to take the hand-backs")
    assert set(c.statuses(long).values()) == {"ready"}
    c.start_worker("w2", cpu_units=12)

    counts = check(c, accepted=short + long)
    print(
        f"\nw1 stopped in {took:.2f}s; all done {time.monotonic() - stopped:.1f}s later; {counts!r}"
    )
    counts.assert_clean()
    assert set(c.statuses(short + long).values()) == {"completed"}
    runs = c.rows(
        "SELECT a.attempt, a.worker_id, a.outcome, count(s.*) AS effects FROM job_attempts a "
        "LEFT JOIN side_effects s ON s.job_id = a.job_id AND s.attempt = a.attempt "
        "WHERE a.job_id = ANY(%s::uuid[]) GROUP BY a.job_id, a.attempt, a.worker_id, a.outcome",
        (long,),
    )
    assert sorted((r["attempt"], r["worker_id"], r["outcome"], r["effects"]) for r in runs) == (
        [(1, "w1", "handed_back", 0)] * 8 + [(2, "w2", "succeeded", 1)] * 8
    )
    assert int(c.scalar("SELECT count(*) FROM side_effects WHERE worker_id = 'w1'")) == 4
    assert not c.log_problems()


def _one(c: Cluster, spec: dict[str, object]) -> str:
    return c.submit_batch([spec])[0]


def _job(c: Cluster, job_id: str) -> dict[str, object]:
    return c.rows("SELECT * FROM jobs WHERE id = %s", (job_id,))[0]


def _effect_ts(c: Cluster, job_id: str) -> object:
    return c.scalar("SELECT max(ts) FROM side_effects WHERE job_id = %s", (job_id,))


STUBBORN = {"type": "side_effect", "payload": {"seconds": 4, "stubborn": True}, "cpu_units": 2}


def _stubborn_then_waiting(c: Cluster, stubborn: str, ended: str, stop: Any) -> str:
    """``stubborn`` runs on the worker's only two cpu_units; ``stop()`` ends it (``ended``);
    a job needing those two cpu_units, submitted meanwhile, must wait for its thread."""
    c.wait_for(lambda: c.statuses([stubborn])[stubborn] == "running", 30, "the stubborn job")
    stop()
    waiting = _one(c, {"type": "side_effect", "cpu_units": 2})
    c.wait_for(lambda: c.statuses([stubborn])[stubborn] == ended, 10, f"it to be {ended}")
    assert c.statuses([waiting])[waiting] == "ready", "the overrunning thread holds the cpu"
    c.wait_for(lambda: c.statuses([waiting])[waiting] == "completed", 30, "the waiting job")
    after = _job(c, waiting)
    returned = _effect_ts(c, stubborn)
    assert after["started_at"] >= returned, "started before the stubborn thread returned"
    assert (returned - _job(c, stubborn)["started_at"]).total_seconds() >= 3.5
    return waiting


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stubborn_job_times_out_or_is_cancelled_but_holds_its_resources(
    faults: Cluster,
) -> None:
    """A plain function that ignores its timeout and cancellation sleeps 4 s on a worker
    with two cpu_units, which it takes all of.

    With a 1 s timeout it is marked ``failed`` (timed out) at its deadline; cancelled while
    running (``PATCH /jobs/{id}/cancel``: 202) it ends ``cancelled`` after the worker's cancel
    grace. Either way its thread keeps the cpu: a job needing it starts only once the thread
    returned (the stubborn job's side effect marks that moment), never during the overrun.
    Its side effect happened once, in an attempt that did not succeed."""
    c, t = faults, Stopwatch()
    c.boot({"w1": 2})
    t.mark("boot")
    timed = _one(c, {**STUBBORN, "timeout_seconds": 1, "retry": {"max_attempts": 1}})
    _stubborn_then_waiting(c, timed, "failed", lambda: None)
    assert _job(c, timed)["error"] == "timed out after 1s"
    t.mark("timed out, then released")

    cancelled = _one(c, STUBBORN)

    def cancel() -> None:
        r = httpx.patch(f"{c.base}/jobs/{cancelled}/cancel", headers=c.headers)
        assert r.status_code == 202, r.text

    _stubborn_then_waiting(c, cancelled, "cancelled", cancel)
    t.mark("cancelled, then released")
    counts = check(c)
    t.mark("settled and checked")
    print(f"\n{t}\n{counts!r}")
    outcome = "SELECT outcome FROM job_attempts WHERE job_id = %s"
    assert c.scalar(outcome, (timed,)) == "timed_out"
    assert c.scalar(outcome, (cancelled,)) == "cancelled"
    counts.assert_clean(allow_effects_unsuccessful=2)
    assert counts.details["effects_unsuccessful"] == {"timed_out": 1, "cancelled": 1}
    assert not c.log_problems()
