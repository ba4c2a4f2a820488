"""Memory escalation, workload W7: ``python -m bench escalation [--quick] [--runs N]``.

The real processes on a fresh database and exchange, one worker of 4 cpu_units and 4,096 MB.
Each run submits 100 isolated jobs in one batch (``--quick``: 10), every one with
``max_attempts=1`` so that the only retries are escalations:

* 30 ``memory`` jobs asking for 128, 192 or 256 MB that take 1.3–3.5 × that (drawn, seeded);
* 10 that time out (``memory`` of 16 MB held 30 s, ``timeout_seconds`` 1);
* 10 that SIGKILL themselves (``bench_self_kill``, :mod:`bench.escalation_jobs`);
* 50 normal ``memory`` jobs taking a third of what they ask for.

Breakers are held out of reach (the self-killing type always fails, as a breaker rightly
stops). Figures: ``classified_right_pct`` (attempts whose failure class is their kind's — memory,
timeout, signal — or none for a success, of all attempts; target >= 100);
``memory_succeeded_pct`` (target >= 100); ``memory_attempts`` (attempts a memory job used:
median and max; target max <= 3, i.e. at most 2 extra); ``escalations_others`` (memory
escalations of the jobs that are not memory jobs; target <= 0).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import Counter
from typing import Any

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import Stack

TIMEOUT_S = 600.0
#: The failure class each kind's failed attempts must carry (normal jobs must not fail).
EXPECTED = {"memory": "memory", "timeout": "timeout", "signal": "signal", "normal": None}
ONCE = {"max_attempts": 1}


def _job(kind: str, n: int, rng: random.Random) -> dict[str, Any]:
    asked = rng.choice((128, 192, 256))
    body: dict[str, Any] = {"name": f"w7-{kind}-{n}", "memory_mb": asked, "retry": ONCE}
    if kind == "memory":
        needs = round(asked * rng.uniform(1.3, 3.5))
        return body | {"type": "memory", "payload": {"mb": needs, "seconds": 0.3}}
    if kind == "timeout":
        return body | {
            "type": "memory",
            "payload": {"mb": 16, "seconds": 30},
            "timeout_seconds": 1.0,
        }
    if kind == "signal":
        return body | {"type": "bench_self_kill"}
    return body | {"type": "memory", "payload": {"mb": asked // 3, "seconds": 0.3}}


def workload(scale: int, seed: int) -> list[dict[str, Any]]:
    """W7 at ``scale`` tenths (10: 100 jobs), in a seeded random order."""
    rng = random.Random(seed)
    mix = {"memory": 3, "timeout": 1, "signal": 1, "normal": 5}
    jobs = [_job(kind, n, rng) for kind, k in mix.items() for n in range(k * scale)]
    rng.shuffle(jobs)
    return jobs


_ROWS = """
SELECT j.name, j.status, j.memory_escalations, a.outcome, a.failure_class
FROM jobs AS j JOIN job_attempts AS a ON a.job_id = j.id
WHERE j.batch_id = %s
"""


def measure(rows: list[tuple[Any, ...]]) -> dict[str, float]:
    """The run's figures from (job name, status, escalations, attempt outcome, class) rows."""
    right = 0
    attempts: Counter[str] = Counter()
    jobs: dict[str, tuple[str, str, int]] = {}
    for name, status, escalations, outcome, failure_class in rows:
        kind = name.split("-")[1]
        expected = None if outcome == "succeeded" else EXPECTED[kind]
        right += failure_class == expected and (outcome == "succeeded" or expected is not None)
        attempts[name] += 1
        jobs[name] = (kind, status, escalations)
    memory = [name for name, (kind, _, _) in jobs.items() if kind == "memory"]
    used = [attempts[name] for name in memory]
    return {
        "classified_right_pct": 100.0 * right / max(1, len(rows)),
        "memory_succeeded_pct": 100.0
        * sum(jobs[name][1] == "completed" for name in memory)
        / max(1, len(memory)),
        "memory_attempts_median": float(statistics.median(used)) if used else 0.0,
        "memory_attempts_max": float(max(used, default=0)),
        "escalations_others": float(sum(e for kind, _, e in jobs.values() if kind != "memory")),
    }


async def one_run(stack: Stack, scale: int, seed: int) -> dict[str, float]:
    conn = stack.http()
    t0 = time.monotonic()
    batch_id = await post_batch(conn, batch_body(workload(scale, seed)))
    await conn.close()
    if not await stack.wait_idle(TIMEOUT_S):
        raise TimeoutError(f"jobs still active after {TIMEOUT_S}s")
    out = measure(await stack.fetch(_ROWS, (batch_id,)))
    out["seconds"] = time.monotonic() - t0
    return out


TARGETS = {
    "classified_right_pct": ">= 100",
    "memory_succeeded_pct": ">= 100",
    "memory_attempts_median": None,
    "memory_attempts_max": "<= 3",
    "escalations_others": "<= 0",
    "seconds": None,
}


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    scale = 1 if options.quick else 10
    # The self-killing type always fails: its breaker would rightly hold it after a run.
    env = {"SMARTQ_IMPORTS": "bench.escalation_jobs", "SMARTQ_BREAKER_MIN_ATTEMPTS": "1000000"}
    results = []
    async with Stack(worker_units=4, worker_memory_mb=4096, env=env, taps=False) as stack:
        for seed in range(runs):
            results.append(await one_run(stack, scale, seed))
    body: dict[str, Any] = {"jobs": 10 * scale, "runs": runs}
    for name, target in TARGETS.items():
        body[name] = figures.figure([r[name] for r in results], target, digits=2)
    return body


def main(argv: list[str]) -> int:
    return figures.run_main("escalation", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
