"""Fair share between tenants, end to end: ``python -m bench fairness [--quick] [--runs N]``.

The real processes (API, scheduler, one worker of 16 cpu units, logger) on PostgreSQL and
RabbitMQ. Tenants ``a`` (weight 1) and ``b`` (weight 2) submit 1,000 jobs each at once
(``sleep`` 0.2 s, cpu_units 1–4, the same random sizes for both); tenant ``c`` (weight 1)
submits 1,000 more 10 s later. Each tenant uses its own key; the weights are set with
``PUT /admin/tenants/{name}`` as an admin would. From the attempts' rows:

* ``max_share_deviation``: in each 30 s window from c's arrival on, while all three still
  have jobs waiting, each tenant's share of the cpu-seconds used against its weight's share,
  the worst relative gap (target: <= 0.1); ``a_b_before_c``: a's and b's split in the 10 s
  before c (1:2 wanted; it includes the first fill, no target);
* ``late_start_s``: from c's submit to its first job's start (target <= 1 s);
* ``utilisation_loss``: the same 3,000 jobs submitted by one tenant in the same pattern,
  utilisation (cpu-seconds used over capacity × the time from the first start to the last
  end) compared (target <= 3 %; negative: the shared run packed better).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import httpx

from bench import figures, harness
from bench.harness import Stack

UNITS = 16
SECONDS = 0.2
WINDOW = 30.0
WEIGHTS = {"a": 1.0, "b": 2.0, "c": 1.0}


def workload(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"type": "sleep", "payload": {"seconds": SECONDS}, "cpu_units": rng.randint(1, 4)}
        for _ in range(n)
    ]


def key_for(stack: Stack, tenant: str, *flags: str) -> dict[str, str]:
    made = harness.run_smartq(
        stack.env, "keys", "create", "--tenant", tenant, "--scope", harness.SCOPES, *flags,
        "-o", "json",
    )  # fmt: skip
    return {"Authorization": f"Bearer {json.loads(made)['key']}"}


async def submit(http: httpx.AsyncClient, headers: dict[str, str], jobs: list[Any]) -> float:
    """Submit in batches of 500; when the first batch was accepted."""
    first = 0.0
    for at in range(0, len(jobs), 500):
        got = await http.post("/jobs/batch", json={"jobs": jobs[at : at + 500]}, headers=headers)
        got.raise_for_status()
        first = first or time.time()
    return first


async def one_run(n: int, arrive_after: float, shared: bool, seed: int) -> dict[str, Any]:
    env = {"SMARTQ_LIMITS_POLL_SECONDS": "0.5"}
    async with Stack(worker_units=UNITS, env=env) as stack:
        base = f"http://127.0.0.1:{stack.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            tenants = list(WEIGHTS) if shared else ["solo", "solo", "solo"]
            headers = {t: key_for(stack, t) for t in set(tenants)}
            if shared:
                admin = key_for(stack, "ops", "--admin")
                for name, weight in WEIGHTS.items():
                    put = await http.put(
                        f"/admin/tenants/{name}", json={"weight": weight}, headers=admin
                    )
                    put.raise_for_status()
                await asyncio.sleep(1.5)  # the scheduler reads them within 0.5 s
            jobs = workload(3 * n, seed)
            t0 = time.time()
            await asyncio.gather(
                submit(http, headers[tenants[0]], jobs[:n]),
                submit(http, headers[tenants[1]], jobs[n : 2 * n]),
            )
            await asyncio.sleep(max(0.0, arrive_after - (time.time() - t0)))
            arrived = await submit(http, headers[tenants[2]], jobs[2 * n :])
            if not await stack.wait_idle(600, every=0.5):
                raise TimeoutError("jobs still running after 600 s")
        rows = await stack.fetch(
            "SELECT j.tenant, a.cpu_units, extract(epoch FROM a.started_at),"
            " extract(epoch FROM a.finished_at), extract(epoch FROM j.created_at)"
            " FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        )
    attempts = [(t, int(c), float(s), float(e), float(made)) for t, c, s, e, made in rows]
    return {"attempts": attempts, "arrived": arrived, "t0": t0}


def used(
    attempts: list[tuple[str, int, float, float, float]], lo: float, hi: float
) -> dict[str, float]:
    """cpu-seconds each tenant used within [lo, hi)."""
    out: dict[str, float] = {}
    for tenant, cpu, start, end, _ in attempts:
        overlap = min(end, hi) - max(start, lo)
        if overlap > 0:
            out[tenant] = out.get(tenant, 0.0) + cpu * overlap
    return out


def last_start(attempts: list[tuple[str, int, float, float, float]], tenant: str) -> float:
    return max(s for t, _, s, _, _ in attempts if t == tenant)


def shares(run: dict[str, Any], window: float = WINDOW) -> dict[str, Any]:
    attempts = run["attempts"]
    arrived = run["arrived"]
    start = min(s for _, _, s, _, _ in attempts)
    deviations: list[float] = []
    windows: list[dict[str, float]] = []
    before = used(attempts, start, arrived)  # a and b alone, 1:2 (reported, no target)
    total = sum(before.values())
    alone = {name: round(before.get(name, 0.0) / total, 3) for name in ("a", "b")}
    busy_until = min(last_start(attempts, t) for t in WEIGHTS)  # all three still waiting
    lo = arrived
    while lo + window <= busy_until:
        got = used(attempts, lo, lo + window)
        total = sum(got.values())
        split = {t: round(got.get(t, 0.0) / total, 3) for t in WEIGHTS}
        windows.append(split)
        for name, weight in WEIGHTS.items():
            expected = weight / sum(WEIGHTS.values())
            deviations.append(abs(split[name] - expected) / expected)
        lo += window
    late = min(s for t, _, s, _, _ in attempts if t == "c") - arrived
    worst = max(deviations) if deviations else float("nan")
    return {"windows": windows, "before_c": alone, "max_deviation": worst, "late_start_s": late}


def utilisation(run: dict[str, Any]) -> float:
    attempts: list[tuple[str, int, float, float, float]] = run["attempts"]
    start = min(s for _, _, s, _, _ in attempts)
    end = max(e for _, _, _, e, _ in attempts)
    return sum(c * (e - s) for _, c, s, e, _ in attempts) / (UNITS * (end - start))


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    n = 200 if options.quick else 1_000
    arrive_after = 3.0 if options.quick else 10.0
    deviation, late, loss, windows, before = [], [], [], [], []
    for r in range(runs):
        multi = await one_run(n, arrive_after, shared=True, seed=r)
        solo = await one_run(n, arrive_after, shared=False, seed=r)
        s = shares(multi, 3.0 if options.quick else WINDOW)  # --quick: 3 s windows
        deviation.append(s["max_deviation"])
        late.append(s["late_start_s"])
        windows.append(s["windows"])
        before.append(s["before_c"])
        loss.append(1.0 - utilisation(multi) / utilisation(solo))
    return {
        "runs": runs,
        "jobs_per_tenant": n,
        "weights": WEIGHTS,
        "max_share_deviation": figures.figure(deviation, "<= 0.1", 3),
        "late_start_s": figures.figure(late, "<= 1", 3),
        "utilisation_loss": figures.figure(loss, "<= 0.03", 4),
        "windows_of_run_1": windows[0],
        "a_b_before_c_of_run_1": before[0],
    }


def main(argv: list[str]) -> int:
    return figures.run_main("fairness", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
