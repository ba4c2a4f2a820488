"""The API alone (with PostgreSQL and RabbitMQ): ``python -m bench api|batch [--quick] [--runs N]``.

* ``api``: single-job ``POST /jobs``. ``rps``: as fast as 32 concurrent keep-alive connections
  go (target >= 500), with the p50/p99 of those saturated requests (which queue behind one
  another: 32 in flight at ~750/s is ~40 ms each by Little's law alone). ``at_500_rps``: the
  latency target's own load — requests sent on a fixed schedule of 500/s for 10 s (open loop,
  up to 64 connections), each timed from its scheduled send, so a stall also counts against
  the requests it delayed: p50/p99 (target p99 < 50 ms) and the rate achieved.
* ``batch``: ``POST /jobs/batch`` of 10,000 independent ``noop`` jobs, one at a time; jobs/s
  accepted = 10,000 / request time (target >= 10,000).

Every request presents the stack's API key, checked as in production (issue 14: keys must keep
these figures within 10 %). No scheduler runs: the ``job.submitted`` hints the API publishes
wait in the scheduler's queue (deleted with the rest at the end); they cost their publish like
in production.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
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


async def _drive(
    stack: Stack, connections: int, client: Callable[[Connection], Awaitable[None]]
) -> float:
    """Open ``connections`` keep-alive connections (outside the timing), run ``client`` on
    each at once; the seconds they took."""
    conns = [stack.http() for _ in range(connections)]
    for conn in conns:
        await conn.request("GET", "/healthz")
    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for conn in conns:
        await conn.close()
    return elapsed


def _rates(requests: int, elapsed: float, latencies: list[float]) -> dict[str, float]:
    return {
        "rps": requests / elapsed,
        "p50_ms": figures.percentile(latencies, 0.5),
        "p99_ms": figures.percentile(latencies, 0.99),
    }


async def api_run(stack: Stack, requests: int) -> dict[str, float]:
    todo = list(range(requests))
    latencies: list[float] = []
    elapsed = await _drive(stack, CONCURRENCY, lambda c: _client(c, todo, latencies))
    return _rates(requests, elapsed, latencies)


OPEN_RATE, OPEN_CONNECTIONS = 500.0, 64


async def open_loop_run(stack: Stack, seconds: float) -> dict[str, float]:
    """POST /jobs at OPEN_RATE per second on a fixed schedule; latency from scheduled send."""
    total = round(OPEN_RATE * seconds)
    body = orjson.dumps({"type": "noop"})
    latencies: list[float] = []
    turn = iter(range(total))
    start: list[float] = []

    async def sender(conn: Connection) -> None:
        if not start:
            start.append(time.perf_counter())
        for i in turn:
            due = start[0] + i / OPEN_RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            status, payload = await conn.request("POST", "/jobs", body)
            latencies.append((time.perf_counter() - due) * 1000)
            if status != 201:
                raise HttpError(f"POST /jobs: {status} {payload[:300]!r}")

    elapsed = await _drive(stack, OPEN_CONNECTIONS, sender)
    return _rates(total, elapsed, latencies)


async def run_api(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    requests = 300 if options.quick else 5_000
    async with Stack(parts=("api",)) as stack:
        await api_run(stack, min(requests, 200))  # warm-up: pool, caches
        await stack.mark()
        results = [await api_run(stack, requests) for _ in range(runs)]
        seconds = 2.0 if options.quick else 10.0
        paced = [await open_loop_run(stack, seconds) for _ in range(runs)]
    sent = requests * runs + round(OPEN_RATE * seconds) * runs
    return {
        "runs": runs,
        "requests": requests,
        "concurrency": CONCURRENCY,
        "rps": figures.figure([r["rps"] for r in results], ">= 500", 1),
        "p50_ms": figures.figure([r["p50_ms"] for r in results], digits=2),
        "p99_ms": figures.figure([r["p99_ms"] for r in results], digits=2),
        "at_500_rps": {
            "seconds": seconds,
            "rps": figures.figure([r["rps"] for r in paced], digits=1),  # offered: 500/s
            "p50_ms": figures.figure([r["p50_ms"] for r in paced], digits=2),
            "p99_ms": figures.figure([r["p99_ms"] for r in paced], "< 50", 2),
        },
        "per_request": stack.costs.per_job(sent),
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
    return figures.run_main("api", argv, run_api)


def main_batch(argv: list[str]) -> int:
    return figures.run_main("batch", argv, run_batch)


if __name__ == "__main__":
    raise SystemExit(main_api(sys.argv[1:]))
