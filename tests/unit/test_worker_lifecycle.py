"""The core's view of workers over their life: job types, a start the scheduler did not see,
restarts under the same id, goodbyes, dispatches that reached no queue, and capacity that a
timed-out thread still holds."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import JobStatus, Outcome
from scheduler.core import Scheduler
from scheduler.reasons import JobFacts, why_waiting
from scheduler.rows import dt
from scheduler.values import JobSpec, Placement
from scheduler.writes import plan_writes


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(n: int, job_type: str = "noop", cpu: int = 1, mem: int = 1, attempts: int = 3) -> JobSpec:
    return JobSpec(
        id=jid(n),
        name=f"j{n}",
        type=job_type,
        cpu_units=cpu,
        memory_mb=mem,
        max_attempts=attempts,
        created_at=float(n),
    )


def placed(out: list[Placement]) -> list[tuple[int, str, int]]:
    return [(p.job_id.int, p.worker_id, p.attempt) for p in out]


# -- job types -----------------------------------------------------------------------------
def test_a_job_goes_only_to_a_worker_that_runs_its_type() -> None:
    sched = Scheduler()
    sched.upsert_worker("a", 8, 8000, job_types=["noop"])
    sched.upsert_worker("b", 1, 100, job_types=["noop", "greet"])
    sched.add_jobs([spec(1, "greet"), spec(2, "greet"), spec(3, "noop")], 0.0)
    # "a" has far more room (best fit would pick "b" anyway for 1 job); the second greet
    # must wait for "b" rather than land on "a".
    assert placed(sched.plan(0.0)) == [(1, "b", 1), (3, "a", 1)]
    assert sched.job_status(jid(2)) is JobStatus.READY
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 1.0)
    assert placed(sched.plan(1.0)) == [(2, "b", 1)]


def test_a_type_no_live_worker_runs_waits_with_the_reason_then_runs() -> None:
    sched = Scheduler()
    sched.upsert_worker("a", 4, 4000, job_types=["noop", "sleep"])
    sched.add_jobs([spec(1, "greet")], 0.0)
    assert sched.plan(0.0) == []
    reason = sched.unplaceable()[jid(1)]
    assert "no live worker runs job type 'greet'" in reason
    assert "noop, sleep" in reason
    sched.upsert_worker("b", 1, 100, job_types=["greet"])
    assert placed(sched.plan(1.0)) == [(1, "b", 1)]


def test_the_api_reason_names_the_missing_type() -> None:
    from scheduler.values import WorkerView

    workers = [WorkerView("a", 4, 4000, job_types=frozenset({"noop"}))]
    facts = JobFacts(status=JobStatus.READY, job_type="greet")
    assert "no live worker runs job type 'greet'" in why_waiting(facts, 0.0, (), workers)
    facts = JobFacts(status=JobStatus.READY, job_type="noop")
    assert why_waiting(facts, 0.0, (), workers) == "ready: waiting for the next scheduling pass"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["x", "y", "z"]), st.integers(1, 4), st.integers(1, 4)),
        min_size=1,
        max_size=30,
    ),
    st.lists(
        st.tuples(st.integers(1, 6), st.sets(st.sampled_from(["x", "y", "z"]), min_size=1)),
        min_size=1,
        max_size=4,
    ),
)
def test_no_placement_ever_breaks_type_or_capacity(
    jobs: list[tuple[str, int, int]], workers: list[tuple[int, set[str]]]
) -> None:
    sched = Scheduler(reserve_after=0.0)
    for i, (size, types) in enumerate(workers):
        sched.upsert_worker(f"w{i}", size, size, job_types=types)
    sched.add_jobs([spec(n + 1, t, c, m) for n, (t, c, m) in enumerate(jobs)], 0.0)
    types_of = {f"w{i}": t for i, (_, t) in enumerate(workers)}
    for now in range(40):
        for p in sched.plan(float(now)):
            assert sched.state.jobs[p.job_id].type in types_of[p.worker_id]
        for w in sched.state.workers.values():
            assert 0 <= w.cpu_used <= w.cpu_total and 0 <= w.mem_used <= w.mem_total
        for job in list(sched.state.jobs.values()):
            if job.status is JobStatus.RUNNING:
                sched.on_attempt_finished(job.id, job.attempts, Outcome.SUCCEEDED, float(now))
    for job in sched.state.jobs.values():  # what is left can never run anywhere
        assert not any(job.type in t and job.cpu <= s and job.mem <= s for s, t in workers), job


# -- a start the scheduler did not see renewed ------------------------------------------------
def test_a_remembered_worker_gets_nothing_until_it_heartbeats() -> None:
    sched = Scheduler()
    sched.remember_worker("old", 8, 8000, job_types=["noop"], incarnation="t0")
    sched.add_jobs([spec(1)], 0.0)
    assert sched.plan(0.0) == []
    sched.upsert_worker("old", 8, 8000, job_types=["noop"], incarnation="t0", now=1.0)
    assert placed(sched.plan(1.0)) == [(1, "old", 1)]


# -- a dispatch no queue took ----------------------------------------------------------------
def test_an_undelivered_dispatch_is_no_attempt_and_goes_elsewhere_at_once() -> None:
    sched = Scheduler()
    sched.upsert_worker("gone", 4, 4000)  # tightest fit: chosen first
    sched.upsert_worker("big", 8, 8000)
    sched.add_jobs([spec(1, cpu=4, mem=4000, attempts=1)], 0.0)
    assert placed(sched.plan(0.0)) == [(1, "gone", 1)]
    out = sched.undelivered(jid(1), 1, "gone", 0.1)
    assert [(t.from_status, t.to_status, t.attempts, t.to_attempts) for t in out] == [
        (JobStatus.RUNNING, JobStatus.READY, 1, 0)
    ]
    assert not sched.state.workers["gone"].accepting
    assert sched.state.workers["gone"].cpu_used == 0
    # The same attempt number again, on the other worker: max_attempts=1 is not used up.
    assert placed(sched.plan(0.1)) == [(1, "big", 1)]
    writes = plan_writes(out, [], dt(0.1), {})  # type: ignore[arg-type]
    assert (writes[jid(1)].from_attempts, writes[jid(1)].attempts) == (1, 0)


def test_a_storm_cannot_happen_against_a_worker_whose_queue_is_gone() -> None:
    """Each undelivered dispatch takes the worker out until it heartbeats again."""
    sched = Scheduler()
    sched.upsert_worker("gone", 8, 8000)
    sched.add_jobs([spec(n) for n in range(1, 5)], 0.0)
    first = sched.plan(0.0)
    assert {p.worker_id for p in first} == {"gone"}
    for p in first:
        sched.undelivered(p.job_id, p.attempt, p.worker_id, 0.1)
    for step in range(100):
        assert sched.plan(0.2 + step) == []
    assert all(j.attempts == 0 for j in sched.state.jobs.values())


def test_an_undelivered_dispatch_of_a_cancelled_job_cancels_it() -> None:
    sched = Scheduler()
    sched.upsert_worker("gone", 4, 4000)
    sched.add_jobs([spec(1)], 0.0)
    sched.plan(0.0)
    assert sched.cancel(jid(1), 0.05).send is not None
    out = sched.undelivered(jid(1), 1, "gone", 0.1)
    assert [t.to_status for t in out] == [JobStatus.CANCELLED]


def test_a_late_undelivered_for_an_attempt_that_moved_on_changes_nothing() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 4, 4000)
    sched.add_jobs([spec(1)], 0.0)
    sched.plan(0.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 0.5)
    assert sched.undelivered(jid(1), 1, "w", 0.6) == []


# -- a restart under the same id, and a goodbye -----------------------------------------------
def test_a_new_incarnation_loses_what_the_old_one_held() -> None:
    sched = Scheduler()
    sched.upsert_worker("w-c", 4, 4000, incarnation="t0")
    sched.add_jobs([spec(1), spec(2)], 0.0)
    assert len(sched.plan(0.0)) == 2
    again = sched.upsert_worker("w-c", 4, 4000, incarnation="t0", now=1.0)
    assert again == []  # the same start: nothing happens
    out = sched.upsert_worker("w-c", 4, 4000, incarnation="t1", now=2.0)
    assert sorted((t.job_id.int, t.outcome, t.to_status) for t in out) == [
        (1, Outcome.LOST, JobStatus.READY),
        (2, Outcome.LOST, JobStatus.READY),
    ]
    assert "restarted" in (out[0].error or "")
    assert sched.state.workers["w-c"].cpu_used == 0
    assert placed(sched.plan(2.0)) == [(1, "w-c", 2), (2, "w-c", 2)]


def test_a_goodbye_hands_back_what_never_started_there() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 4, 4000)
    sched.upsert_worker("v", 4, 4000)
    sched.add_jobs([spec(1, attempts=1)], 0.0)
    [p] = sched.plan(0.0)
    out = sched.worker_stopped(p.worker_id, 0.5)
    assert [(t.outcome, t.to_status) for t in out] == [(Outcome.HANDED_BACK, JobStatus.READY)]
    assert not sched.state.workers[p.worker_id].accepting
    [again] = sched.plan(0.5)
    # A hand-back does not use up max_attempts=1; the attempt number grows (it fences).
    assert again.worker_id != p.worker_id and again.attempt == 2


# -- capacity a timed-out thread still holds --------------------------------------------------
def test_a_timed_out_thread_holds_capacity_and_the_reason_names_it() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 2, 1000)
    sched.add_jobs([spec(1, cpu=2, mem=500, attempts=1)], 0.0)
    sched.plan(0.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.TIMED_OUT, 5.0, released=False)
    sched.add_jobs([spec(2, cpu=2, mem=500)], 5.0)
    assert sched.plan(5.0) == []
    [view] = sched.worker_views()
    assert (view.cpu_in_use, view.memory_in_use) == (2, 500)
    assert [(h.job_id, h.attempt) for h in view.lingering] == [(jid(1), 1)]
    reason = why_waiting(
        JobFacts(status=JobStatus.READY, cpu_units=2, memory_mb=500), 5.0, (), [view]
    )
    assert reason.startswith("needs 2 cpu_units; most free on any worker is 0")
    assert f"timed-out job {jid(1)} (attempt 1)" in reason
    sched.release(jid(1), 1)
    assert placed(sched.plan(6.0)) == [(2, "w", 1)]
    assert sched.worker_views()[0].lingering == ()


@pytest.mark.parametrize("how", ["offline", "stopped"])
def test_a_worker_that_leaves_frees_what_lingered(how: str) -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 2, 1000)
    sched.add_jobs([spec(1, cpu=2, mem=500, attempts=1)], 0.0)
    sched.plan(0.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.TIMED_OUT, 5.0, released=False)
    if how == "offline":
        assert sched.worker_offline("w", 6.0) == []
    else:
        assert sched.worker_stopped("w", 6.0) == []
    assert sched.state.workers["w"].cpu_used == 0 and not sched.state.holds
