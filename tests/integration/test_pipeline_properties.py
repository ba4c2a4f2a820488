"""Random DAGs with random resource needs and failures, run by the real services: every job
ends final, nothing starts before its parents completed, no worker is ever over capacity, and
a job never runs after an upstream job failed."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_pipeline import peak_use
from tests.system import System

WORKERS = {"w-big": (4, 4096), "w-small": (2, 1024)}


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=2, max_value=14))
    seed = draw(st.integers(min_value=0, max_value=10_000))
    rng = random.Random(seed)
    jobs: list[dict[str, Any]] = []
    for i in range(n):
        parents = rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        fails = rng.random() < 0.15
        jobs.append({
            "key": f"j{i}",
            "type": "flaky" if fails else "hold",
            "payload": {"fail_times": -1} if fails else {"seconds": rng.choice([0.0, 0.02, 0.05])},
            "depends_on": [f"j{p}" for p in parents],
            "cpu_units": rng.randint(1, 4),
            "memory_mb": rng.choice([128, 512, 1024, 2048]),
            "priority": rng.randint(0, 10),
            "retry": {"max_attempts": rng.randint(1, 2), "initial_delay_seconds": 0.01},
        })  # fmt: skip
    return jobs


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=dags())
async def test_random_dags_keep_the_invariants(system: System, spec: list[dict[str, Any]]) -> None:
    if system.scheduler is None:
        system.start_scheduler()
        for worker_id, (cpu, mem) in WORKERS.items():
            system.start_worker(worker_id, cpu, mem)
    r = await system.client.post("/jobs/batch", json={"jobs": spec})
    assert r.status_code == 201, r.text
    made = {j["key"]: j for j in r.json()["jobs"]}
    final = await system.wait_final([j["id"] for j in made.values()], timeout=60)
    by_key = {k: final[j["id"]] for k, j in made.items()}
    for job in spec:
        row = by_key[job["key"]]
        parents = [by_key[p] for p in job["depends_on"]]
        if all(p["status"] == "completed" for p in parents):
            expected = "failed" if job["type"] == "flaky" else "completed"
            assert row["status"] == expected, (job, row["status"], row["status_reason"])
        else:
            assert row["status"] == "cancelled" and row["attempts"] == 0
            assert row["status_reason"].startswith("upstream job ")
        if row["started_at"] is not None:
            for p in parents:
                assert row["started_at"] >= p["finished_at"]
        assert row["attempts"] <= job["retry"]["max_attempts"]
    attempts = await system.attempts()
    mine = {uuid.UUID(j["id"]) for j in made.values()}
    assert all(a["finished_at"] is not None for a in attempts if a["job_id"] in mine)
    for worker_id, (cpu, mem) in WORKERS.items():
        used_cpu, used_mem = peak_use(attempts, worker_id)
        assert used_cpu <= cpu and used_mem <= mem
