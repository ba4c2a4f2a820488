"""Fair share between tenants within a priority (scheduler.fairshare through the core)."""

from __future__ import annotations

import uuid
from collections import Counter

from models.enums import Outcome
from scheduler.core import Scheduler
from scheduler.fairshare import ReadyQueue
from scheduler.values import JobSpec


def spec(n: int, tenant: str, priority: int = 5, cpu: int = 1, mem: int = 1) -> JobSpec:
    return JobSpec(
        id=uuid.UUID(int=n),
        name=f"j{n}",
        tenant=tenant,
        priority=priority,
        cpu_units=cpu,
        memory_mb=mem,
        created_at=float(n),
    )


def tenants(sched: Scheduler, now: float) -> Counter[str]:
    return Counter(sched.state.jobs[p.job_id].tenant for p in sched.plan(now))


def test_capacity_is_shared_by_weight_when_both_have_work_waiting() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 30, 30_000)
    sched.set_tenants({}, {"a": 1.0, "b": 2.0}, None)
    sched.add_jobs([spec(i, "a") for i in range(1, 1001)], 0.0)  # a's jobs are all older
    sched.add_jobs([spec(i, "b") for i in range(1001, 2001)], 1.0)
    assert tenants(sched, 1.0) == {"a": 10, "b": 20}


def test_each_completion_goes_to_the_tenant_furthest_below_its_share() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 4, 4_000)
    sched.add_jobs([spec(i, "a") for i in range(1, 101)], 0.0)
    first = sched.plan(0.0)
    assert len(first) == 4  # alone, a takes everything
    sched.add_jobs([spec(i, "late") for i in range(101, 111)], 1.0)
    sched.on_attempt_finished(first[0].job_id, 1, Outcome.SUCCEEDED, 2.0)
    assert tenants(sched, 2.0) == {"late": 1}  # the newcomer's first job starts at once
    sched.on_attempt_finished(first[1].job_id, 1, Outcome.SUCCEEDED, 3.0)
    assert tenants(sched, 3.0) == {"late": 1}  # 3 vs 1 running: late is still below
    sched.on_attempt_finished(first[2].job_id, 1, Outcome.SUCCEEDED, 4.0)
    assert tenants(sched, 4.0) == {"a": 1}  # 2 and 2: the tenant served least recently


def test_equal_tenants_take_turns_on_ties_whatever_their_age() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 1, 1_000)
    sched.add_jobs([spec(i, "old") for i in range(1, 11)], 0.0)
    sched.add_jobs([spec(i, "new") for i in range(11, 21)], 5.0)
    order = []
    for step in range(6):
        (placed,) = sched.plan(float(10 + step))
        order.append(sched.state.jobs[placed.job_id].tenant)
        sched.on_attempt_finished(placed.job_id, 1, Outcome.SUCCEEDED, 10.5 + step)
    assert order == ["old", "new", "old", "new", "old", "new"]


def test_a_reservation_is_kept_only_for_the_tenant_served_next() -> None:
    sched = Scheduler(reserve_after=0.0)
    sched.upsert_worker("w", 4, 4_000)
    sched.add_jobs([spec(1, "a", cpu=3), spec(2, "a", cpu=4), spec(3, "a", cpu=1)], 0.0)
    sched.plan(0.0)  # 1 and 3 start; 2 does not fit and reserves the worker
    assert sched.state.workers["w"].reserved_for == uuid.UUID(int=2)
    sched.add_jobs([spec(4, "b", cpu=1)], 1.0)  # b holds nothing: it is served next
    sched.on_attempt_finished(uuid.UUID(int=3), 1, Outcome.SUCCEEDED, 2.0)
    assert tenants(sched, 2.0) == {"b": 1}  # the reservation for a's job gave way


def test_priorities_rank_above_fairness() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 3, 3_000)
    sched.add_jobs([spec(1, "a", priority=8), spec(2, "a", priority=8), spec(3, "a", 8)], 0.0)
    sched.add_jobs([spec(4, "b", priority=5)], 0.0)
    assert tenants(sched, 0.0) == {"a": 3}


def test_the_dominant_resource_is_what_a_tenant_is_charged_for() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 10, 10_000)
    # m asks for little cpu and much memory: two of its jobs hold 80 % of the memory
    sched.add_jobs([spec(i, "m", cpu=1, mem=4_000) for i in range(1, 11)], 0.0)
    sched.add_jobs([spec(i, "c", cpu=1, mem=100) for i in range(11, 31)], 0.0)
    placed = tenants(sched, 0.0)
    assert placed["m"] == 2 and placed["c"] == 8  # by cpu count alone m would get 5


def test_one_tenant_alone_runs_in_age_order() -> None:
    queue = ReadyQueue()
    for n in (5, 3, 9, 1):
        queue.push((-5, float(n), n, n, uuid.UUID(int=n)), "only")
    order = []
    while (entry := queue.pop()) is not None:
        order.append(entry[2])
    assert order == [1, 3, 5, 9] and len(queue) == 0
