"""Admins' controls on workers in the core (issue 19): drain and size survive heartbeats that
say otherwise, a smaller size only holds back new placements, and no control means the
worker's own declaration again."""

from __future__ import annotations

import uuid

from models.enums import Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec
from scheduler.workers import Control


def spec(n: int, cpu: int = 1) -> JobSpec:
    return JobSpec(id=uuid.UUID(int=n), name=f"j{n}", type="t", cpu_units=cpu)


def placed(sched: Scheduler, now: float) -> list[int]:
    return [p.job_id.int for p in sched.plan(now)]


def test_a_drained_worker_takes_nothing_until_resumed_whatever_its_heartbeats_say() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 4, 4096)
    sched.control_workers({"w": Control(drain=True)})
    sched.add_jobs([spec(1)], 0.0)
    assert placed(sched, 0.0) == []
    sched.upsert_worker("w", 4, 4096)  # its heartbeat says it is not draining itself
    assert placed(sched, 1.0) == []
    sched.control_workers({})  # resumed: no control any more
    assert placed(sched, 2.0) == [1]


def test_a_smaller_size_holds_back_new_work_until_use_is_under_it() -> None:
    sched = Scheduler()
    sched.upsert_worker("w", 4, 4096)
    sched.add_jobs([spec(1, 2), spec(2, 2)], 0.0)
    assert placed(sched, 0.0) == [1, 2]
    sched.control_workers({"w": Control(cpu_units=2)})
    sched.upsert_worker("w", 4, 4096)  # it still declares 4
    worker = sched.state.workers["w"]
    assert (worker.cpu_total, worker.cpu_used) == (2, 4)
    sched.add_jobs([spec(3, 2)], 1.0)
    assert placed(sched, 1.0) == []
    sched.on_attempt_finished(uuid.UUID(int=1), 1, Outcome.SUCCEEDED, 2.0)
    assert placed(sched, 2.0) == []  # 2 of 2 in use
    sched.on_attempt_finished(uuid.UUID(int=2), 1, Outcome.SUCCEEDED, 3.0)
    assert placed(sched, 3.0) == [3]


def test_a_control_set_before_the_worker_is_heard_applies_when_it_comes() -> None:
    sched = Scheduler()
    sched.control_workers({"w": Control(cpu_units=1, memory_mb=512)})
    sched.upsert_worker("w", 8, 8192)
    worker = sched.state.workers["w"]
    assert (worker.cpu_total, worker.mem_total) == (1, 512)
    sched.control_workers({"w": Control(memory_mb=1024)})
    assert (worker.cpu_total, worker.mem_total) == (8, 1024)
