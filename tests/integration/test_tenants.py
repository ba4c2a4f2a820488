"""Who may do what, on PostgreSQL and on SQLite: every route refuses a request without a key
(found by walking ``app.routes``, so a new route cannot forget it), scopes give 403, another
tenant's objects are as absent as random ids, lists hold only the caller's tenant, dependencies
and idempotency keys stay inside a tenant, and admins see every tenant or ``?tenant=`` one."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from api import store
from api.app import create_app
from api.auth import get_caller
from api.store import jobs
from models.types import utcnow
from smartq import keystore
from smartq.brokers.memory import InMemoryBroker
from smartq.keys import Scope
from smartq.settings import Settings
from tests.apikeys import bearer, key_of
from tests.conftest import Tenants, asgi_client
from tests.system import System
from tests.wsclient import AsgiWebSocket, Closed

#: The only routes anyone may call without a key.
OPEN_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
#: The dashboard's shell and static files: no data in them (everything it shows comes from
#: the routes above, with the reader's key), so they need none.
DASHBOARD_PATHS = {"/ui", "/ui/{path:path}", "/ui/static"}


def _filled(path: str) -> str:
    """``path`` with every parameter given a value of the right shape."""
    return (
        path.replace("{key_id}", "0123456789ab")
        .replace("{job_id}", str(uuid.uuid4()))
        .replace("{batch_id}", str(uuid.uuid4()))
    )


def _guarded(app: FastAPI) -> list[tuple[str, str, BaseRoute]]:
    """Every route of ``app`` (through included routers) but the open ones: (method, path,
    route), method ``WS`` for WebSocket routes."""
    out: list[tuple[str, str, BaseRoute]] = []
    for found in iter_route_contexts(app.routes):
        route, path = found.original_route, found.path
        if path is None or path in OPEN_PATHS | DASHBOARD_PATHS:
            continue
        if isinstance(route, APIWebSocketRoute):
            out.append(("WS", path, route))
        elif isinstance(route, APIRoute):
            out += [(method, path, route) for method in sorted(route.methods)]
        else:
            raise AssertionError(f"a route of unknown kind: {route!r} at {path}")
    return out


def _needs_caller(dependant: Any) -> bool:
    return any(d.call is get_caller or _needs_caller(d) for d in dependant.dependencies)


async def test_every_route_but_health_and_docs_refuses_a_request_without_a_key(
    api_app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    routes = _guarded(api_app)
    assert len(routes) >= 14 and any(m == "WS" for m, _, _ in routes)  # it found the API
    for method, path, route in routes:
        if method == "WS":
            async with AsgiWebSocket(api_app, _filled(path)) as ws:
                with pytest.raises(Closed) as closed:
                    await ws.receive_json(5)  # not one event before the close
            assert closed.value.code == 4401, path
            continue
        assert isinstance(route, APIRoute) and _needs_caller(route.dependant), path
        r = await anonymous.request(method, _filled(path), json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    for path in ("/healthz", "/openapi.json", "/docs", "/ui", "/ui/jobs", "/ui/static/app.css"):
        assert (await anonymous.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    "presented", ["malformed", "unknown", "wrong secret", "revoked", "expired"]
)
async def test_no_bad_or_dead_key_reaches_a_job_route(
    anonymous: httpx.AsyncClient, engine: AsyncEngine, presented: str
) -> None:
    real = await key_of(engine, "acme")
    async with engine.connect() as conn:
        revoked = await keystore.create_key(conn, tenant="acme", scopes={Scope.SUBMIT})
        await keystore.revoke_key(conn, revoked.id)
        expired = await keystore.create_key(
            conn,
            tenant="acme",
            scopes={Scope.SUBMIT},
            expires_in=timedelta(seconds=1),
            now=utcnow() - timedelta(seconds=5),
        )
    key_id = real.split("_")[1]
    keys = {
        "malformed": "sq_nope",
        "unknown": f"sq_0123456789ab_{'A' * 43}",
        "wrong secret": f"sq_{key_id}_{'A' * 43}",
        "revoked": revoked.key,
        "expired": expired.key,
    }
    r = await anonymous.post("/jobs", json={"type": "noop"}, headers=bearer(keys[presented]))
    assert r.status_code == 401
    assert r.json() == {"error": "invalid API key", "detail": "send Authorization: Bearer <key>"}
    assert (await anonymous.get("/jobs", headers=bearer(keys[presented]))).status_code == 401
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(jobs))).scalar() == 0


async def test_a_read_only_key_cannot_submit_cancel_or_see_the_fleet(
    tenants: Tenants, engine: AsyncEngine
) -> None:
    a, reader = tenants.clients["a"], tenants.clients["reader"]
    job = (await a.post("/jobs", json={"type": "noop"})).json()
    for method, path, body in [
        ("POST", "/jobs", {"type": "noop"}),
        ("POST", "/jobs/batch", {"jobs": [{"type": "noop"}]}),
        ("PATCH", f"/jobs/{job['id']}/cancel", None),
        ("POST", f"/jobs/{job['id']}/retry", None),
        ("GET", "/workers", None),
        ("GET", "/metrics", None),
        ("GET", "/admin/keys", None),
    ]:
        r = await reader.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert set(r.json()) == {"error", "detail"}
    assert (await reader.get(f"/jobs/{job['id']}")).json()["status"] == "pending"
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(jobs))).scalar() == 1


async def test_another_tenants_objects_answer_like_random_ids_and_stay_unchanged(
    tenants: Tenants, engine: AsyncEngine
) -> None:
    a, b = tenants.clients["a"], tenants.clients["b"]
    job = (await a.post("/jobs", json={"type": "noop"})).json()
    batch = (await a.post("/jobs/batch", json={"jobs": [{"key": "x", "type": "noop"}]})).json()
    failed = (await a.post("/jobs", json={"type": "noop"})).json()
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == uuid.UUID(failed["id"])).values(status="failed")
        )
    for theirs, random_id in [
        (f"/jobs/{job['id']}", f"/jobs/{uuid.uuid4()}"),
        (f"/jobs/{job['id']}/logs", f"/jobs/{uuid.uuid4()}/logs"),
        (f"/batches/{batch['batch_id']}", f"/batches/{uuid.uuid4()}"),
    ]:
        mine, other = await b.get(theirs), await b.get(random_id)
        assert mine.status_code == other.status_code == 404, theirs
        assert mine.json()["error"].split()[:2] == other.json()["error"].split()[:2]
    cancel = await b.patch(f"/jobs/{job['id']}/cancel")
    retry = await b.post(f"/jobs/{failed['id']}/retry")
    assert cancel.status_code == retry.status_code == 404
    assert (await a.get(f"/jobs/{job['id']}")).json()["status"] == "pending"
    assert (await a.get(f"/jobs/{failed['id']}")).json()["status"] == "failed"
    # and the owner may do what the other could not
    assert (await a.patch(f"/jobs/{job['id']}/cancel")).status_code == 200
    assert (await a.post(f"/jobs/{failed['id']}/retry")).status_code == 200


async def test_lists_hold_only_the_callers_tenant_and_admins_see_all_or_one(
    tenants: Tenants,
) -> None:
    a, b, admin = tenants.clients["a"], tenants.clients["b"], tenants.clients["admin"]
    mine_a = {(await a.post("/jobs", json={"type": "noop"})).json()["id"] for _ in range(3)}
    mine_b = {(await b.post("/jobs", json={"type": "noop"})).json()["id"]}
    for query in ("", "?status=pending", "?type=noop", "?limit=1"):
        listed = {j["id"] for j in (await b.get(f"/jobs{query}")).json()["items"]}
        assert listed <= mine_b and listed, query
    assert {j["id"] for j in (await a.get("/jobs")).json()["items"]} == mine_a
    every = {j["id"] for j in (await admin.get("/jobs")).json()["items"]}
    assert every == mine_a | mine_b
    only_b = (await admin.get("/jobs?tenant=bravo")).json()["items"]
    assert {j["id"] for j in only_b} == mine_b and {j["tenant"] for j in only_b} == {"bravo"}
    assert (await b.get("/jobs?tenant=acme")).status_code == 403
    assert (await b.get("/jobs?tenant=bravo")).status_code == 200
    assert (await admin.get("/jobs?tenant=no%20spaces")).status_code == 422
    # an admin acts in any tenant: it reads and cancels A's job
    job_id = next(iter(mine_a))
    assert (await admin.get(f"/jobs/{job_id}")).json()["tenant"] == "acme"
    assert (await admin.patch(f"/jobs/{job_id}/cancel")).status_code == 200


async def test_depends_on_may_name_only_the_callers_own_jobs(
    tenants: Tenants, engine: AsyncEngine
) -> None:
    a, b = tenants.clients["a"], tenants.clients["b"]
    theirs = (await a.post("/jobs", json={"type": "noop"})).json()["id"]
    one = await b.post("/jobs", json={"type": "noop", "depends_on": [theirs]})
    many = await b.post(
        "/jobs/batch", json={"jobs": [{"key": "x", "type": "noop", "depends_on": [theirs]}]}
    )
    for r in (one, many):
        assert r.status_code == 422, r.text
        assert r.json()["error"] == f"unknown dependencies: {theirs}"
    async with engine.connect() as conn:
        count = select(func.count()).select_from(jobs).where(jobs.c.tenant == "bravo")
        assert (await conn.execute(count)).scalar() == 0
        assert (await conn.execute(select(func.count()).select_from(store.batches))).scalar() == 0
    own = (await b.post("/jobs", json={"type": "noop"})).json()["id"]
    assert (await b.post("/jobs", json={"type": "noop", "depends_on": [own]})).status_code == 201


async def test_idempotency_keys_are_each_tenants_own(tenants: Tenants) -> None:
    a, b = tenants.clients["a"], tenants.clients["b"]
    key = {"Idempotency-Key": "nightly-2026-12-01"}
    first_a = await a.post("/jobs", json={"type": "noop"}, headers=key)
    first_b = await b.post("/jobs", json={"type": "noop"}, headers=key)
    assert first_a.status_code == first_b.status_code == 201
    assert first_a.json()["id"] != first_b.json()["id"]
    again_a = await a.post("/jobs", json={"type": "noop"}, headers=key)
    again_b = await b.post("/jobs", json={"type": "noop"}, headers=key)
    assert (again_a.status_code, again_a.json()["id"]) == (200, first_a.json()["id"])
    assert (again_b.status_code, again_b.json()["id"]) == (200, first_b.json()["id"])
    # a different body under B's key conflicts with B's job, and names B's job only
    clash = await b.post("/jobs", json={"type": "noop", "priority": 9}, headers=key)
    assert clash.status_code == 409 and clash.json()["detail"]["job_id"] == first_b.json()["id"]
    batch = {"jobs": [{"key": "x", "type": "noop"}]}
    bat_a = await a.post("/jobs/batch", json=batch, headers=key)
    bat_b = await b.post("/jobs/batch", json=batch, headers=key)
    assert bat_a.status_code == bat_b.status_code == 201
    assert bat_a.json()["batch_id"] != bat_b.json()["batch_id"]
    replay = await b.post("/jobs/batch", json=batch, headers=key)
    assert (replay.status_code, replay.json()["batch_id"]) == (200, bat_b.json()["batch_id"])


async def test_created_by_is_the_submitting_keys_id(tenants: Tenants) -> None:
    a = tenants.clients["a"]
    job = (await a.post("/jobs", json={"type": "noop", "created_by": "someone-else"})).json()
    assert job["created_by"] == tenants.keys["a"].split("_")[1]
    assert job["tenant"] == "acme"


# The stream


def _ws(tenants: Tenants, who: str | None, query: str = "", **kw: Any) -> AsgiWebSocket:
    headers = bearer(tenants.keys[who]) if who else None
    return AsgiWebSocket(tenants.app, "/jobs/stream", query, headers=headers, **kw)


@pytest.mark.parametrize(
    ("who", "query", "code"),
    [
        (None, "", 4401),
        ("reader", "type=monitoring", 4403),
        ("b", "tenant=acme", 4403),
        ("a", "tenant=no%20spaces", 4400),
    ],
)
async def test_a_stream_refused_sends_nothing_but_its_close(
    tenants: Tenants, who: str | None, query: str, code: int
) -> None:
    async with _ws(tenants, who, query) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json(5)  # the first thing received is the close
    assert closed.value.code == code, closed.value.reason


async def test_a_key_in_the_stream_url_is_refused_and_not_logged(
    tenants: Tenants, caplog: pytest.LogCaptureFixture
) -> None:
    key = tenants.keys["a"]
    async with _ws(tenants, None, f"token={key}") as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json(5)
    assert closed.value.code == 4400 and "URL" in closed.value.reason
    secret = key.split("_", 2)[2]
    assert all(secret not in str(r.__dict__) for r in caplog.records)


async def test_the_browser_subprotocol_authenticates_and_is_not_echoed(tenants: Tenants) -> None:
    protocols = ["smartq", f"smartq.bearer.{tenants.keys['a']}"]
    async with _ws(tenants, None, subprotocols=protocols) as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        assert ws.accepted_subprotocol == "smartq"


async def test_subscribing_to_another_tenants_job_or_batch_closes_4404(tenants: Tenants) -> None:
    a = tenants.clients["a"]
    job = (await a.post("/jobs", json={"type": "noop"})).json()
    batch = (await a.post("/jobs/batch", json={"jobs": [{"type": "noop"}]})).json()
    for query in (f"job_id={job['id']}", f"batch_id={batch['batch_id']}"):
        async with _ws(tenants, "b", query) as ws:
            with pytest.raises(Closed) as closed:
                await ws.receive_json(5)
        assert closed.value.code == 4404, query
    async with _ws(tenants, "b") as ws:  # and by a message on an open stream
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        await ws.send_json({"action": "subscribe", "batch_ids": [batch["batch_id"]]})
        with pytest.raises(Closed) as closed:
            await ws.receive_json(5)
        assert closed.value.code == 4404
    async with _ws(tenants, "a", f"batch_id={batch['batch_id']}") as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        assert (await ws.receive_json())["job_id"] == batch["jobs"][0]["id"]


async def test_revoking_a_key_closes_its_open_streams_within_the_window(
    tenants: Tenants, engine: AsyncEngine
) -> None:
    key_id = tenants.keys["b"].split("_")[1]
    async with _ws(tenants, "b") as ws, _ws(tenants, "a") as other:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        assert (await other.receive_json())["type"] == "stream.subscribed"
        async with engine.connect() as conn:
            await keystore.revoke_key(conn, key_id)
        closed = await ws.closed(timeout=5)
        assert closed.code == 4401 and "revoked" in closed.reason
        assert other.close_code is None  # A's stream is not B's key
    r = await tenants.clients["b"].get("/jobs")  # and at once over HTTP in this process
    assert r.status_code == 401


async def _until(ws: AsgiWebSocket, done: Any, timeout: float = 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(out):
            out.append(await ws.receive_json(timeout))
    return out


def _finals(events: list[dict[str, Any]]) -> set[str]:
    return {
        e["job_id"]
        for e in events
        if e["type"] == "job.status" and e["status"] in ("completed", "failed", "cancelled")
    }


def _monitoring(events: list[dict[str, Any]]) -> bool:
    return any(e["type"].startswith("monitoring.") for e in events)


def _lines(events: list[dict[str, Any]]) -> int:
    """The log lines of the ``log`` jobs ("line i of n") among ``events``."""
    return sum(e["type"] == "job.log" and e["message"].startswith("line ") for e in events)


async def test_an_unfiltered_stream_carries_only_its_tenants_events(system: System) -> None:
    """A runs a DAG that logs while B and a monitor-less reader of A watch everything: B sees
    none of A's statuses or log lines, the reader no monitoring, and each sees its own."""
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    await system.wait_worker("w1")
    t = Tenants(system.app, system.engine)  # type: ignore[arg-type]
    a, b = await t.add("a", "acme"), await t.add("b", "bravo")
    await t.add("reader", "acme", scopes={Scope.READ})
    try:
        offered = {x["name"]: x["workers"] for x in (await a.get("/types")).json()}
        assert offered["log"] == 1 and offered["noop"] == 1  # w1, live
        async with _ws(t, "a") as wa, _ws(t, "b") as wb, _ws(t, "reader") as wr:
            for ws in (wa, wb, wr):
                assert (await ws.receive_json())["type"] == "stream.subscribed"
            dag = {
                "jobs": [
                    {"key": "x", "type": "log", "payload": {"lines": 5}},
                    {"key": "y", "type": "log", "payload": {"lines": 5}, "depends_on": ["x"]},
                    {"key": "z", "type": "noop", "depends_on": ["y"]},
                ]
            }
            theirs = {j["id"] for j in (await a.post("/jobs/batch", json=dag)).json()["jobs"]}
            await _until(
                wa, lambda ev: _finals(ev) >= theirs and _lines(ev) == 10 and _monitoring(ev)
            )
            mine = (await b.post("/jobs", json={"type": "log", "payload": {"lines": 2}})).json()
            seen_b = await _until(wb, lambda ev: mine["id"] in _finals(ev))
            seen_r = await _until(wr, lambda ev: _finals(ev) >= theirs and _lines(ev) == 10)
        jobs_b = {e["job_id"] for e in seen_b if "job_id" in e}
        assert jobs_b == {mine["id"]}, jobs_b & theirs
        assert all(e.get("tenant") in (None, "bravo") for e in seen_b)
        assert not _monitoring(seen_r)
        assert {e["job_id"] for e in seen_r if "job_id" in e} == theirs
    finally:
        await t.close()


async def test_with_auth_off_every_request_is_an_admin_of_the_default_tenant(
    settings: Settings, engine: AsyncEngine, memory_broker: InMemoryBroker
) -> None:
    app = create_app(
        settings.model_copy(update={"auth": "off"}), engine=engine, broker=memory_broker
    )
    async with app.router.lifespan_context(app), asgi_client(app) as open_client:
        acme = await key_of(engine, "acme")
        theirs = await open_client.post("/jobs", json={"type": "noop"}, headers=bearer(acme))
        job = (await open_client.post("/jobs", json={"type": "noop", "created_by": "ci"})).json()
        assert (job["tenant"], job["created_by"]) == ("default", "ci")
        assert theirs.json()["tenant"] == "default"  # a key changes nothing when auth is off
        assert (await open_client.get("/workers")).status_code == 200
        async with AsgiWebSocket(app, "/jobs/stream", f"job_id={job['id']}") as ws:
            assert (await ws.receive_json())["type"] == "stream.subscribed"
        r = await open_client.get("/jobs", params={"api_key": acme})
        assert r.status_code == 400  # still never a key in the URL


async def test_batches_are_listed_newest_first_per_tenant_over_pages(tenants: Tenants) -> None:
    a, b, admin = tenants.clients["a"], tenants.clients["b"], tenants.clients["admin"]
    made = []
    for i in range(5):
        body = {"name": f"run-{i}", "jobs": [{"type": "noop"}, {"type": "noop"}]}
        made.append((await a.post("/jobs/batch", json=body)).json()["batch_id"])
    theirs = (await b.post("/jobs/batch", json={"jobs": [{"type": "noop"}]})).json()["batch_id"]
    seen, cursor = [], None
    while True:
        page = (
            await a.get("/batches", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        seen += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert [s["batch_id"] for s in seen] == made[::-1]
    assert seen[0]["name"] == "run-4" and seen[0]["totals"]["pending"] == 2
    assert seen[0]["job_count"] == 2 and seen[0]["done"] is False
    assert [s["batch_id"] for s in (await b.get("/batches")).json()["items"]] == [theirs]
    every = {s["batch_id"] for s in (await admin.get("/batches")).json()["items"]}
    assert every == {*made, theirs}
    assert (await a.get("/batches?cursor=nonsense")).status_code == 422
    assert (await a.get("/batches?limit=0")).status_code == 422


async def test_types_lists_what_can_be_submitted_and_who_runs_it(tenants: Tenants) -> None:
    types = {t["name"]: t for t in (await tenants.clients["reader"].get("/types")).json()}
    assert {"noop", "sleep", "log", "steps"} <= set(types)
    assert types["noop"]["known_to_api"] is True and types["noop"]["workers"] == 0
