"""A discrete-event simulator that runs the real pure core on a virtual clock.

Jobs arrive at given times (alone or with dependencies), run for their true durations on the
workers the core places them on, and report success; the core is fed exactly what the
scheduler process would feed it (``add_jobs``, ``tick``, ``plan``, ``on_attempt_finished``),
with no dispatch latency. What comes out is each job's start and end, so a bench can compute
makespans, waits and the accuracy of predictions made along the way (``probe``).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from models.enums import Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec


@dataclass(frozen=True, slots=True)
class SimJob:
    """A job of a workload: its spec and true run time; it arrives at ``arrival`` (default:
    its ``created_at``). Jobs that arrive together are taken in by one ``add_jobs``, as the
    jobs of one submission are."""

    spec: JobSpec
    seconds: float
    arrival: float | None = None

    @property
    def at(self) -> float:
        return self.spec.created_at if self.arrival is None else self.arrival


@dataclass(slots=True)
class Result:
    starts: dict[uuid.UUID, float] = field(default_factory=dict)
    ends: dict[uuid.UUID, float] = field(default_factory=dict)
    workers: dict[uuid.UUID, str] = field(default_factory=dict)
    #: The most cpu and memory ever running at once on each worker, beyond its capacity.
    over_capacity: int = 0

    @property
    def makespan(self) -> float:
        return max(self.ends.values(), default=0.0)


#: Called at the probe times with the scheduler and the virtual now.
Probe = Callable[[Scheduler, float], None]
#: Called after each pass with the scheduler, the virtual now and the jobs that just ended.
Watch = Callable[[Scheduler, float, list[uuid.UUID]], None]


def run(
    sched: Scheduler,
    workers: dict[str, tuple[int, int]],
    jobs: list[SimJob],
    *,
    probes: Sequence[float] = (),
    probe: Probe | None = None,
    watch: Watch | None = None,
    horizon: float = 1e7,
) -> Result:
    """Run ``jobs`` to the end (or ``horizon``) on ``workers`` (id → (cpu, mem))."""
    for worker_id, (cpu, mem) in workers.items():
        sched.upsert_worker(worker_id, cpu, mem)
    seconds = {j.spec.id: j.seconds for j in jobs}
    size = {j.spec.id: (j.spec.cpu_units, j.spec.memory_mb) for j in jobs}
    arrivals = sorted(jobs, key=lambda j: j.at)
    #: (time, order, kind, payload): kind 0 = an end, 1 = arrivals, 2 = a probe, 3 = a timer
    events: list[tuple[float, int, int, object]] = []
    order = itertools.count()
    for at, group in itertools.groupby(arrivals, key=lambda j: j.at):
        heapq.heappush(events, (at, next(order), 1, [j.spec for j in group]))
    for at in probes:
        heapq.heappush(events, (at, next(order), 2, None))
    result = Result()
    use: dict[str, list[int]] = {w: [0, 0] for w in workers}
    now = 0.0
    while events and now <= horizon:
        now = events[0][0]
        ended: list[uuid.UUID] = []
        while events and events[0][0] <= now:
            _, _, kind, payload = heapq.heappop(events)
            if kind == 0:
                job_id, attempt, worker_id = cast(tuple[uuid.UUID, int, str], payload)
                sched.on_attempt_finished(job_id, attempt, Outcome.SUCCEEDED, now)
                result.ends[job_id] = now
                ended.append(job_id)
                use[worker_id][0] -= size[job_id][0]
                use[worker_id][1] -= size[job_id][1]
            elif kind == 1:
                sched.add_jobs(cast(list[JobSpec], payload), now)
            elif kind == 2 and probe is not None:
                probe(sched, now)
        sched.tick(now)
        for p in sched.plan(now):
            result.starts[p.job_id] = now
            result.workers[p.job_id] = p.worker_id
            held = use[p.worker_id]
            held[0] += p.cpu_units
            held[1] += p.memory_mb
            cpu, mem = workers[p.worker_id]
            result.over_capacity = max(result.over_capacity, held[0] - cpu, held[1] - mem)
            end = now + seconds[p.job_id]
            heapq.heappush(events, (end, next(order), 0, (p.job_id, p.attempt, p.worker_id)))
        if watch is not None:
            watch(sched, now, ended)
        wake = sched.next_wakeup()
        if wake is not None and wake > now and (not events or wake < events[0][0]):
            heapq.heappush(events, (wake, next(order), 3, None))
    return result
