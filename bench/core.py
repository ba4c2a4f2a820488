"""Benchmark of the pure scheduling core: ``python -m bench core [--quick]``.

Prints one JSON line with, for each figure, the median/min/max over several runs:

* ``pass_<n>``: one scheduling pass (100 completions + 100 new jobs + tick + plan) with ``n``
  jobs waiting, on 100 workers of 16 cpu_units / 64 GiB kept full; p50 and p99 in ms of wall
  time and of the thread's CPU time (the latter is immune to other processes on a shared box)
  (targets: p50 <= 5 ms, p99 <= 20 ms).
* ``build_100000``: building the state from 100,000 waiting jobs (80 % ready, 20 % in chains):
  seconds, traced Python memory (tracemalloc) and the process RSS afterwards (target <= 300 MB).
* ``packing``: 200 jobs of 0.2 s, cpu 1-4, memory 256-4096 MB, one worker 8 / 8192, simulated
  with the core: makespan / max(sum(cpu)*t/8, sum(mem)*t/8192) (target <= 1.15).
"""

from __future__ import annotations

import gc
import heapq
import json
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from typing import Any

import psutil

from models.enums import Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec

WORKERS = 100
WORKER_CPU = 16
WORKER_MEM = 65_536


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _spec(rng: random.Random, i: int, deps: tuple[uuid.UUID, ...] = ()) -> JobSpec:
    return JobSpec(
        id=_uuid(rng),
        name=f"job-{i}",
        type="bench",
        priority=rng.randint(0, 10),
        cpu_units=rng.randint(1, 4),
        memory_mb=rng.randint(256, 4096),
        max_attempts=3,
        created_at=float(i),
        depends_on=deps,
    )


def waiting_specs(rng: random.Random, n: int, start: int = 0) -> list[JobSpec]:
    """``n`` jobs: 80 % free to run, 20 % in chains of five behind a free one."""
    specs: list[JobSpec] = []
    i = start
    while len(specs) < n:
        head = _spec(rng, i)
        specs.append(head)
        i += 1
        if rng.random() < 0.05:
            prev = head.id
            for _ in range(4):
                child = _spec(rng, i, (prev,))
                specs.append(child)
                prev = child.id
                i += 1
    return specs[:n]


def _loaded_scheduler(rng: random.Random, waiting: int) -> tuple[Scheduler, list[Any]]:
    sched = Scheduler()
    for w in range(WORKERS):
        sched.upsert_worker(f"w{w:03d}", WORKER_CPU, WORKER_MEM)
    sched.add_jobs(waiting_specs(rng, waiting), 0.0)
    running = [(p.job_id, p.attempt) for p in sched.plan(0.0)]
    return sched, running


def bench_pass(waiting: int, passes: int, seed: int) -> dict[str, float]:
    """p50/p99 (ms) of a typical pass with ``waiting`` jobs waiting and every worker busy."""
    rng = random.Random(seed)
    sched, running = _loaded_scheduler(rng, waiting)
    next_id = waiting
    wall: list[float] = []
    cpu: list[float] = []
    for k in range(passes):
        now = 1.0 + k
        rng.shuffle(running)
        done, running = running[:100], running[100:]
        new = waiting_specs(rng, 100, next_id)
        next_id += 100
        t0, c0 = time.perf_counter(), time.thread_time()
        for job_id, attempt in done:
            sched.on_attempt_finished(job_id, attempt, Outcome.SUCCEEDED, now)
        sched.add_jobs(new, now)
        sched.tick(now)
        placed = sched.plan(now)
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
        running.extend((p.job_id, p.attempt) for p in placed)
    return {
        "p50_ms": _pct(wall, 0.5),
        "p99_ms": _pct(wall, 0.99),
        "cpu_p50_ms": _pct(cpu, 0.5),
        "cpu_p99_ms": _pct(cpu, 0.99),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_build(n: int, seed: int, trace: bool) -> dict[str, float]:
    """Seconds to take in ``n`` waiting jobs, traced memory (MB) if ``trace``, RSS (MB)."""
    specs = waiting_specs(random.Random(seed), n)
    gc.collect()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    sched = Scheduler()
    sched.upsert_worker("w0", WORKER_CPU, WORKER_MEM)
    sched.add_jobs(specs, 0.0)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "rss_mb": psutil.Process().memory_info().rss / 2**20}
    if trace:
        out["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
    del sched
    return out


def packing_ratio(seed: int, jobs: int = 200, duration: float = 0.2) -> float:
    """Discrete-event simulation on one 8 cpu / 8192 MB worker; makespan / lower bound."""
    rng = random.Random(seed)
    sched = Scheduler()
    sched.upsert_worker("w", 8, 8192)
    specs = [
        JobSpec(
            id=_uuid(rng),
            name=f"p{i}",
            cpu_units=rng.randint(1, 4),
            memory_mb=rng.randint(256, 4096),
            created_at=float(i),
        )
        for i in range(jobs)
    ]
    sched.add_jobs(specs, 0.0)
    now = 0.0
    ends: list[tuple[float, int, uuid.UUID, int]] = []
    seq = 0
    while True:
        for p in sched.plan(now):
            heapq.heappush(ends, (now + duration, seq, p.job_id, p.attempt))
            seq += 1
        if not ends:
            break
        now = ends[0][0]
        while ends and ends[0][0] <= now:
            _, _, job_id, attempt = heapq.heappop(ends)
            sched.on_attempt_finished(job_id, attempt, Outcome.SUCCEEDED, now)
    cpu = sum(s.cpu_units for s in specs) * duration / 8
    mem = sum(s.memory_mb for s in specs) * duration / 8192
    return now / max(cpu, mem)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _collect(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: _summary([r[key] for r in runs]) for key in runs[0]}


def run(quick: bool) -> dict[str, Any]:
    runs = 2 if quick else 5
    sizes = (10_000,) if quick else (10_000, 100_000)
    passes = 50 if quick else 200
    build_n = 10_000 if quick else 100_000
    result: dict[str, Any] = {"bench": "core", "quick": quick, "runs": runs}
    build = [bench_build(build_n, seed, trace=False) for seed in range(min(runs, 3))]
    traced = bench_build(build_n, 0, trace=True)  # tracing slows the build: timed apart
    result[f"build_{build_n}"] = {
        "seconds": _summary([b["seconds"] for b in build]),
        "rss_mb": _summary([b["rss_mb"] for b in build]),
        "traced_mb": round(traced["traced_mb"], 1),
    }
    for size in sizes:
        result[f"pass_{size}"] = _collect([bench_pass(size, passes, s) for s in range(runs)])
    result["packing"] = {"ratio": _summary([packing_ratio(s) for s in range(max(runs, 5))])}
    return result


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    t0 = time.perf_counter()
    result = run(quick)
    result["bench_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
