"""Predicted starts (scheduler.forecast) and the runs they draw from (Durations.runs_of)."""

from __future__ import annotations

import heapq
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import Outcome
from scheduler import forecast
from scheduler.core import Scheduler
from scheduler.durations import Durations
from scheduler.values import JobSpec


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(n: int, cpu: int = 1, kind: str = "t", tenant: str = "default") -> JobSpec:
    return JobSpec(
        id=jid(n), name=f"j{n}", type=kind, cpu_units=cpu, memory_mb=1, created_at=n * 1e-3,
        tenant=tenant,
    )  # fmt: skip


# -- the runs a forecast draws from -----------------------------------------------------------
@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], []),  # never seen
        ([("a", 1.0), ("b", 3.0)], [1.0, 3.0]),  # the type's, whoever ran them
        ([("a", 1.0)] * 4 + [("b", 9.0)], [1.0] * 4 + [9.0]),  # four of a's: too few
        ([("a", 1.0), ("a", 1.2)] * 3 + [("b", 1.1)] * 6, [1.0, 1.2] * 3 + [1.1] * 6),  # alike
        ([("a", 1.0), ("a", 1.2)] * 3 + [("b", 9.0)] * 6, [1.0, 1.2] * 3),  # a's differ: a's
    ],
)
def test_a_forecast_draws_from_the_type_unless_the_tenant_clearly_differs(
    runs: list[tuple[str, float]], expected: list[float]
) -> None:
    durations = Durations()
    durations.seed([("t", tenant, seconds) for tenant, seconds in runs])
    assert list(durations.runs_of("t", "a")) == expected


# -- predicted starts ---------------------------------------------------------------------------
def test_a_start_is_the_median_of_the_draws_and_late_their_90th_percentile() -> None:
    """Job 1 runs 1 s eight times in ten and 9 s twice: job 2, behind it, is predicted to
    start at 1 (a mean, 2.6, is when it is least likely to start) and by 9 at the latest."""
    sched = Scheduler()
    sched.state.durations.seed([("t", "x", s) for s in [1.0] * 8 + [9.0, 9.0]])
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(1, tenant="y"), spec(2, tenant="y")], 0.0)
    sched.plan(0.0)
    (only,) = forecast.forecast(sched.state, 0.0)
    assert (only.job_id, only.start, only.late) == (jid(2), 1.0, 9.0)
    assert forecast.forecast(sched.state, 0.0) == [only]  # a function of the state


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.5, 1.0),  # young: most runs end at 1
        (2.0, 5.0),  # past 1 s: only the 5 s run is longer, so it ends at 5 (not at 2 x 2)
        (6.0, 12.0),  # past every run seen: the doubling rule
    ],
)
def test_a_running_job_ends_as_the_runs_longer_than_its_age(now: float, expected: float) -> None:
    sched = Scheduler()
    sched.state.durations.seed([("t", "default", s) for s in [1.0] * 9 + [5.0]])
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(1), spec(2)], 0.0)
    sched.plan(0.0)
    (only,) = forecast.forecast(sched.state, now)
    assert only.start == pytest.approx(expected)


def test_the_next_slot_frees_at_the_earliest_end_not_the_earliest_mean() -> None:
    """Four slots each run a job of 1 s or 3 s, even odds: one of four ends at 1 s with
    probability 15/16, so the fifth job is predicted at 1 (a run on means said 2)."""
    sched = Scheduler()
    sched.state.durations.seed([("t", "default", s) for s in [1.0, 3.0] * 10])
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(n) for n in range(1, 6)], 0.0)
    assert len(sched.plan(0.0)) == 4
    (only,) = forecast.forecast(sched.state, 0.0)
    assert (only.job_id, only.start) == (jid(5), 1.0)


def test_work_that_fits_beside_a_reservation_is_predicted_to_start_now() -> None:
    """4 cpu, in age order: job 1 (2 cpu, 2 s) runs; job 2 (3 cpu) reserves for t=2, when 1
    cpu will be left beside it; job 3 (1 cpu, 4 s) ends after 2 but fits in that cpu, so it
    starts now."""
    sched = Scheduler(rank_by_path=False)
    sched.state.durations.seed([("c", "default", 2.0), ("d", "default", 4.0)])
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 2, "c"), spec(2, 3, "c")], 0.0)
    sched.plan(0.0)
    sched.add_jobs([spec(3, 1, "d")], 0.0)
    got = {f.job_id.int: f.start for f in forecast.forecast(sched.state, 0.0)}
    assert got == {2: 2.0, 3: 0.0}
    assert [p.job_id for p in sched.plan(0.0)] == [jid(3)]


def _happens(sched: Scheduler, seconds: dict[uuid.UUID, float]) -> dict[uuid.UUID, float]:
    """Run the core on a virtual clock with these true run times: when each job starts."""
    starts: dict[uuid.UUID, float] = {}
    ends: list[tuple[float, uuid.UUID]] = []
    now = 0.0
    while True:
        for p in sched.plan(now):
            starts[p.job_id] = now
            heapq.heappush(ends, (now + seconds[p.job_id], p.job_id))
        if not ends:
            return starts
        now = ends[0][0]
        while ends and ends[0][0] <= now:
            sched.on_attempt_finished(heapq.heappop(ends)[1], 1, Outcome.SUCCEEDED, now)


@settings(max_examples=80, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0, 4.0])),
        min_size=1,
        max_size=24,
    ),
    cpu=st.integers(4, 6),
)
def test_with_exact_predictions_the_forecast_is_what_placement_does(
    jobs: list[tuple[int, float]], cpu: int
) -> None:
    """Each type always runs the same time: on one worker, every predicted start (the late
    one too) is the start placement gives, backfill and reservations included."""
    sched = Scheduler(reserve_after=1e9)
    kinds = {0.5: "a", 1.0: "b", 2.0: "c", 4.0: "d"}
    sched.state.durations.seed([(k, "default", s) for s, k in kinds.items()])
    sched.upsert_worker("w", cpu, 4096)
    specs = [spec(n, c, kinds[s]) for n, (c, s) in enumerate(jobs, 1)]
    sched.add_jobs(specs, 0.0)
    predicted = {f.job_id: (f.start, f.late) for f in forecast.forecast(sched.state, 0.0)}
    actual = _happens(sched, {s.id: seconds for s, (_, seconds) in zip(specs, jobs, strict=True)})
    assert predicted == {job_id: (at, at) for job_id, at in actual.items()}


def test_the_samples_shrink_as_the_running_attempts_grow_within_bounds() -> None:
    assert forecast.samples_for(0) == forecast.SAMPLES
    assert forecast.samples_for(1_000) == forecast.SAMPLES
    assert forecast.samples_for(8_000) == forecast.DRAW_BUDGET // 8_000
    assert forecast.samples_for(1_000_000) == forecast.MIN_SAMPLES
    assert forecast.samples_for(8_000, samples=4) == 4  # never more than asked


def test_a_big_fleets_forecast_draws_only_ends_a_running_job_could_have() -> None:
    """3,000 running attempts (fewer samples): every predicted start is one of the ends the
    runs seen allow (start + a run), and the forecast is still a function of the state."""
    sched = Scheduler()
    sched.state.durations.seed([("t", "default", s) for s in (1.0, 2.0, 4.0) * 10])
    for w in range(375):
        sched.upsert_worker(f"w{w:03}", 8, 1 << 20)
    sched.add_jobs([spec(n) for n in range(1, 3_000 + 11)], 0.0)
    sched.plan(0.0)
    assert forecast.samples_for(3_000) < forecast.SAMPLES
    got = forecast.forecast(sched.state, 0.5)
    assert len(got) == 10
    assert all(f.start in (1.0, 2.0, 4.0) and f.start <= f.late for f in got)
    assert forecast.forecast(sched.state, 0.5) == got
