"""The scenarios' workload: batches of ``side_effect`` jobs (tests/faults/jobs.py) shaped as
DAGs, submitted through the APIs' proxy paths with retries that cannot write twice (the same
``Idempotency-Key`` until an answer), and a submitter thread that keeps them coming."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from smartq.cluster.cluster import Cluster


def dag(prefix: str, n: int, seconds: float = 0.3, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` jobs: the first fifth roots, every other one after 1–3 earlier jobs."""
    rng = random.Random(seed)
    roots = max(1, n // 5)
    jobs = []
    for i in range(n):
        after = [] if i < roots else rng.sample(range(i), k=min(i, rng.randint(1, 3)))
        jobs.append(
            {
                "key": f"{prefix}{i}",
                "type": "side_effect",
                "payload": {"seconds": round(rng.uniform(0.5, 1.5) * seconds, 3)},
                "retry": {"max_attempts": 10, "initial_delay_seconds": 0.2},
                "depends_on": [f"{prefix}{j}" for j in after],
            }
        )
    return jobs


def flat(prefix: str, n: int, seconds: float) -> list[dict[str, Any]]:
    """``n`` independent jobs: wide enough to need every worker at once."""
    return [
        {"key": f"{prefix}{i}", "type": "side_effect", "payload": {"seconds": seconds}}
        for i in range(n)
    ]


@dataclass
class Submitter:
    """Submits batches to the cluster's APIs in turn; keeps what was accepted and every
    answer it got."""

    cluster: Cluster
    apis: list[str] | None = None
    accepted: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    batches: dict[str, int] = field(default_factory=dict)  # idempotency key → size
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _n: int = 0

    def submit(self, jobs: list[dict[str, Any]], key: str, deadline: float = 120) -> list[str]:
        """One batch, retried (503, connection errors) under ``key`` until accepted."""
        self.batches[key] = len(jobs)
        apis = self.apis or self.cluster.apis()
        ends = time.monotonic() + deadline
        attempt = 0
        while True:
            base = self.cluster.api_base(apis[(self._n + attempt) % len(apis)])
            attempt += 1
            try:
                r = httpx.post(
                    f"{base}/jobs/batch",
                    json={"jobs": jobs},
                    headers={**self.cluster.headers, "Idempotency-Key": key},
                    timeout=30,
                )
                self.codes.append(r.status_code)
                if r.status_code in (200, 201):
                    ids = [j["id"] for j in r.json()["jobs"]]
                    self.accepted.extend(ids)
                    return ids
                if r.status_code != 503:
                    raise AssertionError(f"{r.status_code} {r.text[:300]}")
            except httpx.HTTPError as exc:
                self.errors.append(type(exc).__name__)
            if time.monotonic() > ends:
                raise AssertionError(f"batch {key} not accepted in {deadline}s")
            time.sleep(0.3)

    def start(self, size: int = 10, every: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._n += 1
                prefix = f"s{self._n}-"
                self.submit(dag(prefix, size, seed=self._n), key=f"batch-{prefix}")
                time.sleep(every)

        self._thread = threading.Thread(target=loop, name="submitter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(180)
            assert not self._thread.is_alive(), "the submitter did not finish its batch"


def running_on(c: Cluster, worker: str) -> int:
    return int(
        c.scalar("SELECT count(*) FROM jobs WHERE status = 'running' AND worker_id = %s", (worker,))
    )


def half_written(c: Cluster, batches: dict[str, int]) -> list[tuple[str, int, int]]:
    """Batches whose job count in the database differs from the size submitted under their
    idempotency key (``(key, found, submitted)``); a batch refused leaves no row at all."""
    rows = c.rows(
        "SELECT b.idempotency_key AS key, count(j.id) AS n FROM batches b "
        "LEFT JOIN jobs j ON j.batch_id = b.id GROUP BY b.id, b.idempotency_key"
    )
    found = {r["key"]: int(r["n"]) for r in rows}
    return [(k, found.get(k, 0), n) for k, n in batches.items() if found.get(k, 0) != n]
