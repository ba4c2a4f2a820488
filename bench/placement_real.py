"""Placement with the real processes: ``python -m bench placement-real [--quick] [--runs N]``.

The rows of issue 18 that must be shown on real processes (PostgreSQL, RabbitMQ, ``smartq api``,
``scheduler``, one ``worker`` of 8 units / 8192 MB, ``logger``), every job a ``sleep``:

* **W1** — small jobs (cpu 1–2, memory 256–1024 MB, 0.4 s) arrive at 15 a second for
  ``seconds`` (more than the worker can run: it stays full); at t = 5 s one 8-unit, 2 s job
  arrives. Figure: its wait (attempt start − submission, both the server's clocks) against
  the bound "longest predicted remaining run time of what it waits for + 1 s", i.e. the
  learned prediction of ``sleep`` (the small jobs teach it before t = 5 s) + 1 s.
* **W2** — the packing set (200 jobs of cpu 1–4, memory 256–4096 MB) in one batch, with
  0.2 s each and with lognormal times (median 0.2 s, σ = 1). Figure: makespan (first
  submission → last attempt's end) / max(Σcpu·t / 8, Σmem·t / 8192, longest job), and the
  most cpu and memory ever running at once beyond capacity (must be 0).
* **W5** — 200 independent 0.2 s jobs (cpu 1, 256 MB), then a chain of 20 × 1 s jobs,
  submitted in that order. Figure: makespan / max(critical path 20 s, work / capacity).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from typing import Any

import orjson

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack
from bench.packing import peak_use

CPU, MEM = 8, 8192


def _sleep(seconds: float, cpu: int, mem: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sleep",
        "payload": {"seconds": round(seconds, 4)},
        "cpu_units": cpu,
        "memory_mb": mem,
        **extra,
    }


async def _attempts(stack: Stack, where: str, params: Any) -> list[tuple[float, float, int, int]]:
    rows = await stack.fetch(
        "SELECT extract(epoch FROM a.started_at), extract(epoch FROM a.finished_at),"
        " a.cpu_units, a.memory_mb FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        f" WHERE {where} AND j.status = 'completed'",
        params,
    )
    return [(float(s), float(e), int(c), int(m)) for s, e, c, m in rows]


async def _predicted(stack: Stack) -> float:
    status, body = await stack.http().request("GET", "/types")
    assert status == 200, body
    for row in orjson.loads(body):
        if row["name"] == "sleep" and row.get("predicted_seconds"):
            return float(row["predicted_seconds"])
    return float("nan")


# -- W1 ---------------------------------------------------------------------------------------
async def w1(stack: Stack, seed: int, seconds: float) -> dict[str, float]:
    rng = random.Random(seed)
    conn = stack.http()
    # A short warm-up teaches the type its run time, as a live queue would have.
    await post_batch(conn, batch_body([_sleep(0.4, 1, 256) for _ in range(10)]))
    if not await stack.wait_idle(60):
        raise TimeoutError("warm-up did not finish")
    t0 = time.monotonic()
    big_id: str | None = None
    big_sent = 0.0
    sent = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + sent / 15
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if big_id is None and time.monotonic() - t0 >= 5.0:
            big_sent = time.time()
            doc = await conn.post_json("/jobs", _sleep(2.0, 8, 1024))
            big_id = str(doc["id"])
        await conn.post_json("/jobs", _sleep(0.4, rng.randint(1, 2), rng.randint(256, 1024)))
        sent += 1
    bound = await _predicted(stack) + 1.0
    if not await stack.wait_idle(120 + seconds):
        raise TimeoutError("W1 did not finish")
    rows = await stack.fetch(
        "SELECT extract(epoch FROM a.started_at), extract(epoch FROM j.created_at)"
        " FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.id = %s",
        (big_id,),
    )
    started, created = (float(v) for v in rows[0])
    await conn.close()
    return {"wait_s": started - created, "bound_s": bound, "client_wait_s": started - big_sent}


# -- W2 ---------------------------------------------------------------------------------------
async def w2(stack: Stack, seed: int, count: int, lognormal: bool) -> dict[str, float]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(count):
        seconds = 0.2 * math.exp(rng.gauss(0, 1)) if lognormal else 0.2
        jobs.append(_sleep(seconds, rng.randint(1, 4), rng.randint(256, 4096)))
    conn = stack.http()
    t0 = time.time()
    batch_id = await post_batch(conn, batch_body(jobs))
    await conn.close()
    if not await stack.wait_idle(120 + count):
        raise TimeoutError("W2 did not finish")
    intervals = await _attempts(stack, "j.batch_id = %s", (batch_id,))
    if len(intervals) != count:
        raise RuntimeError(f"{len(intervals)} of {count} jobs completed")
    makespan = max(e for _, e, _, _ in intervals) - t0
    times = [j["payload"]["seconds"] for j in jobs]
    bound = max(
        sum(j["cpu_units"] * t for j, t in zip(jobs, times, strict=True)) / CPU,
        sum(j["memory_mb"] * t for j, t in zip(jobs, times, strict=True)) / MEM,
        max(times),
    )
    cpu_peak, mem_peak = peak_use(intervals)
    over = max(0, cpu_peak - CPU) + max(0, mem_peak - MEM)
    return {"ratio": makespan / bound, "over_capacity": float(over)}


# -- W5 ---------------------------------------------------------------------------------------
async def w5(stack: Stack, independent: int, links: int) -> dict[str, float]:
    jobs: list[dict[str, Any]] = [_sleep(0.2, 1, 256) for _ in range(independent)]
    for i in range(links):
        after = [f"link{i - 1}"] if i else []
        jobs.append(_sleep(1.0, 1, 256, key=f"link{i}", depends_on=after))
    conn = stack.http()
    t0 = time.time()
    batch_id = await post_batch(conn, batch_body(jobs))
    await conn.close()
    if not await stack.wait_idle(120 + links * 5):
        raise TimeoutError("W5 did not finish")
    intervals = await _attempts(stack, "j.batch_id = %s", (batch_id,))
    makespan = max(e for _, e, _, _ in intervals) - t0
    bound = max(float(links), (independent * 0.2 + links * 1.0) / CPU)
    return {"ratio": makespan / bound, "makespan_s": makespan}


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    quick = options.quick
    rows: dict[str, list[dict[str, float]]] = {"w1": [], "w2": [], "w2_lognormal": [], "w5": []}
    async with Stack(worker_units=CPU, worker_memory_mb=MEM) as stack:
        for seed in range(runs):
            rows["w1"].append(await w1(stack, seed, 8.0 if quick else 30.0))
            rows["w2"].append(await w2(stack, seed, 30 if quick else 200, lognormal=False))
            rows["w2_lognormal"].append(await w2(stack, seed, 30 if quick else 200, lognormal=True))
            rows["w5"].append(await w5(stack, 20 if quick else 200, 3 if quick else 20))
    w1_ok = [r["wait_s"] <= r["bound_s"] for r in rows["w1"]]
    return {
        "runs": runs,
        "w1_big_job_wait_s": figures.figure([r["wait_s"] for r in rows["w1"]], None, 3),
        "w1_bound_s": figures.figure([r["bound_s"] for r in rows["w1"]], None, 3),
        "w1_within_bound": f"{sum(w1_ok)} of {len(w1_ok)}",
        "w2_ratio": figures.figure([r["ratio"] for r in rows["w2"]], "<= 1.05", 3),
        "w2_lognormal_ratio": figures.figure(
            [r["ratio"] for r in rows["w2_lognormal"]], "<= 1.10", 3
        ),
        "w2_over_capacity": max(r["over_capacity"] for r in rows["w2"] + rows["w2_lognormal"]),
        "w5_ratio": figures.figure([r["ratio"] for r in rows["w5"]], "<= 1.05", 3),
        "w5_makespan_s": figures.figure([r["makespan_s"] for r in rows["w5"]], None, 2),
    }


def main(argv: list[str]) -> int:
    return figures.run_main("placement-real", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
