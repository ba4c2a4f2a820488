"""Quotas against the real processes, started as a user would (``smartq api``, ``scheduler``,
``worker``, ``logger`` on PostgreSQL + RabbitMQ, keys from ``smartq keys create``): a burst of
2,000 concurrent submits from one key, with plain httpx (no SDK retries), against a tenant
with a submit rate and an active-jobs quota set by an admin. Some are refused, each with a
``Retry-After``; every accepted job runs exactly once; and no refused submit left a row."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from api.store import attempts_t, jobs
from smartq.db import create_sync
from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.e2e.procs import free_port, processes, split_env, start_split, wait_ready
from tests.services import require_rabbitmq

pytestmark = pytest.mark.slow

BURST = 2_000
#: Requests in flight at once: a busy client, below the API's 20 database connections.
IN_FLIGHT = 16
TENANT = "burst"
#: Jobs that hold their place a second: admitted at the rate (15/s) they pile up faster than
#: they end (10 at most at once), so the active-jobs quota refuses too, however fast the API.
JOB = {"type": "sleep", "payload": {"seconds": 1}}
QUOTAS = {"submit_rate": 15.0, "max_active_jobs": 10}


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


async def _burst(base: str, key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=base, headers=bearer(key), limits=limits, timeout=30
    ) as client:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post("/jobs", json=JOB | {"name": f"b{i}"})

        return list(await asyncio.gather(*(one(i) for i in range(BURST))))


def _settled(pg_url: str, timeout: float) -> dict[str, tuple[str, int]]:
    """The tenant's jobs once every one is final: id → (status, attempts)."""
    engine = create_sync(pg_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(jobs.c.id, jobs.c.status, jobs.c.attempts).where(jobs.c.tenant == TENANT)
                ).all()
            found = {str(r.id): (r.status, r.attempts) for r in rows}
            if all(s in ("completed", "failed", "cancelled") for s, _ in found.values()):
                return found
            if time.monotonic() > deadline:
                waiting = Counter(s for s, _ in found.values())
                raise AssertionError(f"not final after {timeout}s: {waiting}")
            time.sleep(0.2)
    finally:
        engine.dispose()


def _attempts(pg_url: str) -> int:
    engine = create_sync(pg_url)
    try:
        with engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(attempts_t.join(jobs, attempts_t.c.job_id == jobs.c.id))
                .where(jobs.c.tenant == TENANT)
            )
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_a_burst_over_the_quotas_is_refused_with_retry_after_and_writes_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    env = split_env(pg_url, require_rabbitmq(), "quota")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        start_split(procs, port, cpu_units=16, memory_mb=8192)
        admin = procs.create_key("ops", "--admin")
        user = procs.create_key(TENANT, "--scope", "submit,read")
        wait_ready(base, timeout=90)
        put = httpx.put(f"{base}/admin/tenants/{TENANT}", json=QUOTAS, headers=bearer(admin))
        assert put.status_code == 200, put.text

        started = time.monotonic()
        answers = asyncio.run(_burst(base, user))
        assert time.monotonic() - started < 45  # refusals are cheap: no database work
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {201, 429, 503}, statuses
        assert statuses[201] > 0, statuses
        refused_by: Counter[str] = Counter()
        for answer in answers:
            if answer.status_code == 201:
                continue
            wait = int(answer.headers["Retry-After"])
            if answer.status_code == 503:
                assert 1 <= wait <= 3
                continue
            quota = answer.json()["detail"]["quota"]
            refused_by[quota] += 1
            assert 1 <= wait <= (2 if quota == "submit_rate" else 5), answer.json()
        assert set(refused_by) == {"submit_rate", "max_active_jobs"}, refused_by
        accepted = {a.json()["id"] for a in answers if a.status_code == 201}

        final = _settled(pg_url, timeout=45)
        assert set(final) == accepted, (len(final), len(accepted))  # no 429 left a row
        assert {s for s, _ in final.values()} == {"completed"}
        assert {n for _, n in final.values()} == {1}
        assert _attempts(pg_url) == len(accepted)  # each ran exactly once
        for name in ("api", "scheduler", "worker", "logger"):
            assert procs.stop(name) in (0, -signal.SIGTERM), procs.log(name)
