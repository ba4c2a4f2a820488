"""The SDK's admin methods and its answer to a 429, against the API served by uvicorn on a
loopback port (PostgreSQL and SQLite): both clients set, show, list and reset tenants' quotas
and override a type's limits; a submit over the submit rate waits the ``Retry-After`` and
retries with the same generated idempotency key (one job made); without retries left it raises
:class:`~smartq.errors.RateLimited` with the wait and the server's detail, having written
nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import smartq
from api.store import jobs
from smartq.client import RetryPolicy
from tests.apikeys import suite_key
from tests.e2e.procs import free_port
from tests.integration.test_sdk import serve_app
from tests.integration.test_tenants import key_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def url(api_app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server, task = await serve_app(api_app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def job_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(jobs))).scalar_one())


async def test_both_clients_administer_tenants_and_types(url: str, engine: AsyncEngine) -> None:
    admin_key = await key_of(engine, "ops", scopes=set(), admin=True)
    async with smartq.AsyncClient(url, admin_key) as admin:
        made = await admin.set_tenant("acme", max_active_jobs=10, weight=2)
        assert made["effective"]["max_active_jobs"] == 10 and made["weight"] == 2.0
        assert [t["name"] for t in await admin.tenants()] == ["acme"]
        assert (await admin.tenant("acme"))["max_active_jobs"] == 10
        patched = await admin.set_type_limits("noop", rate_limit="5/s", breaker="closed")
        assert (patched["rate_limit"], patched["breaker_force"]) == ("5/s", "closed")
        assert (await admin.reset_tenant("acme"))["updated_at"] is None

    def sync_side() -> None:
        with smartq.Client(url, admin_key) as client:
            kept = client.set_type_limits("noop", max_running=2)  # rate and breaker stay
            assert (kept["rate_limit"], kept["max_running"], kept["breaker_force"]) == (
                "5/s",
                2,
                "closed",
            )
            cleared = client.set_type_limits("noop", rate_limit=None, breaker="auto")
            assert (cleared["rate_limit"], cleared["breaker_force"]) == (None, None)
            types = {t["name"]: t for t in client.types()}
            assert types["noop"]["limits"]["max_running"] == 2
            assert client.set_tenant("bravo", submit_rate=3.0)["submit_rate"] == 3.0
            assert [t["name"] for t in client.tenants()] == ["bravo"]
            with pytest.raises(smartq.APIError) as bad:
                client.set_tenant("bravo", max_running=0)
            assert bad.value.status == 422

    await asyncio.to_thread(sync_side)


async def test_a_submit_over_the_rate_waits_its_retry_after_and_makes_one_job(
    url: str, engine: AsyncEngine
) -> None:
    admin_key = await key_of(engine, "ops", scopes=set(), admin=True)
    user_key = (await suite_key(engine)).key
    async with smartq.AsyncClient(url, admin_key) as admin:
        await admin.set_tenant("default", submit_rate=1.0)  # burst: one request

    def submit_twice() -> tuple[float, list[str]]:
        with smartq.Client(url, user_key) as client:
            first = client.submit("noop")
            started = time.monotonic()
            second = client.submit("noop")  # refused once, then retried after Retry-After
            return time.monotonic() - started, [str(first.id), str(second.id)]

    waited, ids = await asyncio.to_thread(submit_twice)
    assert 0.9 <= waited < 5
    assert len(set(ids)) == 2 and await job_count(engine) == 2

    def refused_without_retries() -> smartq.RateLimited:
        with smartq.Client(url, user_key, retry=RetryPolicy(attempts=1)) as client:
            client.submit("noop")  # the token the last second brought (or a 429 below)
            try:
                client.submit("noop")
            except smartq.RateLimited as exc:
                return exc
        raise AssertionError("not refused")

    await asyncio.sleep(1.0)
    refused = await asyncio.to_thread(refused_without_retries)
    assert refused.status == 429 and refused.retry_after is not None
    assert 1 <= refused.retry_after <= 2
    assert refused.detail["quota"] == "submit_rate" and refused.detail["limit"] == 1.0
    assert await job_count(engine) == 3
