"""Resource packing on one worker: ``python -m bench packing [--quick] [--runs N]``.

200 ``sleep`` jobs of 0.2 s with cpu_units 1–4 and memory_mb 256–4096 (seeded by the run's
number), submitted in one batch to a stack whose only worker has 8 units / 8192 MB.

* ``ratio``: makespan / max(Σcpu·t/8, Σmem·t/8192), makespan = last attempt's end (worker
  clock, ``job_attempts.finished_at``) − request sent (target <= 1.15);
* ``over_capacity``: sweeping the attempts' [started_at, finished_at) intervals as the worker
  reported them, the most cpu_units and MB ever running at once, beyond the worker's capacity
  (target: 0, i.e. never over).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from typing import Any

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack

CPU, MEM = 8, 8192


def jobs_for(seed: int, count: int, seconds: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "type": "sleep",
            "payload": {"seconds": seconds},
            "cpu_units": rng.randint(1, 4),
            "memory_mb": rng.randint(256, 4096),
        }
        for _ in range(count)
    ]


def peak_use(intervals: list[tuple[float, float, int, int]]) -> tuple[int, int]:
    """Most cpu and memory in use at once over [start, end) intervals."""
    events = []
    for start, end, cpu, mem in intervals:
        events.append((start, 1, cpu, mem))
        events.append((end, 0, -cpu, -mem))  # at equal times an end comes before a start
    events.sort()
    cpu_now = mem_now = cpu_max = mem_max = 0
    for _, _, cpu, mem in events:
        cpu_now += cpu
        mem_now += mem
        cpu_max, mem_max = max(cpu_max, cpu_now), max(mem_max, mem_now)
    return cpu_max, mem_max


async def packing_run(stack: Stack, seed: int, count: int, seconds: float) -> dict[str, float]:
    jobs = jobs_for(seed, count, seconds)
    conn = stack.http()
    t0 = time.time()
    batch_id: uuid.UUID = await post_batch(conn, batch_body(jobs))
    await conn.close()
    if not await stack.wait_idle(60 + count * seconds):
        raise TimeoutError("packing run did not finish")
    rows = await stack.fetch(
        "SELECT extract(epoch FROM a.started_at), extract(epoch FROM a.finished_at),"
        " a.cpu_units, a.memory_mb FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE j.batch_id = %s AND j.status = 'completed'",
        (batch_id,),
    )
    if len(rows) != count:
        raise RuntimeError(f"{len(rows)} of {count} jobs completed")
    intervals = [(float(s), float(e), int(c), int(m)) for s, e, c, m in rows]
    makespan = max(e for _, e, _, _ in intervals) - t0
    bound = max(
        sum(j["cpu_units"] for j in jobs) * seconds / CPU,
        sum(j["memory_mb"] for j in jobs) * seconds / MEM,
    )
    cpu_peak, mem_peak = peak_use(intervals)
    return {
        "ratio": makespan / bound,
        "makespan_s": makespan,
        "bound_s": bound,
        "over_capacity": float(max(0, cpu_peak - CPU) + max(0, mem_peak - MEM)),
        "peak_cpu": float(cpu_peak),
        "peak_mem": float(mem_peak),
    }


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    count = 30 if options.quick else 200
    results = []
    async with Stack(worker_units=CPU, worker_memory_mb=MEM) as stack:
        for seed in range(runs):
            results.append(await packing_run(stack, seed, count, 0.2))
    targets = {"ratio": "<= 1.15", "over_capacity": "<= 0"}
    out: dict[str, Any] = {"runs": runs, "jobs": count}
    for key in ("ratio", "makespan_s", "bound_s", "over_capacity", "peak_cpu", "peak_mem"):
        out[key] = figures.figure([r[key] for r in results], targets.get(key), 3)
    return out


def main(argv: list[str]) -> int:
    return figures.run_main("packing", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
