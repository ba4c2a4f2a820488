"""A pass's decisions as rows and messages (pure): attempt rows, worker rows, status events,
dispatches and cancels. No I/O; the clock and what the shell keeps come in as arguments."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from models.enums import FINAL_STATUSES, JobStatus, Outcome, WorkerState
from models.messages import AttemptFinished, CancelJob, Dispatch, Heartbeat, JobStatusEvent
from scheduler.rows import AttemptWrites, JobWrite, dt
from scheduler.state import JobRecord
from scheduler.values import Placement, SendCancel, Transition
from smartq import topology

Message = tuple[str, bytes]
AttemptKey = tuple[uuid.UUID, int]


def attempt_writes(
    finished: Sequence[AttemptFinished],
    transitions: Iterable[Transition],
    freed: Iterable[AttemptKey],
    now: float,
) -> AttemptWrites:
    """Close the reported attempts and those the scheduler ended itself (lost, handed back);
    release the ``freed`` lingering holds; delete the rows of dispatches given back."""
    at = dt(now)
    rows = [_report_row(f) for f in finished]
    reported = {(f.job_id, f.attempt) for f in finished}
    drops: list[AttemptKey] = []
    for t in transitions:
        if t.to_attempts is not None:
            drops.append((t.job_id, t.attempts))
        elif t.outcome is not None and (t.job_id, t.attempts) not in reported:
            rows.append(_ended_row(t, at))
    closing = {(r["b_job_id"], r["b_attempt"]): r for r in rows}
    releases = []
    for key in freed:  # a row closed in this pass is released by its close (one update)
        if key in closing:
            closing[key]["b_released_at"] = at
        else:
            releases.append(key)
    return AttemptWrites(rows, releases, drops)


def _report_row(f: AttemptFinished) -> dict[str, Any]:
    return {
        "b_job_id": f.job_id,
        "b_attempt": f.attempt,
        "b_started_at": f.started_at,
        "b_finished_at": f.finished_at,
        "b_duration": (f.finished_at - f.started_at).total_seconds(),
        "b_outcome": f.outcome.value,
        "b_error": f.error,
        "b_result": f.result if f.outcome is Outcome.SUCCEEDED else None,
        "b_released_at": f.finished_at if f.released else None,
        "b_failure_class": f.failure_class.value if f.failure_class is not None else None,
        "b_peak_memory_mb": f.peak_memory_mb,
    }


def _ended_row(t: Transition, at: datetime | None) -> dict[str, Any]:
    assert t.outcome is not None
    return {
        "b_job_id": t.job_id,
        "b_attempt": t.attempts,
        "b_started_at": None,
        "b_finished_at": at,
        "b_duration": None,
        "b_outcome": t.outcome.value,
        "b_error": t.error,
        "b_result": None,
        "b_released_at": at,
        "b_failure_class": None,
        "b_peak_memory_mb": None,
    }


class WorkerRows:
    """Rows of the heartbeating workers, with the attempt outcomes counted since their last
    row (kept until the worker's next heartbeat)."""

    def __init__(self) -> None:
        self._outcomes: Counter[tuple[str, str]] = Counter()

    def count(self, transitions: Iterable[Transition]) -> None:
        for t in transitions:
            if t.worker_id and t.outcome is not None:
                ok = t.to_status is JobStatus.COMPLETED
                self._outcomes[(t.worker_id, "ok" if ok else "bad")] += 1

    def rows(self, beats: Iterable[Heartbeat]) -> list[dict[str, Any]]:
        return [self._row(beat) for beat in beats]

    def _row(self, beat: Heartbeat) -> dict[str, Any]:
        if beat.stopped:
            state = WorkerState.OFFLINE
        elif beat.draining:
            state = WorkerState.DRAINING
        else:
            state = WorkerState.BUSY if beat.running else WorkerState.IDLE
        return {
            "id": beat.worker_id,
            "hostname": beat.hostname,
            "cpu_units": beat.cpu_units,
            "memory_mb": beat.memory_mb,
            "state": state.value,
            "job_types": beat.job_types,
            "started_at": beat.started_at,
            "last_heartbeat": beat.ts,
            "draining": beat.draining,
            "resources": beat.resources or None,
            "labels": beat.labels or None,
            "jobs_succeeded": self._outcomes.pop((beat.worker_id, "ok"), 0),
            "jobs_failed": self._outcomes.pop((beat.worker_id, "bad"), 0),
        }


def dispatch(
    job_id: uuid.UUID,
    attempt: int,
    worker_id: str,
    row: Any,
    now: datetime,
    incarnation: str | None,
) -> Message:
    """The dispatch of one attempt, from the job's row (type, name, payload, resources,
    timeout), with its routing key."""
    message = Dispatch(
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        job_type=row["type"],
        name=row["name"],
        payload=row["payload"],
        cpu_units=row["cpu_units"],
        memory_mb=row["memory_mb"],
        timeout_seconds=row["timeout_seconds"],
        tenant=row["tenant"],
        dispatched_at=now,
        incarnation=incarnation,
    )
    return topology.dispatch_key(worker_id, job_id), message.dumps()


def dispatches(
    started: Iterable[Placement],
    won: Mapping[uuid.UUID, Any],
    incarnation: Callable[[str], str | None],
    now: datetime,
) -> list[Message]:
    """The placements that won, as one message per worker."""
    per_worker: dict[str, list[Message]] = {}
    for p in started:
        message = dispatch(
            p.job_id, p.attempt, p.worker_id, won[p.job_id], now, incarnation(p.worker_id)
        )
        per_worker.setdefault(p.worker_id, []).append(message)
    out: list[Message] = []
    for worker_id, messages in per_worker.items():
        out += topology.batched(topology.dispatch_batch_key(worker_id), messages)
    return out


def status_events(
    writes: Mapping[uuid.UUID, JobWrite],
    won: Mapping[uuid.UUID, Any],
    batch_of: MutableMapping[uuid.UUID, uuid.UUID],
    jobs: Mapping[uuid.UUID, JobRecord],
    now: float,
    ran: Mapping[AttemptKey, timedelta],
) -> list[Message]:
    """A ``job.status`` event per job whose write won. A final status forgets the job's batch."""
    at = dt(now)
    assert at is not None
    out = []
    for job_id, w in writes.items():
        if job_id not in won:
            continue
        status = JobStatus(w.status)
        final = status in FINAL_STATUSES
        event = JobStatusEvent(
            job_id=job_id,
            status=status,
            attempt=w.attempts,
            ts=at,
            batch_id=batch_of.pop(job_id, None) if final else batch_of.get(job_id),
            worker_id=w.worker_id,
            reason=w.reason,
            error=w.error,
            job_type=won[job_id]["type"],
            tenant=won[job_id]["tenant"],
            **_timings(jobs.get(job_id), w, now, ran),
        )
        out.append((topology.status_key(job_id), event.dumps()))
    return out


def _timings(
    job: JobRecord | None, w: JobWrite, now: float, ran: Mapping[AttemptKey, timedelta]
) -> dict[str, float]:
    """Metrics fields of a status event: wait before the first start, and how long the attempt
    that just ended ran (as its worker measured it)."""
    out: dict[str, float] = {}
    if w.status == JobStatus.RUNNING.value and w.attempts == 1 and job is not None:
        out["queued_seconds"] = max(0.0, now - job.created_at)
    took = ran.get((w.id, w.from_attempts))
    if w.from_status == JobStatus.RUNNING.value and took is not None:
        out["run_seconds"] = took.total_seconds()
    return out


def cancels(sends: Iterable[SendCancel]) -> list[Message]:
    return [
        (
            topology.cancel_key(s.worker_id, s.job_id),
            CancelJob(job_id=s.job_id, attempt=s.attempt, reason=s.reason).dumps(),
        )
        for s in sends
    ]


def is_event(message: Message) -> bool:
    return message[0].startswith("job.status.")


def is_dispatch(message: Message) -> bool:
    return message[0].startswith("job.dispatch.")
