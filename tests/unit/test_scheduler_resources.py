"""Named resources and labels: parsing, fit, holds given back to zero."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.enums import Outcome
from scheduler.core import Scheduler
from scheduler.resources import ResourceSpecError, parse_counts, parse_labels
from scheduler.values import JobSpec


def spec(
    n: int,
    resources: dict[str, int] | None = None,
    labels: dict[str, str] | None = None,
    cpu: int = 1,
) -> JobSpec:
    return JobSpec(
        id=uuid.UUID(int=n),
        name=f"j{n}",
        priority=5,
        cpu_units=cpu,
        memory_mb=1,
        created_at=float(n),
        resources=resources or {},
        labels=labels or {},
    )


def fleet(workers: dict[str, tuple[dict[str, int], dict[str, str]]]) -> Scheduler:
    sched = Scheduler()
    for wid, (res, labels) in workers.items():
        sched.upsert_worker(wid, 8, 8000, resources=res, labels=labels)
    return sched


def test_parse() -> None:
    assert parse_counts(["gpu=2,license=1"]) == {"gpu": 2, "license": 1}
    assert parse_labels(["zone=eu", "disk=ssd"]) == {"zone": "eu", "disk": "ssd"}


@pytest.mark.parametrize("bad", ["gpu=0", "gpu=x", "cpu=1", "GPU=1", "gpu", "1a=1"])
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(ResourceSpecError):
        parse_counts([bad])


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (spec(1, {"gpu": 1}), "g"),
        (spec(1, labels={"zone": "eu"}), "g"),
        (spec(1, labels={"zone": "us"}), None),
        (spec(1, {"gpu": 2}), None),
        (spec(1), "p"),
    ],
)
def test_placed_only_where_it_fits(job: JobSpec, expected: str | None) -> None:
    sched = fleet({"g": ({"gpu": 1}, {"zone": "eu"}), "p": ({}, {})})
    sched.add_jobs([job], 0.0)
    out = sched.plan(0.0)
    got = out[0].worker_id if out else None
    if expected == "p":
        assert got is not None
    else:
        assert got == expected


def test_all_in_use_waits_then_runs() -> None:
    sched = fleet({"g": ({"gpu": 1}, {})})
    sched.add_jobs([spec(1, {"gpu": 1}), spec(2, {"gpu": 1})], 0.0)
    assert [p.job_id.int for p in sched.plan(0.0)] == [1]
    sched.on_attempt_finished(uuid.UUID(int=1), 1, Outcome.SUCCEEDED, 1.0)
    assert [p.job_id.int for p in sched.plan(1.0)] == [2]


@settings(max_examples=60, deadline=None)
@given(
    asks=st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(1, 4)), max_size=25),
)
def test_never_over_and_back_to_zero(asks: list[tuple[int, bool, int]]) -> None:
    sched = fleet({"a": ({"gpu": 2}, {"zone": "eu"}), "b": ({"gpu": 3}, {}), "c": ({}, {})})
    specs = [
        spec(i + 1, {"gpu": g} if g else None, {"zone": "eu"} if eu else None, cpu)
        for i, (g, eu, cpu) in enumerate(asks)
    ]
    sched.add_jobs(specs, 0.0)
    by_id = {s.id: s for s in specs}
    running: list[uuid.UUID] = []
    now = 0.0
    for _ in range(len(specs) + 2):
        for p in sched.plan(now):
            job, worker = by_id[p.job_id], sched.state.workers[p.worker_id]
            assert all(worker.res_total.get(k, 0) >= v for k, v in job.resources.items())
            assert all(worker.labels.get(k) == v for k, v in job.labels.items())
            running.append(p.job_id)
        for w in sched.state.workers.values():
            assert all(w.res_used.get(k, 0) <= n for k, n in w.res_total.items())
            assert set(w.res_used) <= set(w.res_total)
            assert w.cpu_used <= w.cpu_total
        now += 1.0
        for job_id in running:
            sched.on_attempt_finished(job_id, 1, Outcome.SUCCEEDED, now)
        running.clear()
    for w in sched.state.workers.values():
        assert w.res_used == {} and w.cpu_used == 0 and w.mem_used == 0


def test_a_heartbeat_declares_the_whole_offer() -> None:
    """What a worker declares is what its last heartbeat said: a gpu taken out of a worker
    (restarted without ``--resource gpu=1``) parks the gpu job, and putting it back places it."""
    sched = fleet({"g": ({"gpu": 1}, {"zone": "eu"})})
    sched.upsert_worker("g", 8, 8000)  # restarted with no resources or labels
    sched.add_jobs([spec(1, {"gpu": 1})], 0.0)
    assert sched.plan(0.0) == []
    assert sched.state.workers["g"].res_total == {}
    sched.upsert_worker("g", 8, 8000, resources={"gpu": 1}, labels={"zone": "eu"})
    assert [p.job_id.int for p in sched.plan(1.0)] == [1]
