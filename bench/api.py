"""The API alone (with PostgreSQL and RabbitMQ): ``python -m bench api|batch [--quick] [--runs N]``.

* ``api``: single-job ``POST /jobs`` from 32 concurrent keep-alive connections; requests/s and
  the p50/p99 latency of each request (targets >= 500 rps, p99 < 50 ms).
* ``batch``: ``POST /jobs/batch`` of 10,000 independent ``noop`` jobs, one at a time; jobs/s
  accepted = 10,000 / request time (target >= 10,000).

No scheduler runs: the ``job.submitted`` hints the API publishes wait in the scheduler's queue
(deleted with the rest at the end); they cost their publish like in production.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack
from bench.http import Connection, HttpError

CONCURRENCY = 32


async def _client(conn: Connection, todo: list[int], latencies: list[float]) -> None:
    body = orjson.dumps({"type": "noop"})
    while todo:
        todo.pop()
        t0 = time.perf_counter()
        status, payload = await conn.request("POST", "/jobs", body)
        latencies.append((time.perf_counter() - t0) * 1000)
        if status != 201:
            raise HttpError(f"POST /jobs: {status} {payload[:300]!r}")


async def api_run(stack: Stack, requests: int) -> dict[str, float]:
    conns = [stack.http() for _ in range(CONCURRENCY)]
    for conn in conns:  # open the connections outside the timed part
        await conn.request("GET", "/healthz")
    todo = list(range(requests))
    latencies: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(c, todo, latencies) for c in conns))
    elapsed = time.perf_counter() - t0
    for conn in conns:
        await conn.close()
    return {
        "rps": requests / elapsed,
        "p50_ms": figures.percentile(latencies, 0.5),
        "p99_ms": figures.percentile(latencies, 0.99),
    }


async def run_api(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    requests = 300 if options.quick else 5_000
    async with Stack(parts=("api",)) as stack:
        await api_run(stack, min(requests, 200))  # warm-up: pool, caches
        await stack.mark()
        results = [await api_run(stack, requests) for _ in range(runs)]
    return {
        "runs": runs,
        "requests": requests,
        "concurrency": CONCURRENCY,
        "rps": figures.figure([r["rps"] for r in results], ">= 500", 1),
        "p50_ms": figures.figure([r["p50_ms"] for r in results], digits=2),
        "p99_ms": figures.figure([r["p99_ms"] for r in results], "< 50", 2),
        "per_request": stack.costs.per_job(requests * runs),
    }


async def run_batch(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(5, 1)
    size = 1_000 if options.quick else 10_000
    body = batch_body([{"type": "noop"}] * size)
    rates = []
    async with Stack(parts=("api",)) as stack:
        conn = stack.http()
        await post_batch(conn, batch_body([{"type": "noop"}] * 100))  # warm-up
        await stack.mark()
        for _ in range(runs):
            t0 = time.perf_counter()
            await post_batch(conn, body)
            rates.append(size / (time.perf_counter() - t0))
        await conn.close()
    return {
        "runs": runs,
        "batch_jobs": size,
        "jobs_per_s": figures.figure(rates, ">= 10000", 1),
        "per_job": stack.costs.per_job(size * runs),
    }


def main_api(argv: list[str]) -> int:
    options = figures.parse(argv, "api")
    started = time.perf_counter()
    figures.emit("api", options, asyncio.run(run_api(options)), started)
    return 0


def main_batch(argv: list[str]) -> int:
    options = figures.parse(argv, "batch")
    started = time.perf_counter()
    figures.emit("batch", options, asyncio.run(run_batch(options)), started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main_api(sys.argv[1:]))
