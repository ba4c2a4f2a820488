"""When the next ready jobs are predicted to start (pure).

A short simulation of what placement will do, on predicted run times
(:mod:`scheduler.durations`): the jobs that run now end at their predicted ends; the next
``limit`` ready jobs, in the ready queue's order, start as capacity frees — each where it fits
best, in order, with the first one that does not fit holding a reservation that later jobs may
only backfill around when they are predicted to end before it (as :mod:`scheduler.backfill`
does). It runs twice: with predicted run times (``start``) and with each type's 90th percentile
(``late``), which gives the range a user sees.

It is an estimate of the queue as it stands: jobs that arrive later with a higher priority,
flow-control gates and fair share between tenants that changes with what starts are not
foreseen (a job held by a gate has no forecast; its waiting reason names the gate). The
scheduler computes it on the monitoring timer, never in a pass. O(limit × (workers +
limit)) per run.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.state import JobRecord, SchedulerState
from scheduler.workers import WorkerRecord

#: How many of the next ready jobs get a predicted start.
DEFAULT_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Forecast:
    """``job_id`` is predicted to start at ``start``, and by ``late`` at the 90th percentile."""

    job_id: uuid.UUID
    start: float
    late: float


def next_ready(state: SchedulerState, limit: int) -> list[JobRecord]:
    """The next ``limit`` live ready jobs in queue order (the queue is left as it was)."""
    taken = []
    out: list[JobRecord] = []
    while len(out) < limit:
        entry = state.ready.pop()
        if entry is None:
            break
        job = state.live_ready(entry)
        if job is None:
            continue  # stale: dropping it is what the next pass would do anyway
        taken.append(entry)
        out.append(job)
    for entry in taken:
        state.push_back(entry)
    return out


def forecast(state: SchedulerState, now: float, limit: int = DEFAULT_LIMIT) -> list[Forecast]:
    """Predicted starts of the next ``limit`` ready jobs (module doc)."""
    queue = next_ready(state, limit)
    if not queue:
        return []
    durations = state.durations
    usual = _simulate(state, queue, now, state.predict)
    late = _simulate(
        state, queue, now, lambda job: durations.p90(job.type, job.tenant, job.timeout)
    )
    return [
        Forecast(job.id, usual[job.id], max(late[job.id], usual[job.id]))
        for job in queue
        if job.id in usual and job.id in late
    ]


class _Worker:
    __slots__ = ("cpu", "mem", "record")

    def __init__(self, record: WorkerRecord) -> None:
        self.record = record
        self.cpu = record.cpu_free
        self.mem = record.mem_free

    def fits(self, job: JobRecord) -> bool:
        return self.cpu >= job.cpu and self.mem >= job.mem and self.record.offers(job.type)


def _simulate(
    state: SchedulerState,
    queue: list[JobRecord],
    now: float,
    seconds: Callable[[JobRecord], float],
) -> dict[uuid.UUID, float]:
    workers = [_Worker(w) for w in state.workers.values() if w.accepting]
    by_id = {w.record.id: w for w in workers}
    #: (end, seq, worker id, cpu, mem)
    ends: list[tuple[float, int, str, int, int]] = []
    seq = 0
    for worker in workers:
        for end, cpu, mem in state.releases(worker.record, now, seconds):
            ends.append((end, seq, worker.record.id, cpu, mem))
            seq += 1
    heapq.heapify(ends)
    starts: dict[uuid.UUID, float] = {}
    waiting = [job for job in queue if any(w.record.could_hold(job) for w in workers)]
    t = now
    while waiting:
        shadow: float | None = None
        left: list[JobRecord] = []
        for job in waiting:
            spot = _best(workers, job)
            if spot is not None and (shadow is None or t + seconds(job) <= shadow):
                spot.cpu -= job.cpu
                spot.mem -= job.mem
                starts[job.id] = t
                heapq.heappush(ends, (t + seconds(job), seq, spot.record.id, job.cpu, job.mem))
                seq += 1
                continue
            if shadow is None:
                shadow = _shadow(workers, ends, job, t)
            left.append(job)
        waiting = left
        if not waiting or not ends:
            break
        t = ends[0][0]
        while ends and ends[0][0] <= t:
            _, _, worker_id, cpu, mem = heapq.heappop(ends)
            freed = by_id[worker_id]
            freed.cpu += cpu
            freed.mem += mem
    return starts


def _best(workers: list[_Worker], job: JobRecord) -> _Worker | None:
    """Best fit now: the worker left with the least room (as placement scores it)."""
    best: _Worker | None = None
    best_left = 0
    for worker in workers:
        if worker.fits(job):
            left = (worker.cpu - job.cpu) * 65_536 + (worker.mem - job.mem)
            if best is None or left < best_left:
                best, best_left = worker, left
    return best


def _shadow(
    workers: list[_Worker],
    ends: list[tuple[float, int, str, int, int]],
    job: JobRecord,
    now: float,
) -> float:
    """The earliest time some worker has room for ``job`` as the predicted ends free it."""
    free = {w.record.id: [w.cpu, w.mem] for w in workers if w.record.offers(job.type)}
    for end, _, worker_id, cpu, mem in sorted(ends):
        room = free.get(worker_id)
        if room is None:
            continue
        room[0] += cpu
        room[1] += mem
        if room[0] >= job.cpu and room[1] >= job.mem:
            return max(end, now)
    return float("inf")
