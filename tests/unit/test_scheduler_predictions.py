"""Learned run times, EASY backfill, upward ranks and predicted starts: the pure core."""

from __future__ import annotations

import heapq
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import JobStatus, Outcome
from scheduler import forecast
from scheduler.core import Scheduler
from scheduler.durations import Durations, predicted_end
from scheduler.values import JobSpec


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(
    n: int, cpu: int = 1, kind: str = "t", deps: tuple[int, ...] = (), **kw: object
) -> JobSpec:
    return JobSpec(
        id=jid(n),
        name=f"j{n}",
        type=kind,
        cpu_units=cpu,
        memory_mb=1,
        created_at=kw.pop("created", float(n) * 1e-3),  # type: ignore[arg-type]
        depends_on=tuple(jid(d) for d in deps),
        **kw,  # type: ignore[arg-type]
    )


# -- durations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("runs", "tenant", "timeout", "expected"),
    [
        ([], "a", None, 10.0),  # never seen: the default
        ([("t", "a", 4.0)], "a", None, 4.0),
        ([("t", "a", 4.0)] * 5 + [("t", "a", 1.0)] * 10, "a", None, 1.0),  # the last ten
        ([("t", "a", 4.0), ("t", "a", 2.0)], "b", None, 3.0),  # another tenant: the type mean
        ([("t", "a", 40.0)], "a", 5.0, 5.0),  # capped by the timeout
        ([("u", "a", 1.0)], "a", None, 10.0),  # another type teaches nothing
    ],
)
def test_a_prediction_is_the_tenant_then_the_type_then_the_default(
    runs: list[tuple[str, str, float]], tenant: str, timeout: float | None, expected: float
) -> None:
    durations = Durations(default=10.0)
    durations.seed(runs)
    assert durations.predict("t", tenant, timeout) == pytest.approx(expected)


def test_an_overrun_doubles_the_elapsed_time_and_a_timeout_caps_it() -> None:
    assert predicted_end(100.0, 5.0, 102.0) == 105.0  # on time
    assert predicted_end(100.0, 5.0, 110.0) == 120.0  # overran: twice the 10 s so far
    assert predicted_end(100.0, 5.0, 110.0, timeout=15.0) == 115.0
    assert predicted_end(100.0, 5.0, 130.0, timeout=15.0) == 130.0  # never before now


def test_the_core_learns_from_successes_only() -> None:
    sched = Scheduler(prediction_default=10.0)
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1), spec(2)], 0.0)
    sched.plan(0.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 3.0)
    sched.on_attempt_finished(jid(2), 1, Outcome.FAILED, 0.5)
    assert sched.state.durations.predict("t", "default") == pytest.approx(3.0)
    assert [e.runs for e in sched.state.durations.estimates()] == [1]


# -- EASY backfill ----------------------------------------------------------------------------
def _busy_worker(backfill: bool = True) -> Scheduler:
    """A 4-cpu worker with 3 cpu running 'long' (predicted 10 s) from t=0; a 4-cpu job waits."""
    sched = Scheduler(backfill=backfill, prediction_default=10.0)
    sched.state.durations.seed([("long", "default", 10.0), ("short", "default", 2.0)])
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 3, "long"), spec(2, 4, "big")], 0.0)
    assert [p.job_id for p in sched.plan(0.0)] == [jid(1)]
    return sched


def test_the_head_job_reserves_at_once_and_short_work_backfills_around_it() -> None:
    sched = _busy_worker()
    assert sched.state.workers["w"].reserved_for == jid(2)
    sched.add_jobs([spec(3, 1, "short"), spec(4, 1, "long")], 1.0)
    # short (ends at 3 < 10) backfills; long (ends at 11) would delay the big job: it waits
    assert [p.job_id for p in sched.plan(1.0)] == [jid(3)]
    sched.on_attempt_finished(jid(3), 1, Outcome.SUCCEEDED, 3.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 10.0)
    assert [p.job_id for p in sched.plan(10.0)] == [jid(2)]


def test_without_backfill_nothing_reserves_before_being_overtaken() -> None:
    sched = _busy_worker(backfill=False)
    assert sched.state.workers["w"].reserved_for is None


def test_a_promise_late_by_reserve_after_holds_the_worker_strictly() -> None:
    sched = _busy_worker()  # promised start: 10 (job 1's predicted end); reserve_after 10 s
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 1.0)  # the big job starts now
    assert [p.job_id for p in sched.plan(1.0)] == [jid(2)]
    # another wait: job 5 runs 'long' on 3 cpu, job 6 (4 cpu) reserves behind it
    sched.on_attempt_finished(jid(2), 1, Outcome.SUCCEEDED, 2.0)
    sched.add_jobs([spec(5, 3, "long"), spec(6, 4, "big")], 2.0)
    assert [p.job_id for p in sched.plan(2.0)] == [jid(5)]
    sched.add_jobs([spec(7, 1, "short")], 25.0)  # job 5 overran: promise 12, now 25 > 12 + 10
    assert sched.plan(25.0) == []


@settings(max_examples=60, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0, 4.0]), st.floats(0, 5)),
        min_size=1,
        max_size=30,
    )
)
def test_backfill_never_overfills_never_delays_a_reservation_and_returns_to_zero(
    jobs: list[tuple[int, float, float]],
) -> None:
    """Run times as predicted (each type's runs are its prediction): a job never starts where
    it does not fit, a reserved job starts no later than its first promise, and after the last
    end the worker holds nothing."""
    sched = Scheduler(prediction_default=1.0)
    kinds = {0.5: "a", 1.0: "b", 2.0: "c", 4.0: "d"}
    sched.state.durations.seed([(k, "default", s) for s, k in kinds.items()])
    sched.upsert_worker("w", 4, 4096)
    specs = [
        spec(i + 1, cpu, kinds[seconds], created=at) for i, (cpu, seconds, at) in enumerate(jobs)
    ]
    length = {s.id: seconds for s, (_, seconds, _) in zip(specs, jobs, strict=True)}
    arrivals = sorted(((s.created_at, i, s) for i, s in enumerate(specs)), key=lambda a: a[:2])
    ends: list[tuple[float, int, uuid.UUID]] = []
    promised: dict[uuid.UUID, float] = {}
    started: dict[uuid.UUID, float] = {}
    now, k = 0.0, 0
    while k < len(arrivals) or ends:
        now = min(
            arrivals[k][0] if k < len(arrivals) else float("inf"),
            ends[0][0] if ends else float("inf"),
        )
        while ends and ends[0][0] <= now:
            _, _, done = heapq.heappop(ends)
            sched.on_attempt_finished(done, 1, Outcome.SUCCEEDED, now)
        batch = []
        while k < len(arrivals) and arrivals[k][0] <= now:
            batch.append(arrivals[k][2])
            k += 1
        sched.add_jobs(batch, now)
        for p in sched.plan(now):
            started[p.job_id] = now
            heapq.heappush(ends, (now + length[p.job_id], p.job_id.int, p.job_id))
        worker = sched.state.workers["w"]
        assert 0 <= worker.cpu_used <= worker.cpu_total
        for job in sched.state.jobs.values():
            if job.shadow_first is not None and job.status is JobStatus.READY:
                promised.setdefault(job.id, job.shadow_first)
    for job_id, at in promised.items():
        assert started[job_id] <= at + 1e-9, "a backfilled job delayed the reservation"
    assert len(started) == len(specs)
    worker = sched.state.workers["w"]
    assert (worker.cpu_used, worker.mem_used, worker.holds) == (0, 0, set())


# -- upward rank --------------------------------------------------------------------------------
def test_the_critical_path_goes_first_within_a_priority() -> None:
    """A chain 1 → 2 → 3 submitted after two lone jobs starts first on a one-slot worker."""
    sched = Scheduler(prediction_default=1.0)
    sched.upsert_worker("w", 1, 4096)
    lone = [spec(10, created=0.0), spec(11, created=0.0)]
    sched.add_jobs([*lone, spec(1), spec(2, deps=(1,)), spec(3, deps=(2,))], 0.0)
    ranks = {j.id.int: j.rank for j in sched.state.jobs.values()}
    assert ranks == {10: 1.0, 11: 1.0, 1: 3.0, 2: 2.0, 3: 1.0}
    assert [p.job_id for p in sched.plan(0.0)] == [jid(1)]


def test_without_rank_order_age_decides() -> None:
    sched = Scheduler(prediction_default=1.0, rank_by_path=False)
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(10, created=0.0), spec(1), spec(2, deps=(1,))], 0.0)
    assert [p.job_id for p in sched.plan(0.0)] == [jid(10)]


def test_rank_is_bounded_by_age_so_old_work_is_not_starved() -> None:
    """A long chain submitted 100 s after a lone job does not pass it (rank 3 s < 100 s)."""
    sched = Scheduler(prediction_default=1.0)
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(10, created=0.0)], 0.0)
    sched.upsert_worker("w", 1, 4096, draining=True)
    sched.plan(0.0)
    chain = [
        spec(1, created=100.0),
        spec(2, deps=(1,), created=100.0),
        spec(3, deps=(2,), created=100.0),
    ]
    sched.add_jobs(chain, 100.0)
    sched.upsert_worker("w", 1, 4096)
    assert [p.job_id for p in sched.plan(100.0)] == [jid(10)]


# -- forecasts --------------------------------------------------------------------------------
def test_predicted_starts_follow_the_predicted_ends() -> None:
    """Two 1-cpu slots busy until t=4 and t=6 (runs of 4 s from 0 and 2); three ready 4 s jobs
    start at 4, 6 and 8, and the queue is left as it was."""
    sched = Scheduler(prediction_default=4.0)
    sched.upsert_worker("w", 2, 4096)
    sched.add_jobs([spec(1)], 0.0)
    sched.plan(0.0)
    sched.add_jobs([spec(2)], 2.0)
    sched.plan(2.0)
    sched.add_jobs([spec(3), spec(4), spec(5)], 3.0)
    assert sched.plan(3.0) == []
    got = {f.job_id.int: (f.start, f.late) for f in forecast.forecast(sched.state, 3.0)}
    assert got == {3: (4.0, 4.0), 4: (6.0, 6.0), 5: (8.0, 8.0)}
    assert len(forecast.next_ready(sched.state, 10)) == 3  # still there, in order
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 4.0)
    assert [p.job_id for p in sched.plan(4.0)] == [jid(3)]
