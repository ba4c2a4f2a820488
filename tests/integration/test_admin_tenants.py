"""``/admin/tenants`` on PostgreSQL and on SQLite: admin keys only (403 for a tenant's key with
every scope), bad bodies and names are 422 in the one error shape, PUT replaces, GET shows what
applies (the row, else the settings' default) with the active jobs, DELETE goes back to the
defaults, and a PUT applies to this process's submits at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.apikeys import bearer
from tests.conftest import asgi_client
from tests.integration.test_tenants import key_of

UNLIMITED = {"max_active_jobs": None, "submit_rate": None, "max_running": None, "weight": 1.0}


@pytest.fixture
async def admin(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    key = await key_of(engine, "ops", scopes=set(), admin=True)
    async with asgi_client(api_app, bearer(key)) as c:
        yield c


@pytest.fixture
async def acme(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(api_app, bearer(await key_of(engine, "acme"))) as c:
        yield c


async def test_only_admin_keys_may_read_or_set_tenants(acme: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("GET", "/admin/tenants", None),
        ("GET", "/admin/tenants/acme", None),
        ("PUT", "/admin/tenants/acme", {"max_active_jobs": 1000}),
        ("DELETE", "/admin/tenants/acme", None),
    ]:
        answer = await acme.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json() == {"error": "this needs an admin key", "detail": None}
    assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 201  # unchanged


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"max_active_jobs": 0}, "max_active_jobs: Input should be greater than or equal to 1"),
        ({"max_running": -3}, "max_running: Input should be greater than or equal to 1"),
        ({"submit_rate": 0}, "submit_rate: Input should be greater than 0"),
        ({"weight": 0.0}, "weight: Input should be greater than 0"),
        ({"weight": 1e9}, "weight: Input should be less than or equal to 10000"),
        ({"max_active_jobs": 10**12}, "max_active_jobs: Input should be less than or equal to"),
        ({"max_active_jobs": "5"}, "max_active_jobs: Input should be a valid integer"),
        ({"max_running": 2.5}, "max_running: Input should be a valid integer"),
        ({"submit_rate": True}, "submit_rate: Input should be a valid number"),
        ({"max_actve_jobs": 5}, "max_actve_jobs: Extra inputs are not permitted"),
    ],
)
async def test_bad_bodies_are_422_in_the_one_shape(
    admin: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    answer = await admin.put("/admin/tenants/acme", json=body)
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"error", "detail"}
    assert says in answer.json()["error"], answer.json()["error"]
    assert (await admin.get("/admin/tenants")).json() == []  # nothing was set


async def test_bad_tenant_names_are_422(admin: httpx.AsyncClient) -> None:
    for name in ("-acme", "ac me", "acme!", "a" * 101):
        answer = await admin.put(f"/admin/tenants/{name}", json={})
        assert answer.status_code == 422, (name, answer.text)
        assert set(answer.json()) == {"error", "detail"}
    named = await admin.get("/admin/tenants/ac me")
    assert named.status_code == 422
    assert named.json()["detail"] == {"tenant": "ac me"}
    assert "invalid tenant 'ac me'" in named.json()["error"]


async def test_put_get_delete_round_trip_with_defaults_and_active_jobs(
    api_app: FastAPI, admin: httpx.AsyncClient, acme: httpx.AsyncClient
) -> None:
    api_app.state.ctx.settings.tenant_max_running = 8  # a default from settings
    for _ in range(2):
        assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 201
    nobody = await admin.get("/admin/tenants/acme")
    assert nobody.status_code == 200
    assert nobody.json() == {
        "name": "acme",
        "max_active_jobs": None,
        "submit_rate": None,
        "max_running": None,
        "weight": None,
        "effective": {**UNLIMITED, "max_running": 8},
        "active_jobs": 2,
        "callback_secret_set": False,
        "updated_at": None,
    }

    put = await admin.put("/admin/tenants/acme", json={"max_active_jobs": 50, "weight": 2})
    assert put.status_code == 200, put.text
    doc = put.json()
    assert (doc["max_active_jobs"], doc["weight"], doc["max_running"]) == (50, 2.0, None)
    assert doc["effective"] == {
        "max_active_jobs": 50,
        "submit_rate": None,
        "max_running": 8,
        "weight": 2.0,
    }
    assert doc["active_jobs"] == 2 and doc["updated_at"] is not None
    assert (await admin.get("/admin/tenants/acme")).json() == doc

    replaced = await admin.put("/admin/tenants/acme", json={"submit_rate": 2.5, "max_running": 1})
    assert replaced.json()["max_active_jobs"] is None  # PUT replaces: left out is the default
    assert replaced.json()["effective"] == {
        "max_active_jobs": None,
        "submit_rate": 2.5,
        "max_running": 1,
        "weight": 1.0,
    }
    await admin.put("/admin/tenants/bravo", json={"weight": 0.5})
    listed = (await admin.get("/admin/tenants")).json()
    assert [(t["name"], t["active_jobs"]) for t in listed] == [("acme", 2), ("bravo", 0)]
    assert listed[0] == replaced.json()

    reset = await admin.delete("/admin/tenants/acme")
    assert reset.status_code == 200
    assert reset.json()["effective"] == {**UNLIMITED, "max_running": 8}
    assert reset.json()["updated_at"] is None
    assert [t["name"] for t in (await admin.get("/admin/tenants")).json()] == ["bravo"]
    assert (await admin.delete("/admin/tenants/acme")).status_code == 200  # again: still fine


async def test_a_put_applies_to_submits_at_once_and_a_delete_lifts_it(
    admin: httpx.AsyncClient, acme: httpx.AsyncClient
) -> None:
    assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 201  # cached now
    await admin.put("/admin/tenants/acme", json={"max_active_jobs": 1})
    over = await acme.post("/jobs", json={"type": "noop"})
    assert over.status_code == 429, over.text
    assert over.json()["detail"]["limit"] == 1
    await admin.put("/admin/tenants/acme", json={"max_active_jobs": 2})
    assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 201
    assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 429
    await admin.delete("/admin/tenants/acme")
    assert (await acme.post("/jobs", json={"type": "noop"})).status_code == 201
    shown = (await admin.get("/admin/tenants/acme")).json()
    assert shown["active_jobs"] == 3
