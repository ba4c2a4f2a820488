"""Dependencies: taking jobs in, releasing dependents on completion, cascading failures.

Each job keeps a counter of unfinished dependencies and each parent a list of dependents, so a
completion touches only its direct dependents (O(out-degree)) and nothing is ever rescanned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from models.enums import JobStatus
from scheduler import rank
from scheduler.reasons import iso, upstream_reason
from scheduler.state import WAITING, JobRecord, SchedulerState
from scheduler.values import JobSpec, Transition, UpstreamFailure


def add_jobs(state: SchedulerState, specs: Iterable[JobSpec], now: float) -> list[Transition]:
    """Take in active jobs (new ones, or all of them at a rebuild); returns their transitions.

    Jobs already known are ignored, so a replayed submission is harmless. Dependencies may be
    listed in any order within the call; a dependency the core does not know yet is waited for
    (see :meth:`scheduler.core.Scheduler.missing_dependencies`).
    """
    fresh: list[tuple[JobRecord, JobSpec]] = []
    for spec in specs:
        if spec.id in state.jobs:
            continue
        record = JobRecord.from_spec(spec, state.next_seq())
        state.jobs[spec.id] = record
        fresh.append((record, spec))
    for record, spec in fresh:
        deps = set(spec.depends_on)
        deps.discard(record.id)
        if record.status in WAITING:
            record.remaining = len(deps)
        for dep in deps:
            state.dependents.setdefault(dep, []).append(record.id)
    if state.rank_by_path:
        rank.assign(state, [record for record, _ in fresh])
    out: list[Transition] = []
    for record, spec in fresh:
        if state.jobs.get(record.id) is record:
            out.extend(_take_in(state, record, spec, now))
    return out


def _take_in(state: SchedulerState, job: JobRecord, spec: JobSpec, now: float) -> list[Transition]:
    if spec.upstream_failure is not None and job.status in WAITING:
        return _cancel_for_upstream(state, job, spec.upstream_failure)
    if job.status is JobStatus.RUNNING:
        if job.worker_id is not None:
            state.hold(job, job.worker_id, job.attempts)
        state.was_running(job, now)
        return []
    if job.status is JobStatus.RETRYING:
        state.push_timer(job, job.not_before if job.not_before is not None else now)
        return []
    if job.remaining > 0:
        return _set_blocked(job, f"waiting for {job.remaining} dependencies")
    return _listed(release(state, job, now))


def _cancel_for_upstream(
    state: SchedulerState, job: JobRecord, failure: UpstreamFailure
) -> list[Transition]:
    reason = upstream_reason(failure.name, failure.job_id, failure.status, failure.error)
    out = [_cancelled(job, reason)]
    state.drop(job)
    out.extend(cascade(state, job.id, reason))
    return out


def _set_blocked(job: JobRecord, reason: str) -> list[Transition]:
    if job.status is JobStatus.BLOCKED:
        return []
    before, job.status = job.status, JobStatus.BLOCKED
    return [Transition(job.id, before, JobStatus.BLOCKED, job.attempts, reason=reason)]


def _listed(transition: Transition | None) -> list[Transition]:
    return [] if transition is None else [transition]


def release(state: SchedulerState, job: JobRecord, now: float) -> Transition | None:
    """A job with no unfinished dependency: ready now, or blocked on a timer until ``run_at``."""
    if job.run_at is not None and job.run_at > now:
        state.push_timer(job, job.run_at)
        blocked = _set_blocked(job, f"scheduled: run_at {iso(job.run_at)}")
        return blocked[0] if blocked else None
    return make_ready(state, job)


def make_ready(
    state: SchedulerState, job: JobRecord, reason: str | None = None
) -> Transition | None:
    """Move a waiting job to READY and into the ready heap."""
    before = job.status
    job.status = JobStatus.READY
    job.ready_at = None
    job.not_before = None
    job.overtaken_since = None
    state.push_ready(job)
    if before is JobStatus.READY:
        return None
    return Transition(job.id, before, JobStatus.READY, job.attempts, reason=reason)


def complete_dependents(
    state: SchedulerState, parent_id: uuid.UUID, now: float
) -> list[Transition]:
    """``parent_id`` completed: count it off each dependent; those reaching zero are released."""
    out: list[Transition] = []
    for child_id in state.dependents.pop(parent_id, ()):
        child = state.jobs.get(child_id)
        if child is None or child.status not in (JobStatus.PENDING, JobStatus.BLOCKED):
            continue
        child.remaining -= 1
        if child.remaining <= 0:
            moved = release(state, child, now)
            if moved is not None and moved.to_status is JobStatus.READY:
                child.ready_at = now  # its wait for a worker is learned (state.waits)
            out.extend(_listed(moved))
    return out


def cascade(state: SchedulerState, root_id: uuid.UUID, reason: str) -> list[Transition]:
    """Cancel every waiting job downstream of ``root_id`` (transitively), all with ``reason``.

    ``reason`` names the job where the failure started, not the nearest parent: that is the job
    a user has to look at.
    """
    out: list[Transition] = []
    stack = list(state.dependents.pop(root_id, ()))
    while stack:
        child = state.jobs.get(stack.pop())
        if child is None or child.status not in WAITING:
            continue
        out.append(_cancelled(child, reason))
        state.drop(child)
        stack.extend(state.dependents.pop(child.id, ()))
    return out


def _cancelled(job: JobRecord, reason: str) -> Transition:
    before, job.status = job.status, JobStatus.CANCELLED
    return Transition(job.id, before, JobStatus.CANCELLED, job.attempts, reason=reason)
