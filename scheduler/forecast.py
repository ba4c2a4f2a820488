"""When the next ready jobs are predicted to start (pure).

A short simulation of what placement will do: the jobs that run now end, the next ``limit``
ready jobs, in the ready queue's order, start as capacity frees — each where it fits best, in
order, with the first one that does not fit reserving the worker where it fits soonest, which
later jobs may only backfill when they end before it or fit beside it (as
:mod:`scheduler.backfill` does).

**Run times are drawn, not averaged.** The simulation runs :data:`SAMPLES` times; each run
draws every job's run time from its type's recent successful runs
(:meth:`scheduler.durations.Durations.runs_of`), and a running job's end from the runs longer
than it has run so far (its remaining time given its age; past every run seen, the doubling
rule of :func:`scheduler.durations.predicted_end`). A job's predicted start is the median of
its starts over the runs, and ``late`` their 90th percentile. Why not one run on mean run
times: the next slot frees at the *earliest* of several uncertain ends, and the earliest of
the means is later than the mean of the earliest. One run on means promised starts that came
earlier in two cases of three (the simulated W3 queue, ``bench/placement.py``), and 62 % / 55 %
of starts came within bounds at 70 % / 90 % load; drawn, 77 % / 70 % (tuning seeds 100–129),
where drawing from each type's *true* distribution gives 78 % / 72 %. The draws come from a
generator seeded the same way at each call, so a forecast is a function of the state.

It is an estimate of the queue as it stands: jobs that arrive later with a higher priority,
flow-control gates and fair share between tenants that changes with what starts are not
foreseen (a job held by a gate has no forecast; its waiting reason names the gate). The
scheduler computes it on the monitoring timer, never in a pass. O(samples × (running + limit
× (workers + limit))) per call, and the samples shrink as the running attempts grow
(:func:`samples_for`): at 1,000 workers × 8 running attempts one forecast with 32 samples took
480 ms of CPU, every 2 s on the leader's loop — a quarter of its time, and the limiter of
``bench fleet`` below its ceiling (p99 ready → received 11.6 s with it, 1.2 s without); with
the samples bounded and the ends drawn without listing them (:class:`_Ends`), 106 ms.
"""

from __future__ import annotations

import bisect
import heapq
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.state import JobRecord, SchedulerState
from scheduler.workers import WorkerRecord

#: How many of the next ready jobs get a predicted start.
DEFAULT_LIMIT = 64
#: Simulated runs per forecast.
SAMPLES = 32
#: Draws of running attempts' ends one forecast may make (samples × running attempts), and the
#: fewest samples it keeps whatever the fleet: a median and a 90th percentile of 8 draws are
#: coarse, but a big fleet's next starts come from so many ends that they vary little.
DRAW_BUDGET = 65_536
MIN_SAMPLES = 8
_SEED = 18

#: (end, seq, worker id, cpu, mem)
_End = tuple[float, int, str, int, int]


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


def forecast(
    state: SchedulerState, now: float, limit: int = DEFAULT_LIMIT, samples: int = SAMPLES
) -> list[Forecast]:
    """Predicted starts of the next ``limit`` ready jobs (module doc)."""
    workers = [w for w in state.workers.values() if w.accepting]
    queue = [j for j in next_ready(state, limit) if any(w.could_hold(j) for w in workers)]
    if not queue:
        return []
    model = _Model(state, workers, queue, now)
    samples = samples_for(len(model.running), samples)
    rng = random.Random(_SEED)
    seen: dict[uuid.UUID, list[float]] = {job.id: [] for job in queue}
    for _ in range(samples):
        ends, seconds = model.draw(rng)
        for job_id, start in _simulate(workers, queue, now, ends, seconds).items():
            seen[job_id].append(start)
    out = []
    for job in queue:
        starts = sorted(seen[job.id])
        if len(starts) == samples:  # a job some run never started has no forecast
            out.append(
                Forecast(
                    job.id,
                    likeliest(starts, now) if LIKELIEST else quantile(starts, 0.5),
                    quantile(starts, 0.9),
                )
            )
    return out


def samples_for(running: int, samples: int = SAMPLES) -> int:
    """How many runs to simulate with ``running`` attempts to draw ends for: ``samples``, fewer
    past :data:`DRAW_BUDGET` draws, never under :data:`MIN_SAMPLES` (nor above ``samples``)."""
    return min(samples, max(MIN_SAMPLES, DRAW_BUDGET // max(1, running)))


LIKELIEST = False


def likeliest(ordered: Sequence[float], now: float) -> float:
    best, hits = ordered[len(ordered) // 2], -1
    for p in ordered:
        tol = max(0.2 * (p - now), 0.5)
        n = sum(1 for s in ordered if abs(s - p) <= tol)
        if n > hits:
            best, hits = p, n
    return best


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, the nearest rank (a start some run had)."""
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


class _Model:
    """What a run draws from: each queued job's runs, each running job's possible ends."""

    def __init__(
        self,
        state: SchedulerState,
        workers: list[WorkerRecord],
        queue: list[JobRecord],
        now: float,
    ) -> None:
        #: Per queued job: the run times it may take (its runs capped by its timeout; none
        #: seen: its prediction).
        self.queued = [(job.id, runs_of(state, job)) for job in queue]
        #: Runs by (type, tenant), sorted, read once per forecast.
        seen: dict[tuple[str, str], list[float]] = {}
        #: Per running hold: worker, cpu, mem, and its possible ends as ``_Ends``.
        self.running: list[tuple[str, int, int, _Ends]] = []
        for worker in workers:
            for key in sorted(worker.holds):
                hold = state.holds[key]
                running = state.jobs.get(key[0])
                if hold.lingering or running is None or running.attempts != key[1]:
                    continue  # no predicted end: it frees nothing the pass can count on
                pair = (running.type, running.tenant)
                runs = seen.get(pair)
                if runs is None:
                    runs = seen[pair] = sorted(state.durations.runs_of(*pair))
                ends = _Ends.of(state, running, now, runs)
                self.running.append((worker.id, hold.cpu, hold.mem, ends))

    def draw(self, rng: random.Random) -> tuple[list[_End], dict[uuid.UUID, float]]:
        """One run's ends of what runs now (a heap) and run times of the queued jobs."""
        pick = rng.random
        ends: list[_End] = [
            (possible.draw(pick()), seq, worker_id, cpu, mem)
            for seq, (worker_id, cpu, mem, possible) in enumerate(self.running)
        ]
        heapq.heapify(ends)
        seconds = {job_id: runs[int(pick() * len(runs))] for job_id, runs in self.queued}
        return ends, seconds


@dataclass(frozen=True, slots=True)
class _Ends:
    """A running job's possible ends, as :func:`possible_ends` lists them, without the list:
    its start plus one of the sorted ``runs`` from ``first`` on (those longer than its age),
    capped by ``cap`` and never before ``now``; none left: ``fallback``. (Listing them took
    most of a forecast at 8,000 running attempts: 50 runs each.)"""

    started: float
    cap: float
    now: float
    runs: list[float]
    first: int
    fallback: float

    @classmethod
    def of(cls, state: SchedulerState, job: JobRecord, now: float, runs: list[float]) -> _Ends:
        started = job.started_at if job.started_at is not None else now
        cap = started + job.timeout if job.timeout is not None else float("inf")
        first = bisect.bisect_right(runs, now - started)
        fallback = state.ends_at(job, now) if first == len(runs) else 0.0
        return cls(started, cap, now, runs, first, fallback)

    def draw(self, u: float) -> float:
        """The end drawn by ``u`` in [0, 1)."""
        left = len(self.runs) - self.first
        if left == 0:
            return self.fallback
        run = self.runs[self.first + int(u * left)]
        return max(min(self.started + run, self.cap), self.now)


def runs_of(state: SchedulerState, job: JobRecord) -> tuple[float, ...]:
    """The run times ``job`` may take: its type's recent runs capped by its timeout (none
    seen: its prediction)."""
    runs = tuple(state.durations.runs_of(job.type, job.tenant)) or (state.predict(job),)
    if job.timeout is not None:
        runs = tuple(min(run, job.timeout) for run in runs)
    return runs


def possible_ends(state: SchedulerState, job: JobRecord, now: float) -> list[float]:
    """The ends a running job may have: its start plus a run longer than its age so far,
    capped by its timeout; past every run seen, the doubling rule."""
    started = job.started_at if job.started_at is not None else now
    cap = started + job.timeout if job.timeout is not None else float("inf")
    runs = state.durations.runs_of(job.type, job.tenant)
    ends = [max(min(started + run, cap), now) for run in runs if started + run > now]
    return ends or [state.ends_at(job, now)]


class _Room:
    __slots__ = ("cpu", "mem", "record")

    def __init__(self, record: WorkerRecord) -> None:
        self.record = record
        self.cpu = record.cpu_free
        self.mem = record.mem_free

    def fits(self, job: JobRecord) -> bool:
        return self.cpu >= job.cpu and self.mem >= job.mem and self.record.offers(job.type)


class _Rooms:
    """Every worker's room in one run, and those with a free cpu unit (best fit walks only
    them: in a busy fleet most are full)."""

    def __init__(self, workers: list[WorkerRecord]) -> None:
        self.all = {w.id: _Room(w) for w in sorted(workers, key=lambda w: w.id)}
        self.open = {i: r for i, r in self.all.items() if r.cpu >= 1}
        self.free = sum(room.cpu for room in self.all.values())

    def take(self, room: _Room, job: JobRecord) -> None:
        room.cpu -= job.cpu
        room.mem -= job.mem
        self.free -= job.cpu
        if room.cpu < 1:
            self.open.pop(room.record.id, None)

    def give(self, worker_id: str, cpu: int, mem: int) -> None:
        room = self.all[worker_id]
        room.cpu += cpu
        room.mem += mem
        self.free += cpu
        if room.cpu >= 1:
            self.open[worker_id] = room

    def best(self, job: JobRecord, closed: _Room | None) -> _Room | None:
        """Best fit now: the worker left with the least room (as placement scores it; ties:
        the lowest id)."""
        best: _Room | None = None
        best_left = (0, "")
        cpu, mem = job.cpu, job.mem
        for worker_id, room in self.open.items():
            if room.cpu >= cpu and room.mem >= mem and room is not closed:
                left = ((room.cpu - cpu) * 65_536 + (room.mem - mem), worker_id)
                if (best is None or left < best_left) and room.record.offers(job.type):
                    best, best_left = room, left
        return best


@dataclass(slots=True)
class _Shadow:
    """The reservation of one round: ``room`` is kept for a job from ``at``; ``extra_*`` is
    what is free beside it then."""

    room: _Room
    at: float
    extra_cpu: int
    extra_mem: int

    def admits(self, job: JobRecord, now: float, seconds: float) -> bool:
        if not self.room.fits(job):
            return False
        if now + seconds <= self.at:
            return True
        if job.cpu <= self.extra_cpu and job.mem <= self.extra_mem:
            self.extra_cpu -= job.cpu
            self.extra_mem -= job.mem
            return True
        return False


def _simulate(
    workers: list[WorkerRecord],
    queue: list[JobRecord],
    now: float,
    ends: list[_End],
    seconds: dict[uuid.UUID, float],
) -> dict[uuid.UUID, float]:
    """One run: when each queued job starts, given the ends and run times drawn."""
    rooms = _Rooms(workers)
    seq = len(ends)
    starts: dict[uuid.UUID, float] = {}
    waiting = queue
    smallest = min(job.cpu for job in queue)
    t = now
    while waiting:
        shadow: _Shadow | None = None
        left: list[JobRecord] = []
        for at, job in enumerate(waiting):
            if rooms.free < smallest:  # nothing more fits anywhere until something ends
                left.extend(waiting[at:])
                break
            spot = rooms.best(job, None if shadow is None else shadow.room)
            if spot is None and shadow is not None and shadow.admits(job, t, seconds[job.id]):
                spot = shadow.room
            if spot is None:
                if shadow is None:
                    shadow = _shadow(rooms, ends, job, t)
                left.append(job)
                continue
            rooms.take(spot, job)
            starts[job.id] = t
            heapq.heappush(ends, (t + seconds[job.id], seq, spot.record.id, job.cpu, job.mem))
            seq += 1
        waiting = left
        if not waiting or not ends:
            break
        t = ends[0][0]
        while ends and ends[0][0] <= t:
            _, _, worker_id, cpu, mem = heapq.heappop(ends)
            rooms.give(worker_id, cpu, mem)
    return starts


def _shadow(rooms: _Rooms, ends: list[_End], job: JobRecord, now: float) -> _Shadow | None:
    """The worker where ``job`` fits soonest as the ends free room, when, and what is left
    beside it then (``None``: no end frees enough)."""
    by_id = rooms.all
    free = {i: [r.cpu, r.mem] for i, r in by_id.items() if r.record.offers(job.type)}
    coming = list(ends)  # a copy of the heap, popped in order: usually a few ends suffice
    while coming:
        end, _, worker_id, cpu, mem = heapq.heappop(coming)
        room = free.get(worker_id)
        if room is None:
            continue
        room[0] += cpu
        room[1] += mem
        if room[0] >= job.cpu and room[1] >= job.mem:
            return _Shadow(by_id[worker_id], max(end, now), room[0] - job.cpu, room[1] - job.mem)
    return None
