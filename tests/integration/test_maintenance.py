"""The scheduler vacuums the churned job tables itself when PostgreSQL's autovacuum is off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from scheduler import maintenance
from smartq.db import psycopg_dsn
from tests.databases import PostgresDatabases


@pytest.fixture
def dsn(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield psycopg_dsn(url)
    postgres_databases.drop(url)


def _dead_job_rows(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _churn(dsn: str, rows: int = 200) -> None:
    """Insert jobs and move each through three more statuses: three dead versions per job."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, name, type, payload, priority, cpu_units, memory_mb,"
            " max_attempts, initial_delay_seconds, backoff_multiplier, status, attempts,"
            " attempts_base, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'j' || n, 'noop', '{}', 5, 1, 256, 1, 1, 2, 'pending',"
            " 0, 0, now(), now() FROM generate_series(1, %s) AS n",
            (rows,),
        )
        for status in ("ready", "running", "completed"):
            conn.execute("UPDATE jobs SET status = %s", (status,))


async def test_vacuum_removes_the_dead_versions_of_moved_jobs(dsn: str) -> None:
    _churn(dsn)
    assert _dead_job_rows(dsn) >= 600
    await maintenance.vacuum(dsn)
    assert _dead_job_rows(dsn) == 0


async def test_analyze_follows_autovacuums_rule_not_the_timer(dsn: str) -> None:
    _churn(dsn)  # 800 changes to a table of 200 rows: past 50 + 10 %
    assert "jobs" in await maintenance.vacuum(dsn)
    assert await maintenance.vacuum(dsn) == []  # nothing changed since: no new sample
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET updated_at = now() WHERE name IN ('j1', 'j2')")
    assert await maintenance.vacuum(dsn) == []  # 2 changes: the old statistics still hold
    _churn(dsn)
    assert "jobs" in await maintenance.vacuum(dsn)


async def test_keep_vacuumed_runs_only_when_autovacuum_is_off(dsn: str) -> None:
    _churn(dsn)
    task = asyncio.create_task(maintenance.keep_vacuumed(dsn, every=0.1))
    try:
        if await maintenance.autovacuum_on(dsn):
            await asyncio.wait_for(task, 5)  # the server keeps its own schedule: it returns
        else:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if _dead_job_rows(dsn) == 0:
                    break
            assert _dead_job_rows(dsn) == 0
            assert not task.done()  # it goes on until the scheduler stops leading
    finally:
        task.cancel()


async def test_keep_vacuumed_never_runs_when_disabled(dsn: str) -> None:
    _churn(dsn)
    await asyncio.wait_for(maintenance.keep_vacuumed(dsn, every=0), 1)
    await asyncio.sleep(0.3)
    assert _dead_job_rows(dsn) >= 600 or await maintenance.autovacuum_on(dsn)
