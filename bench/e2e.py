"""No-op jobs end to end: ``python -m bench e2e [--quick] [--runs N]``.

The real processes (``smartq api``, ``scheduler``, ``worker``, ``logger``) on a fresh database
and exchange. Each run submits 20,000 ``noop`` jobs in batches of 1,000 (``POST /jobs/batch``,
one request at a time, as fast as the API takes them) and waits until every one has finished.

* ``jobs_per_s``: jobs / (last ``finished_at`` − first request sent) (target >= 500);
* ``submit_s``: how long the 20 requests took (submission overlaps execution);
* ``per_job``: PostgreSQL transactions, AMQP messages by kind and CPU-ms per process, per job,
  over every run (see bench/harness.py for how each is counted).
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import orjson

from bench import figures
from bench.harness import Stack
from bench.http import Connection, HttpError

TIMEOUT_S = 900.0


def batch_body(jobs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"jobs": jobs})


async def post_batch(conn: Connection, body: bytes) -> uuid.UUID:
    status, payload = await conn.request("POST", "/jobs/batch", body)
    if status != 201:
        raise HttpError(f"POST /jobs/batch: {status} {payload[:300]!r}")
    return uuid.UUID(orjson.loads(payload)["batch_id"])


async def one_run(stack: Stack, jobs: int, batch: int) -> dict[str, float]:
    body = batch_body([{"type": "noop"}] * batch)
    conn = stack.http()
    t0 = time.time()
    batch_ids = [await post_batch(conn, body) for _ in range(jobs // batch)]
    submitted = time.time() - t0
    await conn.close()
    if not await stack.wait_idle(TIMEOUT_S):
        raise TimeoutError(f"jobs still active after {TIMEOUT_S}s")
    counts = await stack.statuses(batch_ids)
    if counts.get("completed", 0) != jobs:
        raise RuntimeError(f"not every job completed: {counts}")
    elapsed = await stack.last_finished(batch_ids) - t0
    return {"jobs_per_s": jobs / elapsed, "elapsed_s": elapsed, "submit_s": submitted}


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    jobs = 2_000 if options.quick else 20_000
    results = []
    async with Stack(worker_units=64) as stack:
        for _ in range(runs):
            results.append(await one_run(stack, jobs, 1_000))
    return {
        "runs": runs,
        "jobs": jobs,
        "jobs_per_s": figures.figure([r["jobs_per_s"] for r in results], ">= 500", 1),
        "elapsed_s": figures.figure([r["elapsed_s"] for r in results], digits=2),
        "submit_s": figures.figure([r["submit_s"] for r in results], digits=2),
        "per_job": stack.costs.per_job(jobs * runs),
    }


def main(argv: list[str]) -> int:
    return figures.run_main("e2e", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
