"""Pauses in the pass (issue 19): everything, a job type, or a batch. Their ready jobs stay
ready and wait in the pause's gate, running jobs go on, other work is placed, and a lifted
pause lets its jobs back in their order."""

from __future__ import annotations

import uuid

from scheduler.core import Scheduler
from scheduler.flow import PAUSE, PAUSE_ALL, pause_of_batch, pause_of_type
from scheduler.values import JobSpec

BATCH = uuid.UUID(int=99)


def spec(n: int, job_type: str = "a", batch: uuid.UUID | None = None) -> JobSpec:
    return JobSpec(id=uuid.UUID(int=n), name=f"j{n}", type=job_type, batch_id=batch)


def placed(sched: Scheduler, now: float) -> list[int]:
    return sorted(p.job_id.int for p in sched.plan(now))


def fresh() -> Scheduler:
    sched = Scheduler()
    sched.upsert_worker("w", 16, 16_000)
    return sched


def test_a_paused_batch_holds_only_its_own_jobs_until_resumed() -> None:
    sched = fresh()
    sched.set_pauses({pause_of_batch(BATCH): "paused by ops"})
    sched.add_jobs([spec(1, batch=BATCH), spec(2, batch=BATCH), spec(3)], 0.0)
    assert placed(sched, 0.0) == [3]
    views = {v.name: v for v in sched.gates(0.0) if v.kind == PAUSE}
    assert views[f"batch:{BATCH}"].held == 2 and views[f"batch:{BATCH}"].reason == "paused by ops"
    assert placed(sched, 1.0) == []
    sched.set_pauses({})
    assert placed(sched, 2.0) == [1, 2]


def test_a_paused_type_holds_its_jobs_while_another_type_runs() -> None:
    sched = fresh()
    sched.set_pauses({pause_of_type("a"): "paused"})
    sched.add_jobs([spec(1, "a"), spec(2, "b")], 0.0)
    assert placed(sched, 0.0) == [2]
    sched.set_pauses({pause_of_type("b"): "paused"})  # a's lifted, b's put on
    sched.add_jobs([spec(3, "b")], 1.0)
    assert placed(sched, 1.0) == [1]


def test_pausing_everything_starts_nothing_and_keeps_what_runs() -> None:
    sched = fresh()
    sched.add_jobs([spec(1)], 0.0)
    assert placed(sched, 0.0) == [1]
    sched.set_pauses({(PAUSE, PAUSE_ALL): "paused"})
    sched.add_jobs([spec(2, "b"), spec(3, batch=BATCH)], 1.0)
    assert placed(sched, 1.0) == []
    assert sched.job_status(uuid.UUID(int=1)).value == "running"  # type: ignore[union-attr]
    sched.set_pauses({})
    assert placed(sched, 2.0) == [2, 3]
