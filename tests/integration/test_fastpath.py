"""``POST /jobs`` served by :mod:`api.fastpath` answers exactly as the FastAPI route does, and
everything the fast path does not take is still answered by the route, in the one error shape
(on PostgreSQL and on SQLite)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from smartq import keystore
from smartq.keys import Scope
from tests.apikeys import bearer
from tests.conftest import asgi_client


def fast_served(app: FastAPI) -> float:
    value = app.state.ctx.metrics.registry.get_sample_value("smartq_api_fast_submits_total")
    assert value is not None
    return float(value)


async def warm(client: httpx.AsyncClient) -> None:
    """A first request verifies the key (a read of its row); from then on the cache knows it."""
    assert (await client.get("/jobs?limit=1")).status_code == 200


async def test_a_plain_submit_takes_the_fast_path_and_answers_as_the_route(
    api_app: FastAPI, client: httpx.AsyncClient
) -> None:
    before = fast_served(api_app)
    slow = await client.post("/jobs", json={"type": "noop", "payload": {"n": 1}})  # key unread
    assert fast_served(api_app) == before
    await warm(client)
    fast = await client.post("/jobs", json={"type": "noop", "payload": {"n": 1}})
    assert fast_served(api_app) == before + 1
    assert slow.status_code == fast.status_code == 201
    a, b = slow.json(), fast.json()
    assert a.keys() == b.keys()
    different = {k for k in a if a[k] != b[k]}
    assert different <= {"id", "created_at", "updated_at"}, different
    stored = (await client.get(f"/jobs/{b['id']}")).json()
    assert stored["status"] in ("pending", "ready", "blocked")
    assert stored["created_by"] == a["created_by"] and stored["payload"] == {"n": 1}


async def test_idempotency_replays_and_conflicts_hold_on_the_fast_path(
    api_app: FastAPI, client: httpx.AsyncClient
) -> None:
    await warm(client)
    before = fast_served(api_app)
    headers = {"Idempotency-Key": "order-7"}
    first = await client.post("/jobs", json={"type": "noop"}, headers=headers)
    again = await client.post("/jobs", json={"type": "noop"}, headers=headers)
    other = await client.post("/jobs", json={"type": "noop", "priority": 9}, headers=headers)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["error"] == "idempotency key already used for a different job"
    assert fast_served(api_app) == before + 3
    assert len((await client.get("/jobs?limit=10")).json()["items"]) == 1


JSON_TYPE = {"Content-Type": "application/json"}
NO_JOB = "00000000-0000-4000-8000-000000000000"
BAD: list[tuple[str, dict[str, Any], int]] = [
    ("not JSON", {"content": b"{nope", "headers": JSON_TYPE}, 422),
    ("no type", {"json": {"payload": {}}}, 422),
    ("an unknown type", {"json": {"type": "no-such-type"}}, 422),
    (
        "a text body",
        {"content": b'{"type":"noop"}', "headers": {"Content-Type": "text/plain"}},
        422,
    ),
    ("a payload over the limit", {"json": {"type": "noop", "payload": {"x": "a" * 70_000}}}, 413),
    ("an unknown dependency", {"json": {"type": "noop", "depends_on": [NO_JOB]}}, 422),
    (
        "differing idempotency keys",
        {"json": {"type": "noop", "idempotency_key": "a"}, "headers": {"Idempotency-Key": "b"}},
        422,
    ),
    (
        "an idempotency key too long",
        {"json": {"type": "noop"}, "headers": {"Idempotency-Key": "k" * 201}},
        422,
    ),
]


@pytest.mark.parametrize(("what", "request_args", "status"), BAD, ids=[b[0] for b in BAD])
async def test_bad_submits_get_the_routes_answer_and_write_nothing(
    client: httpx.AsyncClient, what: str, request_args: dict[str, Any], status: int
) -> None:
    await warm(client)
    response = await client.post("/jobs", **request_args)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"], body
    assert (await client.get("/jobs?limit=1")).json()["items"] == []


async def test_keys_the_fast_path_cannot_vouch_for_go_to_the_route(
    api_app: FastAPI, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with engine.connect() as conn:
        reader = await keystore.create_key(conn, tenant="default", scopes={Scope.READ})
        submitter = await keystore.create_key(conn, tenant="default", scopes={Scope.SUBMIT})
    job = {"type": "noop"}
    assert (await anonymous.post("/jobs", json=job)).status_code == 401
    bad = "sq_0123456789ab_" + "A" * 43
    refused = await anonymous.post("/jobs", json=job, headers=bearer(bad))
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
    async with asgi_client(api_app, bearer(reader.key)) as read_only:
        await read_only.get("/jobs?limit=1")  # cached: still no submit scope
        assert (await read_only.post("/jobs", json=job)).status_code == 403
    async with asgi_client(api_app, bearer(submitter.key)) as submit:
        assert (await submit.post("/jobs", json=job)).status_code == 201  # reads the key
        before = fast_served(api_app)
        assert (await submit.post("/jobs", json=job)).status_code == 201
        assert fast_served(api_app) == before + 1
        # a query string goes to the route, which checks it (another tenant: admins only)
        other = await submit.post("/jobs?tenant=acme", json=job)
        assert other.status_code == 403 and fast_served(api_app) == before + 1
        async with engine.connect() as conn:
            await keystore.revoke_key(conn, submitter.id)
        api_app.state.ctx.keys.forget(submitter.id)  # as a revocation in this process does
        assert (await submit.post("/jobs", json=job)).status_code == 401
