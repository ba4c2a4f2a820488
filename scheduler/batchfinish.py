"""When a batch (a DAG) is predicted to finish (pure).

From what is left of it: each running job ends at the mean of the runs of its type longer
than it has run so far (:func:`scheduler.forecast.possible_ends`); each waiting job starts
no earlier than its own earliest start — the predicted start of :mod:`scheduler.forecast` for
a ready job the forecast reached, the last forecast start for a ready job behind those, the
end of a backoff or a ``run_at`` — nor before its unfinished parents in the batch end, and
runs its predicted time. Two bounds, the later one wins:

* **the critical path** of what is left: the latest end of that longest-path walk;
* **the work**: the waiting jobs' cpu-seconds spread over the whole capacity of the accepting
  workers, from the earliest start any of them has (the queue delay in front of the batch).

It promises an estimate of the batch as it stands, on predicted run times: a batch that
shares the workers with other work takes longer than its work bound says, and jobs that come
later with a higher priority are not foreseen. A parent outside the batch counts as done.
O(jobs left + edges among them).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from models.enums import JobStatus
from scheduler.forecast import SAMPLES, possible_ends, quantile, runs_of
from scheduler.state import JobRecord, SchedulerState

#: At most this many batches get a predicted finish per snapshot (the newest).
DEFAULT_BATCHES = 256
#: Jobs left of the batches a snapshot predicts, at most (newest batches first; a batch that
#: would pass it is left out, so a batch of more than this many has no prediction).
JOBS_MAX = 10_000
#: Jobs drawn per snapshot at most, over every batch's runs: fewer runs each when many jobs
#: are left (a snapshot is made every second, on the scheduler's event loop).
DRAWS = 20_000
_SEED = 18


@dataclass(frozen=True, slots=True)
class Left:
    """One unfinished job of a batch: the run times it may still take (``runs``, drawn
    from), ``cpu`` units, no start before ``earliest``, nor before its unfinished
    ``parents`` in the batch end."""

    id: uuid.UUID
    runs: tuple[float, ...]
    cpu: int = 1
    earliest: float = 0.0
    parents: tuple[uuid.UUID, ...] = ()
    running: bool = False
    #: The waits for a worker it may have once ready (drawn from too; not work; none: no
    #: wait).
    waits: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchForecast:
    """Batch ``batch_id`` is predicted to finish at ``finish``, by ``late`` at the 90th
    percentile; ``jobs_left`` are unfinished."""

    batch_id: uuid.UUID
    finish: float
    late: float
    jobs_left: int


def finish(
    left: Sequence[Left], now: float, capacity: int, samples: int = SAMPLES
) -> tuple[float, float] | None:
    """The median and 90th percentile over ``samples`` draws of the later of the critical
    path and the work bound (module doc); ``None`` when nothing is left or nothing could run
    it (no capacity)."""
    if not left or capacity <= 0:
        return None
    order, children = _order(left)
    jobs = [left[i] for i in order]
    kids = [children[i] for i in order]
    waiting = [not job.running for job in jobs]
    begin0 = [now if job.running else max(now, job.earliest) for job in jobs]
    start = min((b for b, w in zip(begin0, waiting, strict=True) if w), default=now)
    cpu = [job.cpu if w else 0 for job, w in zip(jobs, waiting, strict=True)]
    pick = random.Random(_SEED).random
    out = []
    for _ in range(samples):
        run = [job.runs[int(pick() * len(job.runs))] for job in jobs]
        work = sum(c * r for c, r in zip(cpu, run, strict=True))
        begin = begin0.copy()
        latest = now
        for at, job in enumerate(jobs):
            waits = job.waits
            end = begin[at] + run[at] + (waits[int(pick() * len(waits))] if waits else 0.0)
            if end > latest:
                latest = end
            for child in kids[at]:
                if begin[child] < end:
                    begin[child] = end
        out.append(max(latest, start + work / capacity))
    out.sort()
    return quantile(out, 0.5), quantile(out, 0.9)


def _order(left: Sequence[Left]) -> tuple[list[int], list[list[int]]]:
    """The jobs' indices parents first (Kahn's order: no recursion on long chains), and each
    one's children's positions *in that order*. Should a cycle be here (one cannot be
    submitted), its jobs come last."""
    index = {job.id: i for i, job in enumerate(left)}
    missing = [0] * len(left)
    children: list[list[int]] = [[] for _ in left]
    for i, job in enumerate(left):
        for parent in job.parents:
            p = index.get(parent)
            if p is not None:
                missing[i] += 1
                children[p].append(i)
    todo = [i for i, n in enumerate(missing) if n == 0]
    order: list[int] = []
    while todo:
        i = todo.pop()
        order.append(i)
        for child in children[i]:
            missing[child] -= 1
            if missing[child] == 0:
                todo.append(child)
    if len(order) < len(left):
        placed = set(order)
        order += [i for i in range(len(left)) if i not in placed]
    position = [0] * len(left)
    for at, i in enumerate(order):
        position[i] = at
    return order, [[position[c] for c in children[i]] for i in range(len(left))]


def left_of(
    state: SchedulerState,
    jobs: Iterable[JobRecord],
    now: float,
    starts: Mapping[uuid.UUID, float],
    runs_by: dict[tuple[str, str, float | None], tuple[float, ...]] | None = None,
) -> list[Left]:
    """What is left of a batch whose active jobs are ``jobs``; ``starts`` are the forecast's
    predicted starts (a ready job it did not reach starts after the last of them)."""
    jobs = list(jobs)
    ids = {job.id for job in jobs}
    parents: dict[uuid.UUID, list[uuid.UUID]] = {}
    for job in jobs:
        for child in state.dependents.get(job.id, ()):
            if child in ids:
                parents.setdefault(child, []).append(job.id)
    horizon = max(starts.values(), default=now)
    waits = tuple(state.waits)
    runs_by = {} if runs_by is None else runs_by  # a type's runs, drawn from by every job
    out = []
    for job in jobs:
        if job.status is JobStatus.RUNNING:
            remaining = tuple(end - now for end in possible_ends(state, job, now))
            out.append(Left(job.id, remaining, job.cpu, now, running=True))
            continue
        kind = (job.type, job.tenant, job.timeout)
        runs = runs_by.get(kind)
        if runs is None:
            runs = runs_by[kind] = runs_of(state, job)
        mine = tuple(parents.get(job.id, ()))
        if job.status is JobStatus.READY:
            out.append(Left(job.id, runs, job.cpu, starts.get(job.id, horizon), mine))
        else:
            earliest = max(job.not_before or now, job.run_at or now)
            out.append(Left(job.id, runs, job.cpu, earliest, mine, waits=waits))
    return out


def batch_forecasts(
    state: SchedulerState,
    batch_of: Mapping[uuid.UUID, uuid.UUID],
    now: float,
    starts: Mapping[uuid.UUID, float],
    limit: int = DEFAULT_BATCHES,
) -> list[BatchForecast]:
    """The predicted finish of each batch with active jobs, the ``limit`` newest (by their
    newest job) within :data:`JOBS_MAX` jobs left, newest first. O(active jobs of batches)."""
    by_batch: dict[uuid.UUID, list[JobRecord]] = {}
    for job_id, batch_id in batch_of.items():
        job = state.jobs.get(job_id)
        if job is not None:
            by_batch.setdefault(batch_id, []).append(job)
    newest: list[tuple[uuid.UUID, list[JobRecord]]] = []
    jobs_in = 0
    for batch_id, jobs in sorted(
        by_batch.items(), key=lambda item: max(j.created_at for j in item[1]), reverse=True
    ):
        if len(newest) == limit:
            break
        if jobs_in + len(jobs) <= JOBS_MAX:
            newest.append((batch_id, jobs))
            jobs_in += len(jobs)
    capacity = sum(w.cpu_total for w in state.workers.values() if w.accepting)
    samples = max(1, min(SAMPLES, DRAWS // max(1, jobs_in)))
    out = []
    runs_by: dict[tuple[str, str, float | None], tuple[float, ...]] = {}
    for batch_id, jobs in newest:
        found = finish(left_of(state, jobs, now, starts, runs_by), now, capacity, samples)
        if found is not None:
            out.append(BatchForecast(batch_id, found[0], found[1], len(jobs)))
    return out
