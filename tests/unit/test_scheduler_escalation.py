"""The core's memory escalation (pure): a kill for memory retries at once asking for more, on
its own counter, or fails at once when no worker could hold what it needs; other failures
retry as before; the writes carry the raised ask."""

from __future__ import annotations

import uuid

import pytest

from models.enums import FailureClass, JobStatus, Outcome
from scheduler.core import Scheduler
from scheduler.escalation import MAX_MEMORY_ESCALATIONS, largest_memory
from scheduler.rows import dt
from scheduler.values import JobSpec, Transition
from scheduler.writes import plan_writes

S = JobStatus
J = uuid.UUID(int=1)
MEMORY = FailureClass.MEMORY


def core(*workers: tuple[str, int], job: JobSpec | None = None) -> Scheduler:
    sched = Scheduler()
    for worker_id, mem in workers:
        sched.upsert_worker(worker_id, 8, mem, job_types=["memory"])
    sched.add_jobs([job or JobSpec(J, "m", type="memory", memory_mb=100, max_attempts=1)], 0.0)
    return sched


def run(sched: Scheduler, now: float = 0.0) -> tuple[int, int]:
    """Place the job; (attempt, memory it holds)."""
    (p,) = sched.plan(now)
    return p.attempt, p.memory_mb


def killed(sched: Scheduler, attempt: int, peak: int | None, now: float = 1.0) -> list[Transition]:
    return list(
        sched.on_attempt_finished(
            J, attempt, Outcome.FAILED, now, error="killed", failure_class=MEMORY,
            peak_memory_mb=peak,
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    ("asked", "peaks", "largest", "asks"),
    [
        (100, [104], 8192, [100, 200]),  # 2 × the request
        (100, [104, 260], 8192, [100, 200, 400]),
        (100, [300], 8192, [100, 375]),  # 1.25 × the peak beats 2 ×
        (100, [104, 210], 300, [100, 200, 300]),  # capped by the largest worker
        (100, [None], 8192, [100, 200]),  # no peak seen
    ],
)
def test_each_kill_for_memory_retries_at_once_asking_for_more(
    asked: int, peaks: list[int | None], largest: int, asks: list[int]
) -> None:
    job = JobSpec(J, "m", type="memory", memory_mb=asked, max_attempts=1)
    sched = core(("w", largest), job=job)
    held = [run(sched)[1]]
    for n, peak in enumerate(peaks, start=1):
        (t,) = killed(sched, n, peak)
        assert (t.to_status, t.not_before) == (S.READY, None)
        assert (t.memory_mb, t.memory_escalations) == (asks[n], n)
        assert f"retrying with {asks[n]} MB" in str(t.reason)
        attempt, memory = run(sched)
        assert attempt == n + 1
        held.append(memory)
    assert held == asks
    # max_attempts=1 and yet it ran len(asks) times: escalations are outside the budget ...
    (t,) = sched.on_attempt_finished(J, len(asks), Outcome.FAILED, 2.0, error="boom")
    assert t.to_status is S.FAILED  # ... which an ordinary failure then ends.


def test_a_job_that_needs_more_than_the_largest_worker_fails_at_once() -> None:
    sched = core(("small", 256), ("big", 512))
    sched.state.jobs[J].mem = 450
    run(sched)
    (t,) = killed(sched, 1, 460)
    assert t.to_status is S.FAILED
    assert t.reason == "attempt 1: needs 575 MB after a memory kill; the largest worker has 512 MB"
    assert t.memory_mb is None


def test_escalations_stop_at_their_bound() -> None:
    sched = core(("w", 1 << 20))
    for n in range(1, MAX_MEMORY_ESCALATIONS + 1):
        run(sched)
        (t,) = killed(sched, n, None)
        assert t.to_status is S.READY
    run(sched)
    (t,) = killed(sched, MAX_MEMORY_ESCALATIONS + 1, None)
    assert t.to_status is S.FAILED
    assert "after 3 memory escalations (the bound)" in str(t.reason)


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (Outcome.TIMED_OUT, FailureClass.TIMEOUT),
        (Outcome.FAILED, FailureClass.SIGNAL),
        (Outcome.FAILED, FailureClass.ERROR),
        (Outcome.FAILED, None),  # an older worker's report
    ],
)
def test_other_failures_retry_as_before_and_keep_their_memory(
    outcome: Outcome, kind: FailureClass | None
) -> None:
    job = JobSpec(J, "m", type="memory", memory_mb=100, max_attempts=2, initial_delay_seconds=1)
    sched = core(("w", 8192), job=job)
    run(sched)
    (t,) = sched.on_attempt_finished(J, 1, outcome, 1.0, failure_class=kind, peak_memory_mb=90)
    assert (t.to_status, t.not_before, t.memory_mb) == (S.RETRYING, 2.0, None)
    sched.tick(2.0)
    assert run(sched, 2.0) == (2, 100)
    (t,) = sched.on_attempt_finished(J, 2, outcome, 3.0, failure_class=kind)
    assert t.to_status is S.FAILED


def test_a_cancel_requested_wins_over_an_escalation() -> None:
    sched = core(("w", 8192))
    run(sched)
    sched.cancel(J, 0.5)
    (t,) = killed(sched, 1, 104)
    assert t.to_status is S.CANCELLED


def test_a_rebuild_keeps_the_raised_memory_and_the_count() -> None:
    """What a restart reads back (memory_mb is coalesce(memory_escalated_mb, memory_mb))."""
    job = JobSpec(
        J, "m", type="memory", memory_mb=200, max_attempts=1, status=S.READY, attempts=1,
        memory_escalations=1,
    )  # fmt: skip
    sched = core(("w", 8192), job=job)
    assert run(sched) == (2, 200)
    (t,) = killed(sched, 2, 230)
    assert (t.memory_mb, t.memory_escalations) == (400, 2)


def test_the_largest_worker_is_one_that_could_hold_the_job_but_for_memory() -> None:
    sched = core(("a", 512), ("b", 4096))
    sched.upsert_worker("c", 1, 65536, job_types=["memory"])  # too few cpu_units
    sched.upsert_worker("d", 8, 65536, job_types=["other"])  # does not run the type
    job = sched.state.jobs[J]
    job.cpu = 2
    assert largest_memory(sched.state.workers.values(), job) == 4096
    sched.upsert_worker("b", 8, 4096, draining=True, job_types=["memory"])
    assert largest_memory(sched.state.workers.values(), job) == 512  # accepting ones first
    for worker_id in ("a", "b"):
        sched.worker_offline(worker_id, 1.0)
    assert largest_memory(sched.state.workers.values(), job) == 4096  # else any known


def test_the_writes_persist_the_raise_through_a_placement_in_the_same_pass() -> None:
    sched = core(("w", 8192))
    placed = sched.plan(0.0)
    out = killed(sched, 1, 104)
    again = sched.plan(1.0)
    at = dt(1.0)
    assert at is not None
    writes = plan_writes(out, again, at, {})
    w = writes[J]
    assert (w.from_status, w.status, w.attempts) == ("running", "running", 2)
    assert (w.memory_escalated_mb, w.memory_escalations) == (200, 1)
    assert [p.memory_mb for p in placed + again] == [100, 200]
