"""Ready → running latency at half load: ``python -m bench latency [--quick] [--runs N]``.

Half load is 250 no-op jobs/s, half the end-to-end target: every 0.1 s one ``POST /jobs/batch``
of 12 pairs ``a → b`` (24 jobs), for 20 s per run. Measured from the database afterwards:

* ``ready_to_running``: for each ``b``, the attempt's ``started_at`` (the worker's clock when it
  began executing, ``job_attempts``) − ``a.finished_at`` (the scheduler's pass that took in a's
  completion: the moment ``b`` became ready). Targets p50 <= 10 ms, p99 <= 50 ms.
* ``submit_to_running``: for each ``a``, its attempt's ``started_at`` − its ``created_at``
  (the API's clock when it accepted it): adds the API → scheduler hint to the above.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack

RATE = 250.0
TICK = 0.1


def pairs(count: int) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for i in range(count):
        jobs.append({"key": f"a{i}", "type": "noop"})
        jobs.append({"key": f"b{i}", "type": "noop", "depends_on": [f"a{i}"]})
    return jobs


LATENCIES = """
SELECT extract(epoch FROM ab.started_at - a.finished_at) * 1000,
       extract(epoch FROM aa.started_at - a.created_at) * 1000
FROM job_dependencies e
JOIN jobs a ON a.id = e.depends_on_id
JOIN job_attempts aa ON aa.job_id = a.id AND aa.attempt = 1
JOIN job_attempts ab ON ab.job_id = e.job_id AND ab.attempt = 1
WHERE a.batch_id = ANY(%s)
"""


async def latency_run(stack: Stack, seconds: float) -> dict[str, float]:
    per_tick = round(RATE * TICK / 2)
    body = batch_body(pairs(per_tick))
    conn = stack.http()
    batch_ids: list[uuid.UUID] = []
    start = time.perf_counter()
    for tick in range(round(seconds / TICK)):
        batch_ids.append(await post_batch(conn, body))
        await asyncio.sleep(max(0.0, start + (tick + 1) * TICK - time.perf_counter()))
    offered = len(batch_ids) * per_tick * 2 / (time.perf_counter() - start)
    await conn.close()
    if not await stack.wait_idle(60):
        raise TimeoutError("jobs still active 60 s after the load stopped")
    rows = await stack.fetch(LATENCIES, (batch_ids,))
    ready = [float(r[0]) for r in rows]
    submit = [float(r[1]) for r in rows]
    return {
        "p50_ms": figures.percentile(ready, 0.5),
        "p99_ms": figures.percentile(ready, 0.99),
        "submit_p50_ms": figures.percentile(submit, 0.5),
        "submit_p99_ms": figures.percentile(submit, 0.99),
        "offered_jobs_per_s": offered,
        "samples": float(len(ready)),
    }


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    seconds = 3.0 if options.quick else 20.0
    results = []
    async with Stack(worker_units=64) as stack:
        for _ in range(runs):
            results.append(await latency_run(stack, seconds))
    targets = {"p50_ms": "<= 10", "p99_ms": "<= 50"}
    out: dict[str, Any] = {"runs": runs, "seconds": seconds}
    for key in results[0]:
        out[key] = figures.figure([r[key] for r in results], targets.get(key), 2)
    return out


def main(argv: list[str]) -> int:
    return figures.run_main("latency", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
