"""``PATCH /types/{name}`` and what ``GET /types`` shows of it, on PostgreSQL and on SQLite: admin
keys only, bad values are 422 in the one error shape (rates by ``scheduler.limits.parse_rate``),
only the fields sent change and null clears one, the override is a durable row, and the type
list shows each type's override and its breaker (the row the scheduler stores)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.store.tables import breakers_t, type_limits_t
from models.types import utcnow
from tests.apikeys import bearer
from tests.conftest import asgi_client
from tests.integration.test_tenants import key_of


@pytest.fixture
async def admin(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    key = await key_of(engine, "ops", scopes=set(), admin=True)
    async with asgi_client(api_app, bearer(key)) as c:
        yield c


async def stored(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(type_limits_t))).mappings().all()
    return {r["name"]: dict(r) for r in rows}


def types_by_name(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    return {t["name"]: t for t in answer.json()}


async def test_only_admin_keys_may_patch_a_type(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    answer = await client.patch("/types/noop", json={"rate_limit": "5/s"})
    assert answer.status_code == 403, answer.text
    assert answer.json() == {"error": "this needs an admin key", "detail": None}
    assert await stored(engine) == {}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"rate_limit": "5 per second"}, "rate_limit: Value error, not a rate: '5 per second'"),
        ({"rate_limit": "0/s"}, "rate_limit: Value error, a rate must be more than zero"),
        ({"rate_limit": "5/fortnight"}, "not a rate"),
        ({"rate_limit": 5}, "rate_limit: Input should be a valid string"),
        ({"rate_limit": "1" * 41 + "/s"}, "rate_limit: String should have at most 40"),
        ({"max_running": 0}, "max_running: Input should be greater than or equal to 1"),
        ({"max_running": "3"}, "max_running: Input should be a valid integer"),
        ({"breaker": "half_open"}, "breaker: Input should be 'open', 'closed' or 'auto'"),
        ({"breaker_force": "open"}, "breaker_force: Extra inputs are not permitted"),
    ],
)
async def test_bad_patches_are_422_in_the_one_shape(
    admin: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], says: str
) -> None:
    answer = await admin.patch("/types/noop", json=body)
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"error", "detail"}
    assert says in answer.json()["error"], answer.json()["error"]
    assert await stored(engine) == {}


async def test_only_the_fields_sent_change_and_null_clears_one(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    empty = await admin.patch("/types/noop", json={})
    assert empty.status_code == 200
    assert empty.json() == {
        "rate_limit": None,
        "max_running": None,
        "breaker_force": None,
        "updated_at": None,
    }
    assert await stored(engine) == {}  # nothing to change, nothing written

    first = await admin.patch("/types/noop", json={"rate_limit": " 5/s "})
    assert first.status_code == 200, first.text
    assert first.json()["rate_limit"] == "5/s" and first.json()["max_running"] is None
    second = (await admin.patch("/types/noop", json={"max_running": 3})).json()
    assert (second["rate_limit"], second["max_running"]) == ("5/s", 3)
    assert second["updated_at"] >= first.json()["updated_at"]
    opened = (await admin.patch("/types/noop", json={"breaker": "open"})).json()
    assert (opened["rate_limit"], opened["max_running"], opened["breaker_force"]) == (
        "5/s",
        3,
        "open",
    )
    cleared = (
        await admin.patch("/types/noop", json={"rate_limit": None, "breaker": "closed"})
    ).json()
    assert (cleared["rate_limit"], cleared["max_running"], cleared["breaker_force"]) == (
        None,
        3,
        "closed",
    )
    auto = (await admin.patch("/types/noop", json={"breaker": "auto"})).json()
    assert auto["breaker_force"] is None and auto["max_running"] == 3
    row = (await stored(engine))["noop"]
    assert (row["rate_limit"], row["max_running"], row["breaker_force"]) == (None, 3, None)
    assert row["updated_at"].isoformat().replace("+00:00", "Z") == auto["updated_at"]


async def test_any_type_name_may_be_patched_and_is_listed(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    slash = await admin.patch("/types/reports%2Fdaily", json={"max_running": 1})
    assert slash.status_code == 200, slash.text
    later = await admin.patch("/types/not-deployed-yet", json={"rate_limit": "30/min"})
    assert later.status_code == 200
    assert set(await stored(engine)) == {"reports/daily", "not-deployed-yet"}
    listed = types_by_name(await client.get("/types"))  # any reader sees the overrides
    assert listed["reports/daily"]["limits"]["max_running"] == 1
    future = listed["not-deployed-yet"]
    assert (future["known_to_api"], future["workers"], future["cpu_units"]) == (False, 0, None)
    assert future["limits"]["rate_limit"] == "30/min"
    assert listed["noop"]["limits"] is None and listed["noop"]["breaker"] is None


async def test_get_types_shows_each_types_breaker_as_the_scheduler_left_it(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    now = utcnow()
    async with engine.begin() as conn:  # as the scheduler stores it
        await conn.execute(
            breakers_t.insert(),
            [
                {
                    "job_type": "noop",
                    "state": "open",
                    "opened_at": now,
                    "cooldown_seconds": 30.0,
                    "forced": False,
                    "updated_at": now,
                },
                {
                    "job_type": "sleep",
                    "state": "closed",
                    "opened_at": None,
                    "cooldown_seconds": 30.0,
                    "forced": True,
                    "updated_at": now,
                },
            ],
        )
    await admin.patch("/types/sleep", json={"breaker": "closed"})
    listed = types_by_name(await client.get("/types"))
    noop, sleep = listed["noop"], listed["sleep"]
    assert noop["breaker"] == {
        "state": "open",
        "opened_at": now.isoformat().replace("+00:00", "Z"),
        "forced": False,
    }
    assert noop["limits"] is None and noop["known_to_api"] is True  # the fields kept
    assert {"cpu_units", "memory_mb", "max_attempts", "timeout_seconds", "workers"} <= set(noop)
    assert sleep["breaker"] == {"state": "closed", "opened_at": None, "forced": True}
    assert sleep["limits"]["breaker_force"] == "closed"
