"""An API whose database stalls answers 503 with Retry-After within its deadline, and writes
nothing half-way (api/deadline.py, issue 20).

The stall is real: the API's own server sessions are frozen (SIGSTOP on their PostgreSQL
backends), so its statements wait with their TCP connections open, as on a hung path. New
sessions would still work, so the test keeps the API on the connection it pooled."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from api.app import create_app
from smartq.brokers.memory import InMemoryBroker
from smartq.db import create_async, psycopg_dsn
from smartq.settings import Settings
from tests.apikeys import bearer, suite_key
from tests.conftest import asgi_client
from tests.databases import PostgresDatabases

DEADLINE = 1.0


@pytest.fixture
async def stallable(
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    url = postgres_databases.create()
    settings = Settings(database_url=url, broker_url=None, auth="on", api_deadline_seconds=DEADLINE)
    # One pooled connection, so the request after the freeze takes the frozen one.
    engine = create_async(url, pool_size=1, pre_ping=False, pool_timeout=30)
    broker = InMemoryBroker()
    await broker.connect()
    app = create_app(settings, engine=engine, broker=broker)
    key = await suite_key(engine)
    async with app.router.lifespan_context(app), asgi_client(app, bearer(key.key)) as client:
        yield url, client
    await broker.close()
    await engine.dispose()
    postgres_databases.drop(url)


@contextmanager
def frozen_sessions(url: str) -> Iterator[list[int]]:
    """SIGSTOP every server session of the database but our own; SIGCONT after."""
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as admin:
        pids = [
            row[0]
            for row in admin.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    assert pids, "the API holds no session to freeze"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _count(url: str, key: str) -> int:
    async with await psycopg.AsyncConnection.connect(psycopg_dsn(url)) as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE idempotency_key = %s", (key,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
async def test_a_stalled_database_gets_a_503_in_time_and_a_retry_makes_one(
    stallable: tuple[str, httpx.AsyncClient], path: str
) -> None:
    url, client = stallable
    body: dict[str, object] = {"type": "noop"}
    if path == "/jobs/batch":
        body = {
            "jobs": [
                {"key": "a", "type": "noop"},
                {"key": "b", "type": "noop", "depends_on": ["a"]},
            ]
        }
    warm = await client.post(path, json=body)
    assert warm.status_code == 201, warm.text
    headers = {"Idempotency-Key": f"during-the-stall-{path}"}
    with frozen_sessions(url):
        began = time.monotonic()
        stalled = await client.post(path, json=body, headers=headers)
        took = time.monotonic() - began
        assert stalled.status_code == 503, stalled.text
        assert 1 <= int(stalled.headers["Retry-After"]) <= 60
        assert "within 1s" in stalled.json()["error"]
        assert DEADLINE <= took < DEADLINE + 1.5
    # Back: the same request again makes its job(s) once, whatever the cancelled one did.
    again = await client.post(path, json=body, headers=headers)
    assert again.status_code in (200, 201), again.text
    twice = await client.post(path, json=body, headers=headers)
    assert twice.json() == again.json()
    if path == "/jobs":
        assert await _count(url, headers["Idempotency-Key"]) == 1
