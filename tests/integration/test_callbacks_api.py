"""Batch callbacks at the API, on PostgreSQL and on SQLite: what ``POST /jobs/batch`` refuses
(422 in the one shape, nothing written: a bad scheme, a literal blocked address, localhost,
unknown events, too many, no secret to sign with), what it stores, the delivery log's scoping
(another tenant's is a 404), a schedule's batch carrying its callbacks, and the tenant's
secret (admin-set, never shown, kept by a quota reset). Deliveries themselves:
tests/integration/test_callbacks_delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.inserts import batches, callbacks_t
from tests.apikeys import bearer
from tests.conftest import asgi_client
from tests.integration.test_tenants import key_of

HOOK = {"url": "https://hooks.example.com/smartq", "events": ["batch.finished"]}


def batch(*hooks: dict[str, Any]) -> dict[str, Any]:
    return {"jobs": [{"type": "noop"}], "callbacks": list(hooks)}


@pytest.fixture
def signed(api_app: FastAPI) -> None:
    api_app.state.ctx.settings.callback_secret = "the-default-secret-of-the-server"


@pytest.fixture
async def admin(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    key = await key_of(engine, "ops", scopes=set(), admin=True)
    async with asgi_client(api_app, bearer(key)) as c:
        yield c


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        n: int = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        return n


@pytest.mark.parametrize(
    ("hook", "says"),
    [
        ({"url": "ftp://example.com/x", "events": ["batch.finished"]}, "only http and https"),
        ({"url": "http://169.254.169.254/", "events": ["batch.finished"]}, "link-local"),
        ({"url": "http://[::ffff:10.1.2.3]/", "events": ["batch.finished"]}, "private"),
        ({"url": "http://localhost:9/", "events": ["batch.finished"]}, "loopback"),
        ({"url": "http://127.0.0.1:9/", "events": ["batch.finished"]}, "loopback"),
        ({"url": "https://example.com", "events": ["batch.exploded"]}, "callbacks.0.events.0"),
        ({"url": "https://example.com", "events": []}, "callbacks.0.events"),
        ({"url": "", "events": ["batch.finished"]}, "callbacks.0.url"),
        ({"url": "https://example.com", "events": ["job.failed"], "x": 1}, "callbacks.0.x"),
    ],
)
async def test_bad_callbacks_are_422_and_nothing_is_written(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    signed: None,
    hook: dict[str, Any],
    says: str,
) -> None:
    answer = await client.post("/jobs/batch", json=batch(hook))
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"error", "detail"}
    assert says in answer.json()["error"], answer.json()["error"]
    assert await _count(engine, batches) == 0
    assert await _count(engine, callbacks_t) == 0


async def test_too_many_callbacks_and_no_secret_are_422(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    unsigned = await client.post("/jobs/batch", json=batch(HOOK))
    assert unsigned.status_code == 422, unsigned.text
    assert "callbacks need a secret" in unsigned.json()["error"]
    api_app.state.ctx.settings.callback_secret = "the-default-secret-of-the-server"
    many = await client.post("/jobs/batch", json=batch(*[HOOK] * 6))
    assert many.status_code == 422, many.text
    assert "callbacks" in many.json()["error"] and "at most 5" in many.json()["error"]
    assert await _count(engine, batches) == 0


async def test_an_allowed_address_is_accepted_and_the_log_is_scoped(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine, signed: None
) -> None:
    settings = api_app.state.ctx.settings
    settings.callback_allowed_hosts = ["127.0.0.1"]
    local = {"url": "http://127.0.0.1:9/in", "events": ["batch.started", "batch.started"]}
    made = await client.post("/jobs/batch", json=batch(HOOK, local))
    assert made.status_code == 201, made.text
    batch_id = made.json()["batch_id"]
    log = await client.get(f"/batches/{batch_id}/deliveries")
    assert log.status_code == 200, log.text
    doc = log.json()
    assert doc["items"] == [] and doc["next_cursor"] is None
    shown = [(c["url"], c["events"], c["done"]) for c in doc["callbacks"]]
    assert shown == [
        (HOOK["url"], ["batch.finished"], False),
        ("http://127.0.0.1:9/in", ["batch.started"], False),  # each event once
    ]
    async with asgi_client(api_app, bearer(await key_of(engine, "acme"))) as acme:
        other = await acme.get(f"/batches/{batch_id}/deliveries")
    assert other.status_code == 404, other.text
    assert set(other.json()) == {"error", "detail"}
    assert (await client.get(f"/batches/{batch_id}/deliveries?limit=0")).status_code == 422


async def test_a_replayed_batch_keeps_its_callbacks_once(
    client: httpx.AsyncClient, engine: AsyncEngine, signed: None
) -> None:
    headers = {"Idempotency-Key": "nightly-1"}
    first = await client.post("/jobs/batch", json=batch(HOOK), headers=headers)
    again = await client.post("/jobs/batch", json=batch(HOOK), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert await _count(engine, callbacks_t) == 1
    other = await client.post("/jobs/batch", json=batch(), headers=headers)
    assert other.status_code == 409  # the callbacks are part of what the key stands for


async def test_a_schedules_batch_carries_its_callbacks(
    client: httpx.AsyncClient, signed: None
) -> None:
    bad = {"cron": "0 * * * *", "batch": batch({**HOOK, "url": "http://10.0.0.1/"})}
    refused = await client.post("/schedules", json=bad)
    assert refused.status_code == 422 and "private" in refused.json()["error"]
    made = await client.post("/schedules", json={"cron": "0 * * * *", "batch": batch(HOOK)})
    assert made.status_code == 201, made.text
    assert made.json()["batch"]["callbacks"] == [HOOK]


async def test_the_tenant_secret_is_set_never_shown_and_outlives_a_quota_reset(
    api_app: FastAPI, admin: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with asgi_client(api_app, bearer(await key_of(engine, "acme"))) as acme:
        assert (await acme.post("/jobs/batch", json=batch(HOOK))).status_code == 422
        for method in ("PUT", "DELETE"):
            denied = await acme.request(
                method, "/admin/tenants/acme/callback-secret", json={"secret": "x" * 20}
            )
            assert denied.status_code == 403
        short = await admin.put("/admin/tenants/acme/callback-secret", json={"secret": "short"})
        assert short.status_code == 422 and set(short.json()) == {"error", "detail"}
        put = await admin.put(
            "/admin/tenants/acme/callback-secret", json={"secret": "acme-only-secret-123"}
        )
        assert put.status_code == 200, put.text
        assert put.json()["callback_secret_set"] is True
        assert "acme-only-secret-123" not in put.text
        assert "acme-only-secret-123" not in (await admin.get("/admin/tenants")).text
        assert (await acme.post("/jobs/batch", json=batch(HOOK))).status_code == 201
        assert (await client.post("/jobs/batch", json=batch(HOOK))).status_code == 422  # default
        await admin.put("/admin/tenants/acme", json={"max_running": 3})
        reset = await admin.delete("/admin/tenants/acme")
        assert reset.json()["callback_secret_set"] is True
        assert reset.json()["max_running"] is None
        cleared = await admin.delete("/admin/tenants/acme/callback-secret")
        assert cleared.json()["callback_secret_set"] is False
        assert (await acme.post("/jobs/batch", json=batch(HOOK))).status_code == 422
