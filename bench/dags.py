"""DAGs of no-op jobs through the real processes:
``python -m bench dag10k|dag1k|chain [--quick] [--runs N]``.

Each run submits the whole DAG in one ``POST /jobs/batch`` (``depends_on`` names keys of the
batch) and waits until every job has finished.

* ``dag10k``: 50 layers × 200 nodes, each depending on 2 random nodes of the layer before;
  ``accepted_s`` = the request's time (target <= 2), ``completed_s`` = last ``finished_at`` −
  request sent (target <= 30).
* ``dag1k``: 10 layers × 100, each node depending on 3 of the layer before; completed_s <= 2.
* ``chain``: 1,000 jobs, each depending on the one before; completed_s <= 10.

``--quick`` shrinks each DAG (fewer layers) so it finishes in seconds; targets stay beside the
figures but only mean something for the full sizes.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack

TIMEOUT_S = 900.0


def layered(layers: int, width: int, fan_in: int, seed: int) -> list[dict[str, Any]]:
    """``layers`` × ``width`` no-op jobs; each depends on ``fan_in`` of the layer before."""
    rng = random.Random(seed)
    jobs: list[dict[str, Any]] = []
    previous: list[str] = []
    for layer in range(layers):
        keys = [f"n{layer}_{i}" for i in range(width)]
        for key in keys:
            deps = rng.sample(previous, min(fan_in, len(previous))) if previous else []
            jobs.append({"key": key, "type": "noop", "depends_on": deps})
        previous = keys
    return jobs


def chain(length: int, seed: int = 0) -> list[dict[str, Any]]:
    return layered(length, 1, 1, seed)


async def dag_run(stack: Stack, jobs: list[dict[str, Any]]) -> dict[str, float]:
    body = batch_body(jobs)
    conn = stack.http()
    t0 = time.time()
    batch_id = await post_batch(conn, body)
    accepted = time.time() - t0
    await conn.close()
    if not await stack.wait_idle(TIMEOUT_S, every=0.05):
        raise TimeoutError(f"DAG still running after {TIMEOUT_S}s")
    counts = await stack.statuses([batch_id])
    if counts.get("completed", 0) != len(jobs):
        raise RuntimeError(f"not every job completed: {counts}")
    completed = await stack.last_finished([batch_id]) - t0
    return {"accepted_s": accepted, "completed_s": completed}


async def run_dag(
    name: str,
    options: figures.Options,
    build: Callable[[int], list[dict[str, Any]]],
    targets: dict[str, str],
) -> dict[str, Any]:
    runs = options.pick(3, 1)
    results = []
    size = 0
    async with Stack(worker_units=64) as stack:
        for seed in range(runs):
            jobs = build(seed)
            size = len(jobs)
            results.append(await dag_run(stack, jobs))
    out: dict[str, Any] = {"runs": runs, "jobs": size}
    for key in ("accepted_s", "completed_s"):
        out[key] = figures.figure([r[key] for r in results], targets.get(key), 3)
    out["per_job"] = stack.costs.per_job(size * runs)
    return out


def _main(name: str, argv: list[str]) -> int:
    options = figures.parse(argv, name)
    quick = options.quick
    builds: dict[str, tuple[Callable[[int], list[dict[str, Any]]], dict[str, str]]] = {
        "dag10k": (
            lambda seed: layered(5 if quick else 50, 200, 2, seed),
            {"accepted_s": "<= 2", "completed_s": "<= 30"},
        ),
        "dag1k": (
            lambda seed: layered(3 if quick else 10, 100, 3, seed),
            {"completed_s": "<= 2"},
        ),
        "chain": (lambda seed: chain(50 if quick else 1_000, seed), {"completed_s": "<= 10"}),
    }
    build, targets = builds[name]
    started = time.perf_counter()
    figures.emit(name, options, asyncio.run(run_dag(name, options, build, targets)), started)
    return 0


def main_dag10k(argv: list[str]) -> int:
    return _main("dag10k", argv)


def main_dag1k(argv: list[str]) -> int:
    return _main("dag1k", argv)


def main_chain(argv: list[str]) -> int:
    return _main("chain", argv)


if __name__ == "__main__":
    raise SystemExit(main_dag1k(sys.argv[1:]))
