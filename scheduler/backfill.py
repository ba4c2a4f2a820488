"""EASY backfilling around a reserved worker (pure).

A job that does not fit anywhere now and holds a reservation is promised a start: the
**shadow time**, the earliest moment its reserved worker has room for it if what runs there
ends as predicted (:mod:`scheduler.durations`). Until then the worker is not closed to other
work; a job may start on it now only if

* it is predicted to end by the shadow time (it gives its room back before the reserved job
  needs it), or
* it fits beside the reserved job at the shadow time (the *extra*: what the worker will have
  free then beyond what the reserved job takes; each such start uses some of it up).

So a backfilled job that ends as predicted never delays the reservation (Lifka's EASY, 1995,
as Slurm's ``sched/backfill`` does it). Predictions can be wrong: once the shadow time has
passed by more than ``reserve_after`` (the reservation's first promise, not a later one), the
worker takes no backfill at all until the job starts — the bounded fallback that keeps a job
from starving behind estimates that are always too short. A worker whose holds include a
lingering thread (no predicted end) has no shadow time and is held strictly too.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.state import JobRecord, SchedulerState
from scheduler.workers import WorkerRecord


@dataclass(slots=True)
class Shadow:
    """A reservation's promise: ``job`` starts on ``worker`` at ``at``; ``extra_cpu`` and
    ``extra_mem`` are free beside it then."""

    job: JobRecord
    worker: WorkerRecord
    at: float
    extra_cpu: int
    extra_mem: int


def shadow_time(
    state: SchedulerState, worker: WorkerRecord, job: JobRecord, now: float
) -> tuple[float, int, int] | None:
    """When ``worker`` will have room for ``job`` by the predicted ends of what it holds, and
    what is left beside the job then; ``None`` if the predictions never free enough."""
    cpu, mem = worker.cpu_free, worker.mem_free
    if cpu >= job.cpu and mem >= job.mem:
        return now, cpu - job.cpu, mem - job.mem
    releases = state.releases(worker, now)
    for at, (end, freed_cpu, freed_mem) in enumerate(releases):
        cpu += freed_cpu
        mem += freed_mem
        if at + 1 < len(releases) and releases[at + 1][0] == end:
            continue  # everything that ends at this moment first
        if cpu >= job.cpu and mem >= job.mem:
            return end, cpu - job.cpu, mem - job.mem
    return None


def promise(
    state: SchedulerState, worker: WorkerRecord, job: JobRecord, now: float, grace: float
) -> Shadow | None:
    """The shadow of ``job``'s reservation on ``worker``, or ``None`` when the worker must be
    held strictly (the first promise is more than ``grace`` late, or none can be made)."""
    if job.shadow_first is not None and now > job.shadow_first + grace:
        return None
    found = shadow_time(state, worker, job, now)
    if found is None:
        return None
    at, extra_cpu, extra_mem = found
    if job.shadow_first is None:
        job.shadow_first = at
    return Shadow(job, worker, at, extra_cpu, extra_mem)


def admits(state: SchedulerState, shadow: Shadow, job: JobRecord, now: float) -> bool:
    """May ``job`` start on the shadow's worker now? If it takes the extra, it is used up."""
    if not shadow.worker.fits_now(job):
        return False
    if now + state.predict(job) <= shadow.at:
        return True
    if job.cpu <= shadow.extra_cpu and job.mem <= shadow.extra_mem and not job.resources:
        shadow.extra_cpu -= job.cpu
        shadow.extra_mem -= job.mem
        return True
    return False
