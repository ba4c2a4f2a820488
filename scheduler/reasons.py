"""Human-readable reasons: why a job waits, why it was cancelled, why it can never be placed.

:func:`why_waiting` is a pure function of explicit inputs because the API computes it from
database reads, not from the scheduler's memory; the scheduler uses the same phrasing for the
``status_reason`` it writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from models.enums import JobStatus
from scheduler.values import WorkerView

#: The reason of a job a user cancelled (the API, the scheduler and retry decisions use it).
CANCELLED_BY_USER = "cancelled by user"
#: Dependencies named one by one in a reason; the rest are counted.
MAX_NAMED_DEPENDENCIES = 5
#: An upstream error is quoted by its first line, cut to this length.
MAX_ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What :func:`why_waiting` needs to know about the job itself."""

    status: JobStatus
    priority: int = 5
    cpu_units: int = 1
    memory_mb: int = 256
    attempts: int = 0
    max_attempts: int = 1
    run_at: float | None = None
    not_before: float | None = None
    worker_id: str | None = None
    job_type: str = ""
    resources: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DependencyFacts:
    """One unfinished dependency of the job."""

    job_id: uuid.UUID
    name: str
    status: JobStatus


def iso(ts: float) -> str:
    """Epoch seconds as ``2026-11-22T10:00:03Z`` (whole seconds; reasons are for people)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def predicted_start_words(start: float, late: float) -> str:
    """What a waiting reason adds for a job with a predicted start (:mod:`scheduler.forecast`)."""
    if late - start < 1.0:
        return f"predicted start {iso(start)}"
    return f"predicted start {iso(start)} (by {iso(late)} at the 90th percentile)"


#: What a pause of each kind holds, in a reason.
_PAUSED_WHAT = {"all": "everything", "type": "job type {}", "batch": "batch {}"}


def paused_reason(kind: str, name: str, by: str | None, at: float) -> str:
    """The reason of a ready job a pause holds: ``paused: batch 12ab… paused by key 9f… at …``."""
    what = _PAUSED_WHAT.get(kind, kind + " {}").format(name)
    who = f"key {by}" if by else "an open API (auth off)"
    return f"paused: {what} paused by {who} at {iso(at)}"


def upstream_reason(name: str, job_id: uuid.UUID, status: JobStatus, error: str | None) -> str:
    """Reason written on a job cancelled because an upstream job ended badly."""
    if status is JobStatus.CANCELLED:
        return f"upstream job {name} ({job_id}) was cancelled"
    first_line = error.strip().splitlines()[0] if error and error.strip() else ""
    if len(first_line) > MAX_ERROR_CHARS:
        first_line = first_line[: MAX_ERROR_CHARS - 1] + "…"
    suffix = f": {first_line}" if first_line else ""
    return f"upstream job {name} ({job_id}) failed{suffix}"


#: Job types named in a reason; the rest are counted.
MAX_NAMED_TYPES = 8


def type_missing_reason(job_type: str, workers: Sequence[WorkerView]) -> str | None:
    """Why no accepting worker runs ``job_type``, or ``None`` if one does."""
    accepting = [w for w in workers if w.accepting]
    if not accepting or any(w.offers(job_type) for w in accepting):
        return None
    offered = sorted({t for w in accepting for t in (w.job_types or ())})
    named = ", ".join(offered[:MAX_NAMED_TYPES])
    more = len(offered) - MAX_NAMED_TYPES
    tail = f" and {more} more" if more > 0 else ""
    noun = "worker" if len(accepting) == 1 else "workers"
    return (
        f"no live worker runs job type '{job_type}' ({len(accepting)} {noun} accepting, "
        f"offering {named or 'no types'}{tail}); start a worker that imports it"
    )


def could_hold(
    w: WorkerView,
    cpu_units: int,
    memory_mb: int,
    resources: Mapping[str, int],
    labels: Mapping[str, str],
) -> bool:
    """Could ``w``, empty, hold a job asking for this?"""
    return (
        w.cpu_units >= cpu_units
        and w.memory_mb >= memory_mb
        and all(w.resources.get(name, 0) >= n for name, n in resources.items())
        and all(w.labels.get(name) == value for name, value in labels.items())
    )


def never_fits_reason(
    cpu_units: int,
    memory_mb: int,
    workers: Sequence[WorkerView],
    job_type: str | None = None,
    resources: Mapping[str, int] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str | None:
    """Why no accepting worker could ever hold the job, or ``None`` if one could. With a
    ``job_type``, only workers that run that type count."""
    if job_type is not None:
        missing = type_missing_reason(job_type, workers)
        if missing is not None:
            return missing
    resources, labels = resources or {}, labels or {}
    accepting = [w for w in workers if w.accepting and (job_type is None or w.offers(job_type))]
    if any(could_hold(w, cpu_units, memory_mb, resources, labels) for w in accepting):
        return None
    need = _never_need(cpu_units, memory_mb, accepting, resources, labels)
    return f"no worker could ever fit it: {need}"


def _never_need(
    cpu_units: int,
    memory_mb: int,
    accepting: Sequence[WorkerView],
    resources: Mapping[str, int],
    labels: Mapping[str, str],
) -> str:
    for name, value in labels.items():
        if not any(w.labels.get(name) == value for w in accepting):
            seen = sorted({w.labels[name] for w in accepting if name in w.labels})
            has = f" (live workers have {name}={', '.join(seen)})" if seen else ""
            return f"needs {name}={value}; no live worker has label {name}={value}{has}"
    for name, n in resources.items():
        most = max((w.resources.get(name, 0) for w in accepting), default=0)
        if most == 0:
            return f"needs {name}={n}; no live worker has {name}"
        if n > most:
            return f"needs {name}={n}; the most any live worker has is {name}={most}"
    big_cpu = max((w.cpu_units for w in accepting), default=0)
    big_mem = max((w.memory_mb for w in accepting), default=0)
    if cpu_units > big_cpu:
        return f"needs {cpu_units} cpu_units, largest worker has {big_cpu}"
    if memory_mb > big_mem:
        return f"needs {memory_mb} memory_mb, largest worker has {big_mem}"
    if not resources and not labels:
        return f"needs {cpu_units} cpu_units and {memory_mb} memory_mb; no single worker has both"
    asked = ", ".join(
        [f"{cpu_units} cpu_units", f"{memory_mb} memory_mb"]
        + [f"{name}={n}" for name, n in resources.items()]
        + [f"{name}={value}" for name, value in labels.items()]
    )
    return f"needs {asked} together; no single worker has all of them"


def why_waiting(
    job: JobFacts,
    now: float,
    dependencies: Sequence[DependencyFacts] = (),
    workers: Sequence[WorkerView] = (),
    higher_priority_ready: int = 0,
) -> str:
    """One line saying why the job is not running (or what it is doing if it is)."""
    if job.status.is_final:
        return f"finished: {job.status.value}"
    if job.status is JobStatus.RUNNING:
        where = f" on worker {job.worker_id}" if job.worker_id else ""
        return f"running{where} (attempt {job.attempts} of {job.max_attempts})"
    if dependencies:
        return _dependencies_reason(dependencies)
    if job.status is JobStatus.RETRYING and job.not_before is not None and job.not_before > now:
        return (
            f"retrying: backoff ends at {iso(job.not_before)} "
            f"(attempt {job.attempts + 1} of {job.max_attempts})"
        )
    if job.run_at is not None and job.run_at > now:
        return f"scheduled: run_at {iso(job.run_at)}"
    if job.status is JobStatus.PENDING:
        return "pending: not yet taken in by the scheduler"
    return _capacity_reason(job, workers, higher_priority_ready)


def _dependencies_reason(dependencies: Sequence[DependencyFacts]) -> str:
    count = len(dependencies)
    named = ", ".join(f"{d.name} ({d.status.value})" for d in dependencies[:MAX_NAMED_DEPENDENCIES])
    more = count - MAX_NAMED_DEPENDENCIES
    tail = f" and {more} more" if more > 0 else ""
    noun = "dependency" if count == 1 else "dependencies"
    return f"waiting for {count} {noun}: {named}{tail}"


def _capacity_reason(job: JobFacts, workers: Sequence[WorkerView], ahead: int) -> str:
    accepting = [w for w in workers if w.accepting]
    if not accepting:
        draining = sum(1 for w in workers if w.online and w.draining)
        if draining:
            return f"no worker is accepting jobs ({draining} draining)"
        return "no worker is online"
    never = never_fits_reason(
        job.cpu_units, job.memory_mb, accepting, job.job_type or None, job.resources, job.labels
    )
    if never is not None:
        return never
    if job.job_type:
        accepting = [w for w in accepting if w.offers(job.job_type)]
    if job.resources or job.labels:
        accepting = [
            w
            for w in accepting
            if could_hold(w, job.cpu_units, job.memory_mb, job.resources, job.labels)
        ]
        short = _resource_short(job, accepting)
        if short is not None:
            return short + _lingering_note(accepting)
    if not any(w.cpu_free >= job.cpu_units and w.memory_free >= job.memory_mb for w in accepting):
        return _no_room_reason(job, accepting) + _lingering_note(accepting)
    if ahead > 0:
        noun = "job" if ahead == 1 else "jobs"
        verb = "is" if ahead == 1 else "are"
        return f"{ahead} {noun} of higher priority {verb} ahead"
    return "ready: waiting for the next scheduling pass"


def _resource_short(job: JobFacts, able: Sequence[WorkerView]) -> str | None:
    """Why no worker that could hold the job has its named resources free now, if so."""

    def free(w: WorkerView, name: str) -> int:
        return w.resources.get(name, 0) - w.resources_in_use.get(name, 0)

    def room(w: WorkerView) -> bool:
        return (
            w.cpu_free >= job.cpu_units
            and w.memory_free >= job.memory_mb
            and all(free(w, name) >= n for name, n in job.resources.items())
        )

    if any(room(w) for w in able):
        return None
    count = len(able)
    noun = "worker" if count == 1 else "workers"
    for name, n in job.resources.items():
        most = max(free(w, name) for w in able)
        if most < n:
            total = sum(w.resources.get(name, 0) for w in able)
            return (
                f"needs {name}={n}; most free on any worker is {name}={max(most, 0)} "
                f"({total} {name} on {count} {noun} that could run it)"
            )
    return None


def _no_room_reason(job: JobFacts, accepting: Sequence[WorkerView]) -> str:
    count = len(accepting)
    noun = "worker" if count == 1 else "workers"
    most_cpu = max(w.cpu_free for w in accepting)
    most_mem = max(w.memory_free for w in accepting)
    if job.cpu_units > most_cpu:
        return (
            f"needs {job.cpu_units} cpu_units; most free on any worker is "
            f"{max(most_cpu, 0)} ({count} {noun})"
        )
    if job.memory_mb > most_mem:
        return (
            f"needs {job.memory_mb} memory_mb; most free on any worker is "
            f"{max(most_mem, 0)} ({count} {noun})"
        )
    return (
        f"needs {job.cpu_units} cpu_units and {job.memory_mb} memory_mb; "
        f"no single worker has both free ({count} {noun})"
    )


def _lingering_note(workers: Sequence[WorkerView]) -> str:
    """Names the ended attempts whose code still holds capacity (timed-out threads)."""
    held = [(w.worker_id, h) for w in workers for h in w.lingering]
    if not held:
        return ""
    parts = [
        f"worker {worker_id} holds {h.cpu_units} cpu_units and {h.memory_mb} memory_mb "
        f"for timed-out job {h.job_id} (attempt {h.attempt}), whose code still runs"
        for worker_id, h in held[:MAX_NAMED_DEPENDENCIES]
    ]
    more = len(held) - MAX_NAMED_DEPENDENCIES
    tail = f" and {more} more" if more > 0 else ""
    return "; " + "; ".join(parts) + tail
