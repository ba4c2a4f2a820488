"""A batch's predicted finish (scheduler.batchfinish): the critical path of what is left, the
queue in front of it and its work over the capacity."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import Outcome
from scheduler import batchfinish
from scheduler.batchfinish import Left, finish
from scheduler.core import Scheduler
from scheduler.values import JobSpec


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def left(n: int, seconds: float, *parents: int, **kw: object) -> Left:
    return Left(jid(n), (seconds,), parents=tuple(jid(p) for p in parents), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("jobs", "capacity", "expected"),
    [
        ([], 8, None),  # nothing left
        ([left(1, 1.0)], 0, None),  # nothing could run it
        ([left(1, 1.0), left(2, 1.0, 1), left(3, 1.0, 2)], 8, 103.0),  # a chain
        ([left(1, 2.0, running=True), left(2, 1.0, 1)], 8, 103.0),  # 2 s left, then 1
        ([left(n, 1.0) for n in range(16)], 4, 104.0),  # 16 cpu-s on 4 cpu: the work bound
        ([left(1, 1.0, earliest=105.0)], 8, 106.0),  # the queue ahead: its predicted start
        ([left(1, 1.0, earliest=105.0), left(2, 1.0, earliest=105.0)], 1, 107.0),  # from 105
        ([left(1, 1.0), left(2, 1.0, 1, waits=(0.5,))], 8, 102.5),  # a wait once it is ready
        ([left(1, 1.0), left(2, 1.0, 1, 99)], 8, 102.0),  # a parent outside the batch: done
        ([left(1, 4.0, cpu=2), left(2, 1.0, 1)], 1, 109.0),  # work counts cpu-seconds
    ],
)
def test_the_finish_is_the_later_of_the_critical_path_and_the_work(
    jobs: list[Left], capacity: int, expected: float | None
) -> None:
    got = finish(jobs, 100.0, capacity)
    assert (got[0] if got is not None else None) == expected


def test_the_finish_is_the_median_of_the_draws_and_late_their_90th_percentile() -> None:
    """A job that runs 1 s eight times in ten and 9 s twice, then its child of 1 s."""
    runs = (1.0,) * 8 + (9.0,) * 2
    got = finish([Left(jid(1), runs), left(2, 1.0, 1)], 0.0, 8)
    assert got == (2.0, 10.0)


def _longest(jobs: list[tuple[float, list[int]]], now: float) -> float:
    """An independent reference: the longest path, by recursion over the parents."""
    ends: dict[int, float] = {}

    def end(i: int) -> float:
        if i not in ends:
            seconds, parents = jobs[i]
            ends[i] = max([now, *(end(p) for p in parents)]) + seconds
        return ends[i]

    return max(end(i) for i in range(len(jobs)))


@settings(max_examples=100, deadline=None)
@given(
    shape=st.lists(
        st.tuples(st.sampled_from([0.5, 1.0, 2.0]), st.integers(1, 2), st.lists(st.integers(0))),
        min_size=1,
        max_size=30,
    ),
    capacity=st.integers(1, 8),
)
def test_with_exact_runs_the_finish_is_the_longest_path_or_the_work(
    shape: list[tuple[float, int, list[int]]], capacity: int
) -> None:
    jobs = [(s, sorted({p % i for p in ps}) if i else []) for i, (s, _, ps) in enumerate(shape)]
    given_ = [
        Left(jid(i), (s,), cpu, parents=tuple(jid(p) for p in parents))
        for i, ((s, parents), (_, cpu, _)) in enumerate(zip(jobs, shape, strict=True))
    ]
    work = sum(s * cpu for s, cpu, _ in shape)
    expected = max(_longest(jobs, 10.0), 10.0 + work / capacity)
    got = finish(given_[::-1], 10.0, capacity)  # any order of the jobs
    assert got is not None
    assert got[0] == pytest.approx(expected) and got[1] == pytest.approx(expected)


# -- from the core's state ----------------------------------------------------------------------
def spec(n: int, *deps: int, kind: str = "t") -> JobSpec:
    return JobSpec(
        id=jid(n), name=f"j{n}", type=kind, created_at=n * 1e-3,
        depends_on=tuple(jid(d) for d in deps),
    )  # fmt: skip


def test_a_running_chain_is_predicted_to_end_when_its_path_does() -> None:
    """Batch A: 1 → 2 → 3, 2 s each, 1 running since t=0; batch B (newer) one 2 s job."""
    sched = Scheduler()
    sched.state.durations.seed([("t", "default", 2.0)])
    sched.upsert_worker("w", 2, 4096)
    sched.add_jobs([spec(1), spec(2, 1), spec(3, 2)], 0.0)
    sched.add_jobs([spec(4)], 0.0)
    sched.plan(0.0)
    batch_of = {jid(1): jid(100), jid(2): jid(100), jid(3): jid(100), jid(4): jid(200)}
    got = batchfinish.batch_forecasts(sched.state, batch_of, 1.0, {})
    assert [(b.batch_id.int, b.finish, b.jobs_left) for b in got] == [(200, 2.0, 1), (100, 6.0, 3)]
    assert [b.batch_id.int for b in batchfinish.batch_forecasts(
        sched.state, batch_of, 1.0, {}, limit=1)] == [200]  # fmt: skip
    for n in (1, 4):
        sched.on_attempt_finished(jid(n), 1, Outcome.SUCCEEDED, 2.0)
    got = batchfinish.batch_forecasts(sched.state, batch_of, 2.0, {})
    assert [(b.batch_id.int, b.finish) for b in got] == [(100, 6.0)]  # B finished: not there


def test_a_batch_past_the_job_bound_has_no_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchfinish, "JOBS_MAX", 2)
    sched = Scheduler()
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(1), spec(2, 1), spec(3, 2), spec(4)], 0.0)
    batch_of = {jid(1): jid(100), jid(2): jid(100), jid(3): jid(100), jid(4): jid(200)}
    got = batchfinish.batch_forecasts(sched.state, batch_of, 0.0, {})
    assert [b.batch_id.int for b in got] == [200]


def test_waits_of_jobs_their_parents_released_are_learned() -> None:
    """Job 2 is released by job 1's end at t=1 and starts at 3, when job 9 gives the slot
    back; job 9, ready from the start, teaches nothing."""
    sched = Scheduler()
    sched.upsert_worker("w", 1, 4096)
    sched.add_jobs([spec(1), spec(2, 1)], 0.0)
    sched.plan(0.0)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 1.0)
    sched.add_jobs([JobSpec(id=jid(9), name="x", type="t", created_at=-20.0)], 1.0)
    assert [p.job_id for p in sched.plan(1.0)] == [jid(9)]  # older: it goes first
    sched.on_attempt_finished(jid(9), 1, Outcome.SUCCEEDED, 3.0)
    assert [p.job_id for p in sched.plan(3.0)] == [jid(2)]
    assert list(sched.state.waits) == [2.0]
