"""The SDK's admin methods and its answer to a 429, against the API served by uvicorn on a
loopback port (PostgreSQL and SQLite): both clients set, show, list and reset tenants' quotas
and override a type's limits; a submit over the submit rate waits the ``Retry-After`` and
retries with the same generated idempotency key (one job made); without retries left it raises
:class:`~smartq.errors.RateLimited` with the wait and the server's detail, having written
nothing. Both clients and the CLI delete a finished job and purge by filter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

import smartq
from api.store import jobs
from models.types import utcnow
from smartq.cli import app
from smartq.client import RetryPolicy
from tests.apikeys import key_of, suite_key
from tests.e2e.procs import free_port
from tests.integration.test_sdk import serve_app
from tests.oldjobs import add_job, exists

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


async def test_both_clients_and_the_cli_delete_and_purge_finished_jobs(
    url: str, engine: AsyncEngine
) -> None:
    admin_key = await key_of(engine, "ops", scopes=set(), admin=True)
    user_key = (await suite_key(engine)).key
    async with engine.begin() as conn:
        old = [await add_job(conn, "completed", 3) for _ in range(3)]
        failed = await add_job(conn, "failed", 3, type="flaky")
        waited_on = await add_job(conn, "completed", 3)
        await add_job(conn, "blocked", depends_on=[waited_on])
        young = [await add_job(conn, "completed") for _ in range(2)]
    async with smartq.AsyncClient(url, user_key) as client:
        await client.delete_job(old[0])
        job = await client.job(old[1])
        await job.delete()
        with pytest.raises(smartq.NotFound):
            await client.job(old[1])
        with pytest.raises(smartq.Conflict) as held:
            await client.delete_job(waited_on)
        assert "1 unfinished job depends on it" in held.value.message
        with pytest.raises(smartq.Forbidden):
            await client.purge("completed")
    async with smartq.AsyncClient(url, admin_key) as admin:
        counted = await admin.purge(
            ["completed", "failed"], finished_before=utcnow() - timedelta(days=1), dry_run=True
        )
        assert (counted["matched"], counted["kept"], counted["deleted"]) == (2, 1, 0)

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(app, [*args, "--url", url, "--api-key", admin_key])
        return result

    def sync_side() -> None:
        with smartq.Client(url, user_key) as client:
            client.job(young[0]).delete()
            with pytest.raises(smartq.NotFound):
                client.delete_job(young[0])
        result = cli("purge", "--type", "flaky", "--dry-run")
        assert result.exit_code == 0 and result.stdout == "would delete 1 job(s)\n"
        result = cli("purge", "--finished-before", "1d", "--status", "completed", "-o", "json")
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["deleted"] == 1  # old[2]; waited_on is kept
        result = cli("jobs", "delete", str(young[1]), str(waited_on))
        assert result.exit_code == 1
        assert f"job {young[1]} deleted" in result.stdout
        assert "1 unfinished job depends on it" in result.stderr
        result = cli("purge")
        assert result.exit_code == 2 and "an empty filter" in result.stderr

    await asyncio.to_thread(sync_side)
    async with engine.connect() as conn:
        assert [await exists(conn, j) for j in (*old, *young, failed, waited_on)] == [
            False,
            False,
            False,
            False,
            False,
            True,
            True,
        ]
