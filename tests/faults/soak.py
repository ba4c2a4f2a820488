"""The soak (issue 5, scenario 12): faults of scenarios 1, 4, 6, 7 and 8, and the worker life-cycle
faults of issue 12 (a worker restarted under the same id, soon or after its lease, with stale
dispatches in its queue; a worker stopped with SIGTERM while dispatches race its drain), mixed
at random under a steady load, for ``--minutes`` (30 by default), then the checker's counts.
Not part of CI:

    .venv/bin/python -m tests.faults.soak --minutes 30

Prints one JSON line: duration, jobs accepted, faults injected by kind, and every count (all
must be zero, effects_unsuccessful within lost_attempts, as in scenario 1).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.databases import PostgresDatabases
from tests.faults.checker import check
from tests.faults.cluster import LEASE_SECONDS, Cluster, cluster

FAULTS = (
    "kill_worker",
    "kill_scheduler",
    "restart_rabbitmq",
    "kill_connections",
    "kill_logger",
    "restart_worker_same_id",
    "sigterm_worker",
)


def _jobs(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "type": "side_effect",
            "payload": {"seconds": rng.choice([0.05, 0.2, 0.5, 1.0])},
            "retry": {"max_attempts": 5, "initial_delay_seconds": 0.1},
        }
        for _ in range(n)
    ]


def _load(c: Cluster, stop: threading.Event, accepted: list[str], codes: Counter[int]) -> None:
    """About 40 jobs a second, in batches of 20, each batch retried under its idempotency key."""
    n = 0
    with c.client(timeout=60) as client:
        while not stop.is_set():
            n += 1
            body = {"jobs": _jobs(20, n)}
            headers = {"Idempotency-Key": f"soak-{n}"}
            for _ in range(30):
                try:
                    r = client.post("/jobs/batch", json=body, headers=headers)
                except httpx.TransportError:
                    codes[0] += 1
                    time.sleep(0.5)
                    continue
                codes[r.status_code] += 1
                if r.status_code in (200, 201):
                    accepted.extend(j["id"] for j in r.json()["jobs"])
                    break
                time.sleep(0.5)
            time.sleep(0.5)


def _inject(c: Cluster, kind: str, rng: random.Random, generation: int) -> None:
    if kind == "kill_worker":
        victim = rng.choice([w for w in c.workers if c.alive(w)])
        c.kill(victim)
        c.start_worker(f"w{generation}", 16, wait=False)
    elif kind == "restart_worker_same_id":
        victim = rng.choice(sorted({w for w in c.workers if c.alive(w)}))
        c.kill(victim)
        time.sleep(rng.uniform(0, 2 * LEASE_SECONDS))  # before or after its lease ran out
        c.start_worker(victim, 16, wait=False)
    elif kind == "sigterm_worker":
        victim = rng.choice(sorted({w for w in c.workers if c.alive(w)}))
        c.terminate(victim)
        c.start_worker(f"w{generation}", 16, wait=False)
    elif kind == "kill_scheduler":
        c.kill("scheduler")
        point = rng.choice(["after_commit_before_publish", "after_publish_before_ack"])
        c.procs.start("scheduler", "scheduler", env={"SMARTQ_FAILPOINTS": f"{point}:3"})
        proc = c.procs.running["scheduler"]
        c.wait_for(lambda: proc.poll() is not None, timeout=60, what="the failpoint")
        del c.procs.running["scheduler"]
        c.start_scheduler()
    elif kind == "restart_rabbitmq":
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        time.sleep(3)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "-q", "await_startup"], capture_output=True, timeout=60, check=False
        )
    elif kind == "kill_connections":
        c.scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    elif kind == "kill_logger":
        c.kill("logger")
        time.sleep(1)
        c.start_logger()


def soak(minutes: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    dbs = PostgresDatabases()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as logdir, cluster(dbs, Path(logdir)) as c:
        c.boot({"w1": 16, "w2": 16})
        accepted: list[str] = []
        codes: Counter[int] = Counter()
        injected: Counter[str] = Counter()
        stop = threading.Event()
        loader = threading.Thread(target=_load, args=(c, stop, accepted, codes), daemon=True)
        loader.start()
        deadline = time.monotonic() + minutes * 60
        generation = 3
        try:
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(10, 25))
                kind = rng.choice(FAULTS)
                _inject(c, kind, rng, generation)
                generation += 1
                injected[kind] += 1
        finally:
            stop.set()
            loader.join(120)
        counts = check(c, accepted=accepted, settle_timeout=300, quiet_timeout=60)
        dbs.close()
        return {
            "soak_minutes": round((time.monotonic() - began) / 60, 1),
            "jobs_accepted": len(accepted),
            "responses": dict(codes),
            "faults": dict(injected),
            "counts": {k: v for k, v in vars(counts).items() if k != "details"},
            "over_budget": counts.details.get("over_budget"),
            "problems": counts.problems(allow_effects_unsuccessful=counts.lost_attempts),
            "log_problems": len(c.log_problems()),
            "log_problems_first": c.log_problems()[:20],  # the logs go with the temp dir
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(soak(args.minutes, args.seed), default=str))


if __name__ == "__main__":
    main()
