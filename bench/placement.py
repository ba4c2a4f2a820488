"""Smarter placement on the real core, simulated: ``python -m bench placement [--quick]``.

Every row runs the pure core on a virtual clock (:mod:`bench.simulate`), many seeds each; the
figures are median/min/max over the seeds. Types that have history are seeded with runs from
their own distribution, as a scheduler that has been up a while has them.

* ``w1_big_job_wait_s``: one 8-unit / 8192 MB worker kept full by a stream of small jobs
  (cpu 1-2, memory 256-1024 MB, 0.4 s, 15 per s for 30 s); one 8-unit 2 s job arrives at
  t = 5 s. Its wait, against the longest predicted remaining run of the jobs it waited for
  + 1 s (``w1_bound_s``); the delayed-reservation rule alone waited ~10.6 s.
* ``w2_ratio`` / ``w2_lognormal_ratio``: 200 jobs (cpu 1-4, memory 256-4096 MB) on one
  8 / 8192 worker, 0.2 s each and lognormal (median 0.2 s, sigma 1): makespan over
  max(work / capacity per resource, the longest job) (targets <= 1.05 and <= 1.10);
  ``over_capacity`` the most ever beyond the worker (target 0).
* ``w3_start_hits_*``: W3, Poisson arrivals of 2,000 jobs (10 types, medians 0.1-2 s,
  lognormal sigma 0.5, cpu 1-2) at 70 % and 90 % load on one 8-unit worker: the share of the
  predicted starts of the next 32 jobs, probed every 10 s, within max(20 % of the predicted
  wait, 0.5 s). ``w3_finish_hits_*``: the same stream with a fifth of its jobs submitted as
  DAGs of 20 (4 layers of 5, 1-3 parents in the layer above): the share of DAGs whose
  predicted finish (:mod:`scheduler.batchfinish`), asked when 4 of its 20 jobs had ended,
  came true within 25 % of the time it still had to go.
* ``w4_gain_1`` / ``w4_gain_4``: layered DAGs (200 tasks in 10 layers, 1-3 parents in the layer
  above, 1 cpu unit, 10 types with medians 0.1-2 s, lognormal sigma 1 around them, the
  predictions learned per type) on 1 worker of 8 units and on 4 of 2 (the same 8 slots for
  1-unit jobs, so the two rows agree):
  1 - makespan(critical-path order) / makespan(submission order); median >= 0.10 wanted and
  no seed more than 3 % worse (``w4_worst_*`` >= -0.03). ``w4_most_any_order_gains``: 1 -
  max(critical path, work / capacity) / makespan(submission order), the most any order could
  gain; ``w4_gain_exact_predictions``: the gain when every prediction is the true run time.
* ``w5_ratio``: a chain of 20 x 1 s jobs submitted after 200 independent 0.2 s jobs, one
  8-unit worker: makespan / max(critical path, work / capacity) (target <= 1.05).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import uuid
from typing import Any

from bench import figures
from bench.simulate import SimJob, run
from scheduler import batchfinish, forecast
from scheduler.core import Scheduler
from scheduler.values import JobSpec

TYPE_MEDIANS = [0.1 + i * (2.0 - 0.1) / 9 for i in range(10)]
#: W4's spread of run times around each type's median (lognormal).
SIGMA = 1.0


def _id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _job(
    rng: random.Random, at: float, seconds: float, arrival: float | None = None, **kw: Any
) -> SimJob:
    return SimJob(JobSpec(id=_id(rng), name="j", created_at=at, **kw), seconds, arrival)


def _warm(sched: Scheduler, runs: dict[str, list[float]]) -> None:
    sched.state.durations.seed(
        [(job_type, "default", seconds) for job_type, many in runs.items() for seconds in many]
    )


# -- W1 ---------------------------------------------------------------------------------------
def w1(seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    jobs = [
        _job(rng, i / 15, 0.4, type="small", cpu_units=rng.randint(1, 2),
             memory_mb=rng.randint(256, 1024))
        for i in range(15 * 30)
    ]  # fmt: skip
    big = _job(rng, 5.0, 2.0, type="big", cpu_units=8, memory_mb=1024)
    sched = Scheduler()
    _warm(sched, {"small": [0.4] * 10, "big": [2.0] * 2})
    bound: list[float] = []

    def probe(s: Scheduler, now: float) -> None:  # what runs when the big job arrives
        ends = [s.state.ends_at(j, now) for j in s.state.jobs.values() if j.started_at]
        bound.append(max(ends, default=now) - now + 1.0)

    out = run(sched, {"w": (8, 8192)}, [*jobs, big], probes=[5.0], probe=probe)
    return out.starts[big.spec.id] - 5.0, bound[0]


# -- W2 ---------------------------------------------------------------------------------------
def w2(seed: int, lognormal: bool) -> tuple[float, int]:
    rng = random.Random(seed)
    jobs = []
    for i in range(200):
        seconds = 0.2 * math.exp(rng.gauss(0, 1)) if lognormal else 0.2
        job_type = f"t{i % 10}"
        jobs.append(_job(rng, 0.0, seconds, type=job_type, cpu_units=rng.randint(1, 4),
                         memory_mb=rng.randint(256, 4096)))  # fmt: skip
    sched = Scheduler()
    out = run(sched, {"w": (8, 8192)}, jobs)
    cpu = sum(j.spec.cpu_units * j.seconds for j in jobs) / 8
    mem = sum(j.spec.memory_mb * j.seconds for j in jobs) / 8192
    bound = max(cpu, mem, max(j.seconds for j in jobs))
    return out.makespan / bound, out.over_capacity


# -- W3 ---------------------------------------------------------------------------------------
def w3(seed: int, load: float, jobs_n: int = 2000, sigma: float = 0.5) -> float:
    """The share of predicted starts of the next 32 jobs, probed every 10 s, that came true
    within max(20 % of the predicted wait, 0.5 s)."""
    rng = random.Random(seed)
    mean_work = 1.5 * statistics.fmean(TYPE_MEDIANS) * math.exp(sigma * sigma / 2)
    rate = load * 8 / mean_work
    jobs, at = [], 0.0
    for _ in range(jobs_n):
        at += rng.expovariate(rate)
        kind = rng.randrange(10)
        seconds = TYPE_MEDIANS[kind] * math.exp(rng.gauss(0, sigma))
        jobs.append(_job(rng, at, seconds, type=f"t{kind}", cpu_units=rng.randint(1, 2)))
    sched = Scheduler()
    _warm(sched, {
        f"t{k}": [TYPE_MEDIANS[k] * math.exp(rng.gauss(0, sigma)) for _ in range(20)]
        for k in range(10)
    })  # fmt: skip
    said: list[tuple[float, uuid.UUID, float]] = []

    def probe(s: Scheduler, now: float) -> None:
        said.extend((now, f.job_id, f.start) for f in forecast.forecast(s.state, now, 32))

    out = run(sched, {"w": (8, 8192)}, jobs, probes=[10.0 * i for i in range(1, int(at / 10))],
              probe=probe)  # fmt: skip
    good = [
        abs(out.starts[job_id] - start) <= max(0.2 * (start - now), 0.5)
        for now, job_id, start in said
        if job_id in out.starts
    ]
    return sum(good) / max(len(good), 1)


def _w3_dag(rng: random.Random, at: float, sigma: float) -> list[SimJob]:
    """4 layers of 5, each job with 1-3 parents in the layer above, the stream's types."""
    jobs: list[SimJob] = []
    above: list[uuid.UUID] = []
    for _layer in range(4):
        here = []
        for _ in range(5):
            kind = rng.randrange(10)
            parents = tuple(rng.sample(above, rng.randint(1, 3))) if above else ()
            seconds = TYPE_MEDIANS[kind] * math.exp(rng.gauss(0, sigma))
            job = _job(rng, at + len(jobs) * 1e-6, seconds, at, type=f"t{kind}",
                       cpu_units=rng.randint(1, 2), depends_on=parents)  # fmt: skip
            jobs.append(job)
            here.append(job.spec.id)
        above = here
    return jobs


def w3_finish(seed: int, load: float, jobs_n: int = 2000, sigma: float = 0.5) -> float:
    """The W3 stream with a fifth of its jobs in DAGs of 20 (Poisson submissions too): the
    share of DAGs whose predicted finish, asked when 20 % of the DAG is done, came true within
    25 % of the time it still had to go."""
    rng = random.Random(seed)
    mean_work = 1.5 * statistics.fmean(TYPE_MEDIANS) * math.exp(sigma * sigma / 2)
    rate = load * 8 / mean_work
    jobs: list[SimJob] = []
    dags: list[list[SimJob]] = []
    lone_at = dag_at = 0.0
    while len(jobs) < jobs_n:
        if lone_at <= dag_at:
            lone_at += rng.expovariate(0.8 * rate)
            kind = rng.randrange(10)
            seconds = TYPE_MEDIANS[kind] * math.exp(rng.gauss(0, sigma))
            jobs.append(_job(rng, lone_at, seconds, type=f"t{kind}", cpu_units=rng.randint(1, 2)))
        else:
            dag_at += rng.expovariate(0.2 * rate / 20)
            dags.append(_w3_dag(rng, dag_at, sigma))
            jobs.extend(dags[-1])
    sched = Scheduler()
    _warm(sched, {
        f"t{k}": [TYPE_MEDIANS[k] * math.exp(rng.gauss(0, sigma)) for _ in range(20)]
        for k in range(10)
    })  # fmt: skip
    batch_of = {j.spec.id: uuid.UUID(int=n + 1) for n, dag in enumerate(dags) for j in dag}
    done: dict[uuid.UUID, int] = {}
    said: dict[uuid.UUID, tuple[float, float]] = {}

    def watch(s: Scheduler, now: float, ended: list[uuid.UUID]) -> None:
        for job_id in ended:
            batch_id = batch_of.get(job_id)
            if batch_id is None or batch_id in said:
                continue
            done[batch_id] = done.get(batch_id, 0) + 1
            if done[batch_id] >= 4:  # 20 % of 20
                starts = {f.job_id: f.start for f in forecast.forecast(s.state, now)}
                mine = {j: b for j, b in batch_of.items() if b == batch_id}
                (got,) = batchfinish.batch_forecasts(s.state, mine, now, starts)
                said[batch_id] = (now, got.finish)

    out = run(sched, {"w": (8, 8192)}, jobs, watch=watch)
    good = []
    for n, dag in enumerate(dags):
        now, predicted = said[uuid.UUID(int=n + 1)]
        actual = max(out.ends[j.spec.id] for j in dag)
        good.append(abs(actual - predicted) <= 0.25 * (predicted - now))
    return sum(good) / max(len(good), 1)


# -- W4 ---------------------------------------------------------------------------------------
def _layered(rng: random.Random) -> tuple[list[SimJob], dict[str, list[float]]]:
    jobs: list[SimJob] = []
    layers: list[list[uuid.UUID]] = []
    n = 0
    for _layer in range(10):
        here: list[uuid.UUID] = []
        for _ in range(20):
            kind = rng.randrange(10)
            parents = tuple(rng.sample(layers[-1], rng.randint(1, 3))) if layers else ()
            seconds = TYPE_MEDIANS[kind] * math.exp(rng.gauss(0, SIGMA))
            job = _job(rng, n * 1e-6, seconds, 0.0, type=f"t{kind}", depends_on=parents,
                       cpu_units=1)  # fmt: skip
            jobs.append(job)
            here.append(job.spec.id)
            n += 1
        layers.append(here)
    history = {
        f"t{k}": [TYPE_MEDIANS[k] * math.exp(rng.gauss(0, SIGMA)) for _ in range(20)]
        for k in range(10)
    }
    return jobs, history


def _known(jobs: list[SimJob]) -> tuple[list[SimJob], dict[str, list[float]]]:
    """The same jobs, each its own type with its true run time as its only run: predictions
    that are exact."""
    out = [
        SimJob(dataclasses.replace(j.spec, type=f"k{n}"), j.seconds, j.arrival)
        for n, j in enumerate(jobs)
    ]
    return out, {j.spec.type: [j.seconds] for j in out}


def w4(seed: int, workers: int, exact: bool = False) -> tuple[float, float]:
    """The gain of critical-path order over submission order (``exact``: with exact
    predictions), and the most any order could gain: 1 - max(critical path, work / capacity)
    / makespan(submission order)."""
    spans = []
    for by_path in (True, False):
        rng = random.Random(seed)
        jobs, history = _layered(rng)
        if exact:
            jobs, history = _known(jobs)
        sched = Scheduler(rank_by_path=by_path)
        _warm(sched, history)
        pool = {f"w{i}": (8 // workers, 8192) for i in range(workers)}  # 8 units in all
        spans.append(run(sched, pool, jobs).makespan)
    ends: dict[uuid.UUID, float] = {}
    for job in jobs:  # in layer order: parents first
        ends[job.spec.id] = job.seconds + max((ends[p] for p in job.spec.depends_on), default=0)
    bound = max(max(ends.values()), sum(j.seconds for j in jobs) / 8)
    return 1.0 - spans[0] / spans[1], 1.0 - bound / spans[1]


# -- W5 ---------------------------------------------------------------------------------------
def w5(seed: int) -> float:
    rng = random.Random(seed)
    jobs = [_job(rng, i * 1e-6, 0.2, 0.0, type="short") for i in range(200)]
    prev: tuple[uuid.UUID, ...] = ()
    for i in range(20):
        job = _job(rng, 1e-3 + i * 1e-6, 1.0, 1e-3, type="step", depends_on=prev)
        jobs.append(job)
        prev = (job.spec.id,)
    sched = Scheduler()
    _warm(sched, {"short": [0.2] * 5, "step": [1.0] * 5})
    out = run(sched, {"w": (8, 8192)}, jobs)
    return out.makespan / max(20.0, (200 * 0.2 + 20 * 1.0) / 8)


async def _run(options: figures.Options) -> dict[str, Any]:
    seeds = range(options.pick(30, 3))
    w1_rows = [w1(s) for s in seeds]
    w2_rows = [w2(s, False) for s in seeds]
    w2_log = [w2(s, True) for s in seeds]
    w3_70 = [w3(s, 0.7) for s in seeds]
    w3_90 = [w3(s, 0.9) for s in seeds]
    w3_finish_70 = [w3_finish(s, 0.7) for s in seeds]
    w3_finish_90 = [w3_finish(s, 0.9) for s in seeds]
    w4_one = [w4(s, 1) for s in seeds]
    w4_four = [w4(s, 4) for s in seeds]
    w4_exact = [w4(s, 1, exact=True)[0] for s in seeds]
    return {
        "seeds": len(seeds),
        "w1_big_job_wait_s": figures.figure([w for w, _ in w1_rows]),
        "w1_bound_s": figures.figure([b for _, b in w1_rows]),
        "w1_within_bound": all(w <= b for w, b in w1_rows),
        "w2_ratio": figures.figure([r for r, _ in w2_rows], "<= 1.05"),
        "w2_lognormal_ratio": figures.figure([r for r, _ in w2_log], "<= 1.10"),
        "over_capacity": max(o for _, o in w2_rows + w2_log),
        "w3_start_hits_70": figures.figure(w3_70, ">= 0.8"),
        "w3_start_hits_90": figures.figure(w3_90, ">= 0.8"),
        "w3_finish_hits_70": figures.figure(w3_finish_70, ">= 0.8"),
        "w3_finish_hits_90": figures.figure(w3_finish_90, ">= 0.8"),
        "w4_gain_1": figures.figure([g for g, _ in w4_one], ">= 0.10"),
        "w4_worst_1": round(min(g for g, _ in w4_one), 4),
        "w4_gain_4": figures.figure([g for g, _ in w4_four], ">= 0.10"),
        "w4_worst_4": round(min(g for g, _ in w4_four), 4),
        "w4_most_any_order_gains": figures.figure([b for _, b in w4_one]),
        "w4_gain_exact_predictions": figures.figure(w4_exact),
        "w5_ratio": figures.figure([w5(s) for s in seeds], "<= 1.05"),
    }


def main(argv: list[str]) -> int:
    return figures.run_main("placement", argv, _run)
