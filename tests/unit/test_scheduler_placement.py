"""Placement: order, best fit, reservation against starvation, capacity, bounded passes."""

from __future__ import annotations

import heapq
import random
import uuid

import pytest

from models.enums import JobStatus, Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec, Placement


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(
    n: int, cpu: int = 1, mem: int = 1, priority: int = 5, created: float | None = None
) -> JobSpec:
    return JobSpec(
        id=jid(n),
        name=f"j{n}",
        priority=priority,
        cpu_units=cpu,
        memory_mb=mem,
        created_at=float(n) if created is None else created,
    )


def placed(out: list[Placement]) -> list[tuple[int, str]]:
    return [(p.job_id.int, p.worker_id) for p in out]


def test_priority_then_age_under_contention() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 3, 1000)
    sched.add_jobs(
        [
            spec(1, priority=2),
            spec(2, priority=8),
            spec(3, priority=5),
            spec(4, priority=8),
            spec(5, priority=10, created=100.0),
            spec(6, priority=5),
        ],
        0.0,
    )
    assert placed(sched.plan(0.0)) == [(5, "w"), (2, "w"), (4, "w")]
    for job in (5, 2, 4):
        sched.on_attempt_finished(jid(job), 1, Outcome.SUCCEEDED, 1.0)
    assert placed(sched.plan(1.0)) == [(3, "w"), (6, "w"), (1, "w")]


@pytest.mark.parametrize(
    ("free", "job", "expected"),
    [
        # (cpu, mem) free per worker a/b/c; job (cpu, mem); the tightest fit wins.
        ([(4, 4096), (2, 2048), (8, 8192)], (2, 1024), "b"),
        ([(4, 4096), (2, 2048), (8, 8192)], (3, 1024), "a"),
        ([(4, 4096), (2, 2048), (8, 8192)], (5, 1024), "c"),
        ([(4, 1024), (4, 8192), (8, 8192)], (4, 1024), "a"),
        ([(2, 8192), (3, 1024), (8, 8192)], (2, 1024), "b"),  # less total leftover
        ([(4, 4096), (4, 4096), (8, 8192)], (1, 1), "a"),  # ties: lowest worker id
    ],
)
def test_best_fit(free: list[tuple[int, int]], job: tuple[int, int], expected: str) -> None:
    sched = Scheduler()
    fillers = []
    for n, (name, (cpu, mem)) in enumerate(zip("abc", free, strict=True), start=100):
        sched.upsert_worker(name, 8, 8192)
        # a running job (as at a rebuild) takes exactly the room the case leaves free
        fillers.append(
            JobSpec(
                id=jid(n),
                name="filler",
                cpu_units=8 - cpu,
                memory_mb=8192 - mem,
                status=JobStatus.RUNNING,
                attempts=1,
                worker_id=name,
            )
        )
    sched.add_jobs(fillers, 0.0)
    assert [(w.cpu_free, w.memory_free) for w in sched.worker_views()] == free
    sched.add_jobs([spec(1, *job)], 0.0)
    assert placed(sched.plan(0.0)) == [(1, expected)]


def test_best_fit_keeps_the_big_hole_for_the_big_job() -> None:
    sched = Scheduler()
    sched.upsert_worker("small", 2, 2048)
    sched.upsert_worker("big", 8, 8192)
    sched.add_jobs([spec(1, 2, 1024), spec(2, 8, 8192)], 0.0)
    assert placed(sched.plan(0.0)) == [(1, "small"), (2, "big")]


def test_never_over_capacity_and_no_placement_on_draining() -> None:
    sched = Scheduler()
    sched.upsert_worker("a", 4, 4096)
    sched.upsert_worker("d", 64, 65536, draining=True)
    sched.add_jobs([spec(i, 1 + i % 3, 1000) for i in range(1, 30)], 0.0)
    out = sched.plan(0.0)
    assert {p.worker_id for p in out} == {"a"}
    assert sum(p.cpu_units for p in out) <= 4 and sum(p.memory_mb for p in out) <= 4096
    for w in sched.worker_views():
        assert w.cpu_in_use <= w.cpu_units and w.memory_in_use <= w.memory_mb


def test_never_fitting_job_does_not_block_and_says_why() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 8, 8192)
    sched.add_jobs([spec(1, 16, 1, priority=10), spec(2, 2, 1)], 0.0)
    assert placed(sched.plan(0.0)) == [(2, "w")]
    assert sched.unplaceable() == {
        jid(1): "no worker could ever fit it: needs 16 cpu_units, largest worker has 8"
    }
    assert sched.job_status(jid(1)) is JobStatus.READY
    sched.upsert_worker("big", 16, 16384)
    assert placed(sched.plan(1.0)) == [(1, "big")]
    assert sched.unplaceable() == {}


def test_no_worker_online_places_nothing() -> None:
    sched = Scheduler()
    sched.add_jobs([spec(1)], 0.0)
    assert sched.plan(0.0) == []
    sched.upsert_worker("w", 1, 1)
    assert placed(sched.plan(0.0)) == [(1, "w")]


def _run_stream(sched: Scheduler, horizon: float) -> float | None:
    """On a 4-cpu worker, a 1-cpu job runs, then a 4-cpu job (``j2``) arrives, then two 1-cpu
    jobs of ~1 s arrive every 0.5 s: when does the big job start (``None``: never)?"""
    rng = random.Random(1)
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 1, 1, created=0.0), spec(2, 4, 1, created=0.5)], 0.0)
    ends: list[tuple[float, int, int]] = []
    n, now = 1000, 0.0
    while now < horizon:
        for p in sched.plan(now):
            if p.job_id == jid(2):
                return now
            heapq.heappush(ends, (now + 1.0 + rng.random() * 0.1, p.job_id.int, p.attempt))
        now += 0.5
        while ends and ends[0][0] <= now:
            _, job, attempt = heapq.heappop(ends)
            sched.on_attempt_finished(jid(job), attempt, Outcome.SUCCEEDED, now)
        sched.add_jobs([spec(n, 1, 1, created=now), spec(n + 1, 1, 1, created=now)], now)
        n += 2
    return None


def test_backfill_alone_starves_a_big_job() -> None:
    assert _run_stream(Scheduler(reserve_after=float("inf"), backfill=False), 60.0) is None


@pytest.mark.parametrize("reserve_after", [0.0, 2.0, 10.0])
def test_reservation_stops_starvation(reserve_after: float) -> None:
    start = _run_stream(Scheduler(reserve_after=reserve_after, backfill=False), 60.0)
    assert start is not None
    # passed over from t=0.5; reserved after reserve_after; the worker drains within ~1.1 s
    assert start <= 0.5 + reserve_after + 1.5


@pytest.mark.parametrize("reserve_after", [0.0, 10.0, float("inf")])
def test_easy_backfill_reserves_the_head_at_once(reserve_after: float) -> None:
    """With backfill the big job reserves when it is first passed over, whatever the delay
    rule says, and starts once what runs there ends (~1.1 s), not after ``reserve_after``."""
    start = _run_stream(Scheduler(reserve_after=reserve_after, prediction_default=1.0), 60.0)
    assert start is not None
    assert start <= 0.5 + 1.5


def test_only_an_overtaken_job_reserves() -> None:
    """Waiting behind older jobs is not starving; being overtaken by younger ones is (the
    delay rule; with backfill the first job passed over reserves at once)."""
    sched = Scheduler(reserve_after=10.0, backfill=False)
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 3, 1), spec(2, 4, 1)], 0.0)
    assert placed(sched.plan(0.0)) == [(1, "w")]
    sched.add_jobs([spec(3, 2, 1)], 20.0)  # fits no more than 2 does: nobody overtakes 2
    assert sched.plan(20.0) == []
    assert sched.state.workers["w"].reserved_for is None
    sched.add_jobs([spec(4, 1, 1)], 21.0)
    assert placed(sched.plan(21.0)) == [(4, "w")]  # overtakes 2 (and 3) from t=21
    sched.on_attempt_finished(jid(4), 1, Outcome.SUCCEEDED, 30.0)
    sched.add_jobs([spec(5, 1, 1)], 30.0)
    assert placed(sched.plan(30.0)) == [(5, "w")]  # overtaken for 9 s only: backfill goes on
    sched.on_attempt_finished(jid(5), 1, Outcome.SUCCEEDED, 31.5)
    sched.add_jobs([spec(6, 1, 1)], 31.5)
    assert sched.plan(31.5) == []  # 10.5 s: 2 reserves the worker, 6 may not start there
    assert sched.state.workers["w"].reserved_for == jid(2)
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 32.0)
    assert placed(sched.plan(32.0)) == [(2, "w")]


def test_reservation_leaves_other_workers_to_backfill() -> None:
    sched = Scheduler(reserve_after=0.0)
    sched.upsert_worker("a", 4, 4096)
    sched.upsert_worker("b", 4, 4096)
    sched.add_jobs([spec(1, 3, 1), spec(2, 3, 1)], 0.0)
    assert len(sched.plan(0.0)) == 2
    sched.add_jobs([spec(3, 4, 1), spec(4, 1, 1), spec(5, 1, 1)], 1.0)
    # job 3 reserves one worker; 4 goes to the other; 5 may not use the reserved one.
    out = placed(sched.plan(1.0))
    assert out == [(4, "a")] or out == [(4, "b")]
    reserved = {"a", "b"} - {out[0][1]}
    sched.on_attempt_finished(jid(1), 1, Outcome.SUCCEEDED, 2.0)
    sched.on_attempt_finished(jid(2), 1, Outcome.SUCCEEDED, 2.0)
    out = placed(sched.plan(2.0))
    assert (3, reserved.pop()) in out


def test_several_starving_jobs_reserve_one_worker_each() -> None:
    sched = Scheduler(reserve_after=0.0)
    for name in "abc":
        sched.upsert_worker(name, 4, 4096)
    sched.add_jobs([spec(i, 3, 1) for i in range(1, 4)], 0.0)
    assert len(sched.plan(0.0)) == 3
    sched.add_jobs([spec(10, 4, 1), spec(11, 4, 1), spec(12, 1, 1)], 1.0)
    out = placed(sched.plan(1.0))
    reserved = {w.id for w in sched.state.workers.values() if w.reserved_for is not None}
    assert len(reserved) == 2
    assert len(out) == 1 and out[0][0] == 12 and out[0][1] not in reserved


def test_pass_is_bounded_when_nothing_fits() -> None:
    sched = Scheduler(lookahead=50)
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 3, 1)], 0.0)
    assert len(sched.plan(0.0)) == 1
    sched.add_jobs([spec(i, 2, 1) for i in range(2, 10_002)], 1.0)
    pops = _count_heappops(sched, 1.0)
    assert pops <= 50 + 5
    # with nothing changed, a second pass does no work at all
    assert _count_heappops(sched, 2.0) == 0


def test_pass_does_nothing_when_every_worker_is_full() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 2, 2048)
    sched.add_jobs([spec(i, 1, 1024) for i in range(1, 10_001)], 0.0)
    assert len(sched.plan(0.0)) == 2
    sched.add_jobs([spec(20_000, 1, 1)], 1.0)
    assert _count_heappops(sched, 1.0) == 0


def _count_heappops(sched: Scheduler, now: float) -> int:
    """How many entries one pass takes from the ready queue."""
    queue = sched.state.ready
    before = len(queue)
    count = 0
    original = queue.pop

    def counting() -> object:
        nonlocal count
        count += 1
        return original()

    queue.pop = counting  # type: ignore[method-assign]
    try:
        sched.plan(now)
    finally:
        del queue.pop  # type: ignore[method-assign]
    assert len(sched.state.ready) <= before
    return count
