"""Turning one pass's decisions into one conditional write per job (pure).

A job may move several times in a pass (pending → ready → running); the database sees one
update from where it was to where it ends, conditional on where it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from models.enums import FINAL_STATUSES, JobStatus, Outcome
from models.messages import AttemptFinished
from scheduler import encode
from scheduler.rows import JobWrite, PassWrite, dt
from scheduler.values import Placement, Transition


def _write(t: Transition, now: datetime, result: Any) -> JobWrite:
    final = t.to_status in FINAL_STATUSES
    return JobWrite(
        id=t.job_id,
        from_status=t.from_status.value,
        from_attempts=t.attempts,
        status=t.to_status.value,
        attempts=t.attempts if t.to_attempts is None else t.to_attempts,
        reason=t.reason,
        error=t.error,
        result=result if t.to_status is JobStatus.COMPLETED else None,
        not_before=dt(t.not_before) if t.to_status is JobStatus.RETRYING else None,
        finished_at=now if final else None,
        memory_escalated_mb=t.memory_mb,
        memory_escalations=t.memory_escalations,
    )


def _placed(p: Placement, now: datetime) -> JobWrite:
    return JobWrite(
        id=p.job_id,
        from_status=JobStatus.READY.value,
        from_attempts=p.attempt - 1,
        status=JobStatus.RUNNING.value,
        attempts=p.attempt,
        reason=None,
        worker_id=p.worker_id,
        started_at=now,
    )


def merge(first: JobWrite, then: JobWrite) -> JobWrite:
    """``first`` then ``then`` as one write: the first's precondition, the last's values."""
    return JobWrite(
        id=first.id,
        from_status=first.from_status,
        from_attempts=first.from_attempts,
        status=then.status,
        attempts=then.attempts,
        reason=then.reason,
        error=then.error or first.error,
        result=then.result,
        not_before=then.not_before,
        worker_id=then.worker_id,
        started_at=then.started_at or first.started_at,
        finished_at=then.finished_at,
        memory_escalated_mb=_later(first.memory_escalated_mb, then.memory_escalated_mb),
        memory_escalations=_later(first.memory_escalations, then.memory_escalations),
    )


def _later(first: int | None, then: int | None) -> int | None:
    """The later of two writes of a value that a write may leave unchanged (None)."""
    return first if then is None else then


def plan_writes(
    transitions: Iterable[Transition],
    placements: Iterable[Placement],
    now: datetime,
    results: dict[uuid.UUID, Any],
) -> dict[uuid.UUID, JobWrite]:
    """One write per job, in decision order."""
    out: dict[uuid.UUID, JobWrite] = {}
    steps = [_write(t, now, results.get(t.job_id)) for t in transitions]
    steps += [_placed(p, now) for p in placements]
    for step in steps:
        before = out.get(step.id)
        out[step.id] = step if before is None else merge(before, step)
    return out


def plan_pass(
    transitions: list[Transition],
    placements: list[Placement],
    finished: Sequence[AttemptFinished],
    freed: Iterable[tuple[uuid.UUID, int]],
    workers: list[dict[str, Any]],
    gone: list[str],
    now: float,
    breakers: list[dict[str, Any]] | None = None,
) -> tuple[dict[uuid.UUID, JobWrite], PassWrite]:
    """A pass's decisions as its one write: the job writes (by job), and everything the store
    writes atomically (job rows in id order, attempt rows, workers)."""
    at = dt(now)
    assert at is not None
    results = {f.job_id: f.result for f in finished if f.outcome is Outcome.SUCCEEDED}
    writes = plan_writes(transitions, placements, at, results)
    write = PassWrite(
        jobs=sorted(writes.values(), key=lambda w: w.id),
        placements=placements,
        attempts=encode.attempt_writes(finished, transitions, freed, now),
        workers=workers,
        gone=gone,
        now=at,
        breakers=breakers or [],
    )
    return writes, write
