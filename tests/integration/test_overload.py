"""An API whose database connections are all taken answers 503 with ``Retry-After`` within
``SMARTQ_API_DB_ACQUIRE_TIMEOUT_SECONDS`` instead of hanging, on a route and on the submit fast
path alike, and writes nothing (on PostgreSQL and on SQLite). The app builds its own engine, as
``smartq api`` does; the test takes every connection of its pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.app import create_app
from api.store import jobs
from smartq.brokers.memory import InMemoryBroker
from smartq.settings import Settings
from tests.apikeys import bearer, suite_key
from tests.conftest import asgi_client

BOUND = 0.5


@pytest.fixture
async def own_engine_app(
    settings: Settings, memory_broker: InMemoryBroker
) -> AsyncIterator[FastAPI]:
    settings.api_db_acquire_timeout_seconds = BOUND
    app = create_app(settings, broker=memory_broker)
    async with app.router.lifespan_context(app):
        yield app


async def _take_every_connection(engine: AsyncEngine) -> list[AsyncConnection]:
    """Every connection the pool will give, found by asking until it times out."""
    held: list[AsyncConnection] = []
    while True:
        try:
            held.append(await engine.connect())
        except PoolTimeout:
            return held


async def test_no_free_connection_is_a_503_with_retry_after_not_a_hang(
    own_engine_app: FastAPI,
) -> None:
    engine: AsyncEngine = own_engine_app.state.ctx.engine
    assert engine.pool.timeout() == BOUND  # type: ignore[attr-defined]
    key = await suite_key(engine)
    async with asgi_client(own_engine_app, bearer(key.key)) as client:
        assert (await client.get("/jobs?limit=1")).status_code == 200  # the key is cached
        held = await _take_every_connection(engine)
        try:
            answers: list[httpx.Response] = []
            for request in (
                client.build_request("GET", "/jobs"),
                client.build_request("POST", "/jobs", json={"type": "noop"}),  # the fast path
                client.build_request("POST", "/jobs/batch", json={"jobs": [{"type": "noop"}]}),
            ):
                started = time.monotonic()
                answers.append(await client.send(request))
                assert time.monotonic() - started < BOUND + 1.5
        finally:
            for conn in held:
                await conn.close()
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert 1 <= int(answer.headers["Retry-After"]) <= 3
            assert answer.json() == {
                "error": "the API is overloaded (no database connection free); retry shortly",
                "detail": None,
            }
        fast = own_engine_app.state.ctx.metrics.registry.get_sample_value(
            "smartq_api_fast_submits_total"
        )
        assert fast == 1  # the POST /jobs above was the fast path's
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(jobs))).scalar() == 0
        after = await client.post("/jobs", json={"type": "noop"})
        assert after.status_code == 201, after.text
