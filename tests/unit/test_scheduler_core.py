"""The core's event handling: DAG readiness, cascades, retries, fencing, cancel, timers."""

from __future__ import annotations

import uuid

import pytest

from models.enums import JobStatus, Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec, Transition, UpstreamFailure

S = JobStatus


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(n: int, *deps: int, **kw: object) -> JobSpec:
    return JobSpec(
        id=jid(n),
        name=f"j{n}",
        created_at=float(n),
        depends_on=tuple(jid(d) for d in deps),
        **kw,  # type: ignore[arg-type]
    )


def moves(transitions: list[Transition]) -> dict[int, tuple[JobStatus, JobStatus]]:
    return {t.job_id.int: (t.from_status, t.to_status) for t in transitions}


def started(sched: Scheduler, now: float = 0.0) -> dict[int, int]:
    """Plan and return {job number: attempt}."""
    return {p.job_id.int: p.attempt for p in sched.plan(now)}


def one_worker(cpu: int = 64, mem: int = 1 << 20, **kw: float) -> Scheduler:
    sched = Scheduler(**kw)  # type: ignore[arg-type]
    sched.upsert_worker("w", cpu, mem)
    return sched


# -- DAG readiness ----------------------------------------------------------------------------
def test_diamond_becomes_ready_only_when_all_parents_complete() -> None:
    sched = one_worker()
    out = sched.add_jobs([spec(4, 2, 3), spec(2, 1), spec(3, 1), spec(1)], 0.0)
    assert moves(out) == {
        1: (S.PENDING, S.READY),
        2: (S.PENDING, S.BLOCKED),
        3: (S.PENDING, S.BLOCKED),
        4: (S.PENDING, S.BLOCKED),
    }
    assert started(sched) == {1: 1}
    out = sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 1.0)
    assert moves(out) == {
        1: (S.RUNNING, S.COMPLETED),
        2: (S.BLOCKED, S.READY),
        3: (S.BLOCKED, S.READY),
    }
    assert started(sched, 1.0) == {2: 1, 3: 1}
    out = sched.on_attempt_finished(jid(2), 1, Outcome.SUCCEEDED, 2.0)
    assert moves(out) == {2: (S.RUNNING, S.COMPLETED)}
    assert sched.job_status(jid(4)) is S.BLOCKED
    out = sched.on_attempt_finished(jid(3), 1, Outcome.SUCCEEDED, 3.0)
    assert moves(out) == {3: (S.RUNNING, S.COMPLETED), 4: (S.BLOCKED, S.READY)}


def test_dependency_on_completed_job_is_not_counted_and_finished_jobs_are_dropped() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1)], 0.0)
    started(sched)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 1.0)
    assert sched.job_status(jid(1)) is None
    assert sched.state.jobs == {}
    # job 2 was submitted after job 1 completed: the shell leaves the completed dep out.
    assert moves(sched.add_jobs([spec(2)], 2.0)) == {2: (S.PENDING, S.READY)}


@pytest.mark.parametrize(
    ("outcome", "error", "root_says"),
    [
        (Outcome.FAILED_PERMANENTLY, "boom", "failed: boom"),
        (Outcome.CANCELLED, None, "was cancelled"),
    ],
)
def test_failure_cascades_transitively_with_reason(
    outcome: Outcome, error: str | None, root_says: str
) -> None:
    sched = one_worker()
    sched.add_jobs([spec(1), spec(2, 1), spec(3, 2), spec(4, 1, 3), spec(5)], 0.0)
    started(sched)
    out = sched.on_attempt_finished(jid(1), 1, outcome, 1.0, error=error)
    cancelled = {t.job_id.int: t for t in out if t.to_status is S.CANCELLED and t.job_id != jid(1)}
    assert set(cancelled) == {2, 3, 4}
    for t in cancelled.values():
        assert t.reason == f"upstream job j1 ({jid(1)}) {root_says}"
    assert sched.job_status(jid(5)) is S.RUNNING
    assert set(sched.state.jobs) == {jid(5)}


def test_upstream_failure_at_submission_cancels_at_once_with_its_dependents() -> None:
    bad = UpstreamFailure(jid(99), "old", S.FAILED, "disk full")
    sched = one_worker()
    out = sched.add_jobs([spec(1, upstream_failure=bad), spec(2, 1)], 0.0)
    assert moves(out) == {1: (S.PENDING, S.CANCELLED), 2: (S.PENDING, S.CANCELLED)}
    assert {t.reason for t in out} == {f"upstream job old ({jid(99)}) failed: disk full"}


def test_missing_dependency_is_waited_for_then_resolved() -> None:
    sched = one_worker()
    sched.add_jobs([spec(2, 1)], 0.0)
    assert sched.missing_dependencies() == {jid(1)}
    out = sched.dependency_finished(jid(1), S.COMPLETED, "j1", 1.0)
    assert moves(out) == {2: (S.BLOCKED, S.READY)}
    sched.add_jobs([spec(3, 9)], 0.0)
    out = sched.dependency_finished(jid(9), S.FAILED, "j9", 1.0, error="x")
    assert moves(out) == {3: (S.BLOCKED, S.CANCELLED)}


def test_run_at_waits_for_tick() -> None:
    sched = one_worker()
    out = sched.add_jobs([spec(1, run_at=100.0)], 0.0)
    assert moves(out) == {1: (S.PENDING, S.BLOCKED)}
    assert out[0].reason is not None and out[0].reason.startswith("scheduled: run_at ")
    assert sched.next_wakeup() == 100.0
    assert sched.tick(99.9) == []
    assert started(sched, 99.9) == {}
    assert moves(sched.tick(100.0)) == {1: (S.BLOCKED, S.READY)}
    assert started(sched, 100.0) == {1: 1}


# -- retries and fencing ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("initial", "multiplier", "expected_delays"),
    [(1.0, 2.0, [1.0, 2.0, 4.0]), (0.5, 3.0, [0.5, 1.5, 4.5]), (5.0, 1.0, [5.0, 5.0, 5.0])],
)
def test_failed_attempts_back_off_then_fail(
    initial: float, multiplier: float, expected_delays: list[float]
) -> None:
    sched = one_worker()
    sched.add_jobs(
        [spec(1, max_attempts=4, initial_delay_seconds=initial, backoff_multiplier=multiplier)], 0.0
    )
    now = 0.0
    for n, delay in enumerate(expected_delays, start=1):
        assert started(sched, now) == {1: n}
        (t,) = sched.on_attempt_finished(jid(1), n, Outcome.FAILED, now, error="e")
        assert (t.to_status, t.not_before, t.attempts) == (S.RETRYING, now + delay, n)
        assert sched.tick(now + delay - 0.01) == []
        now += delay
        assert moves(sched.tick(now)) == {1: (S.RETRYING, S.READY)}
    assert started(sched, now) == {1: 4}
    (t,) = sched.on_attempt_finished(jid(1), 4, Outcome.FAILED, now, error="e")
    assert (t.to_status, t.error, t.attempts) == (S.FAILED, "e", 4)


def test_non_retryable_fails_at_once() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1, max_attempts=5)], 0.0)
    started(sched)
    (t,) = sched.on_attempt_finished(jid(1), 1, Outcome.FAILED_PERMANENTLY, 1.0, error="bad")
    assert t.to_status is S.FAILED


def test_retry_requested_uses_retry_after() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1, max_attempts=2)], 0.0)
    started(sched)
    (t,) = sched.on_attempt_finished(jid(1), 1, Outcome.RETRY_REQUESTED, 10.0, retry_after=30.0)
    assert (t.to_status, t.not_before) == (S.RETRYING, 40.0)


def test_stale_attempt_reports_are_fenced() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1, max_attempts=3)], 0.0)
    started(sched)
    sched.on_attempt_finished(jid(1), 1, Outcome.LOST, 1.0)
    assert started(sched, 1.0) == {1: 2}
    assert sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 2.0) == []
    assert sched.on_attempt_finished(jid(1), 3, Outcome.SUCCEEDED, 2.0) == []
    assert sched.on_attempt_finished(uuid.uuid4(), 1, Outcome.SUCCEEDED, 2.0) == []
    assert sched.job_status(jid(1)) is S.RUNNING
    assert moves(sched.on_attempt_finished(jid(1), 2, Outcome.SUCCEEDED, 2.0)) == {
        1: (S.RUNNING, S.COMPLETED)
    }
    assert sched.on_attempt_finished(jid(1), 2, Outcome.SUCCEEDED, 2.0) == []


def test_timed_out_thread_keeps_resources_until_released() -> None:
    sched = one_worker(cpu=4)
    sched.add_jobs([spec(1, cpu_units=4, max_attempts=2), spec(2, cpu_units=4)], 0.0)
    assert started(sched) == {1: 1}
    sched.on_attempt_finished(jid(1), 1, Outcome.TIMED_OUT, 1.0, released=False)
    sched.tick(100.0)
    assert started(sched, 100.0) == {}  # the worker is still full
    assert sched.release(jid(1), 1) is True
    assert sched.release(jid(1), 1) is False
    assert started(sched, 100.0) == {1: 2}


def test_worker_offline_loses_attempts() -> None:
    sched = Scheduler()
    sched.upsert_worker("a", 4, 4096)
    sched.add_jobs([spec(1, max_attempts=2), spec(2, max_attempts=1)], 0.0)
    assert started(sched) == {1: 1, 2: 1}
    out = sched.worker_offline("a", 5.0)
    assert moves(out) == {1: (S.RUNNING, S.READY), 2: (S.RUNNING, S.FAILED)}
    assert all(t.outcome is Outcome.LOST and t.worker_id == "a" for t in out)
    assert started(sched, 5.0) == {}  # nothing is accepting
    sched.upsert_worker("b", 4, 4096)
    assert [(p.job_id.int, p.worker_id, p.attempt) for p in sched.plan(6.0)] == [(1, "b", 2)]
    assert sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 7.0) == []


# -- cancel ---------------------------------------------------------------------------------
def test_cancel_waiting_job_cascades() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1), spec(2, 1), spec(3, 2)], 0.0)
    result = sched.cancel(jid(1), 1.0)
    assert result.send is None
    assert moves(list(result.transitions)) == {
        1: (S.READY, S.CANCELLED),
        2: (S.BLOCKED, S.CANCELLED),
        3: (S.BLOCKED, S.CANCELLED),
    }
    assert result.transitions[2].reason == f"upstream job j1 ({jid(1)}) was cancelled"
    assert started(sched, 1.0) == {}


def test_cancel_running_job_asks_its_worker_and_prevents_retry() -> None:
    sched = one_worker()
    sched.add_jobs([spec(1, max_attempts=3), spec(2, 1)], 0.0)
    started(sched)
    result = sched.cancel(jid(1), 1.0)
    assert result.transitions == ()
    assert result.send is not None
    assert (result.send.worker_id, result.send.attempt) == ("w", 1)
    out = sched.on_attempt_finished(jid(1), 1, Outcome.FAILED, 2.0, error="interrupted")
    assert moves(out) == {1: (S.RUNNING, S.CANCELLED), 2: (S.BLOCKED, S.CANCELLED)}


def test_cancel_unknown_job_is_a_no_op() -> None:
    assert one_worker().cancel(jid(1), 0.0).transitions == ()


# -- rebuild --------------------------------------------------------------------------------
def test_rebuild_restores_running_and_retrying_jobs() -> None:
    sched = Scheduler(backfill=False)  # (with it, job 4 reserves the worker: see backfill tests)
    sched.upsert_worker("w", 4, 4096)
    out = sched.add_jobs(
        [
            spec(1, status=S.RUNNING, attempts=2, worker_id="w", cpu_units=3, max_attempts=3),
            spec(2, status=S.RETRYING, attempts=1, not_before=50.0, max_attempts=3),
            spec(3, 1, status=S.BLOCKED),
            spec(4, status=S.READY, cpu_units=2),
        ],
        10.0,
    )
    assert out == []
    assert sched.worker_views()[0].cpu_in_use == 3
    assert started(sched, 10.0) == {}  # job 4 needs 2, only 1 free
    assert moves(sched.tick(50.0)) == {2: (S.RETRYING, S.READY)}
    assert started(sched, 50.0) == {2: 2}
    out = sched.on_attempt_finished(jid(1), 2, Outcome.SUCCEEDED, 60.0)
    assert moves(out) == {1: (S.RUNNING, S.COMPLETED), 3: (S.BLOCKED, S.READY)}


def test_running_job_on_unknown_worker_is_held_until_it_goes_offline() -> None:
    sched = Scheduler()
    sched.add_jobs([spec(1, status=S.RUNNING, attempts=1, worker_id="ghost", max_attempts=2)], 0.0)
    assert moves(sched.worker_offline("ghost", 1.0)) == {1: (S.RUNNING, S.READY)}
