"""Jobs that jobs submit, as the leading scheduler inserts them: ``python -m bench spawn
[--quick] [--runs N]``.

A fresh PostgreSQL database with one running parent; each run hands
:func:`scheduler.spawns.insert_spawned` N messages of one job each (a parent calling
``ctx.submit`` N times, all arriving in one pass), then the same N again (a retried parent:
nothing new may be inserted). Figures: ``us_per_job`` of the first insert (target <= 500: a
pass taking 5,000 children must not stall for seconds; one savepoint and three statements per
job took ~3,500 µs), and ``retry_us_per_job`` of the second.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from bench import figures
from bench.harness import create_database, drop_database, migrate, smartq_env
from models.inserts import jobs
from models.messages import JobsSpawned, SpawnedJob
from scheduler.spawns import insert_spawned
from smartq.db import create_async

TARGET = "<= 500"


def _messages(parent: uuid.UUID, n: int) -> list[JobsSpawned]:
    def one(i: int) -> JobsSpawned:
        job = SpawnedJob(
            id=uuid.uuid5(parent, str(i)),
            key=f"noop-{i}",
            name=f"noop-{i}",
            job_type="noop",
            priority=5,
            cpu_units=1,
            memory_mb=64,
            max_attempts=3,
            initial_delay_seconds=1,
            backoff_multiplier=2,
        )
        return JobsSpawned(parent_id=parent, attempt=1, worker_id="bench", jobs=[job])

    return [one(i) for i in range(n)]


def _parent(parent: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {
        "id": parent, "name": "parent", "type": "fan_out", "payload": {}, "priority": 5,
        "cpu_units": 1, "memory_mb": 64, "max_attempts": 1, "initial_delay_seconds": 0,
        "backoff_multiplier": 1, "status": "running", "attempts": 1, "attempts_base": 0,
        "tenant": "bench", "created_at": now, "updated_at": now, "memory_escalations": 0,
    }  # fmt: skip


async def run(options: figures.Options) -> dict[str, Any]:
    n = 500 if options.quick else 5_000
    first: list[float] = []
    again: list[float] = []
    for _ in range(options.pick(3, 1)):
        url = create_database(secrets.token_hex(4))
        try:
            migrate(smartq_env(url, "unused"))
            engine = create_async(url)
            parent, now = uuid.uuid4(), datetime.now(UTC)
            async with engine.begin() as conn:
                await conn.execute(insert(jobs).values(**_parent(parent, now)))
            messages = _messages(parent, n)
            t0 = time.perf_counter()
            made = await insert_spawned(engine, messages, now)
            first.append((time.perf_counter() - t0) * 1e6 / n)
            t0 = time.perf_counter()
            repeat = await insert_spawned(engine, messages, now)
            again.append((time.perf_counter() - t0) * 1e6 / n)
            await engine.dispose()
            if len(made) != n or repeat:
                raise RuntimeError(f"inserted {len(made)} of {n}, then {len(repeat)} again")
        finally:
            drop_database(url)
    return {
        "jobs": n,
        "us_per_job": figures.figure(first, TARGET, 1),
        "retry_us_per_job": figures.figure(again, None, 1),
    }


def main(argv: list[str]) -> int:
    return figures.run_main("spawn", argv, run)
