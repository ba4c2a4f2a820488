"""API keys on PostgreSQL and on SQLite: the store, the verifier's cache and expiry, and
``/admin/keys`` with its 401/403 matrix (the job routes' matrix: test_tenants.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from models.types import utcnow
from smartq import keystore
from smartq.errors import ConfigurationError, UnknownKey
from smartq.keys import Scope
from smartq.keystore import KeyVerifier, NewKey
from tests.apikeys import bearer, secret_of


async def make_key(
    engine: AsyncEngine,
    *,
    admin: bool = False,
    scopes: frozenset[Scope] = frozenset({Scope.READ}),
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> NewKey:
    async with engine.connect() as conn:
        return await keystore.create_key(
            conn, tenant="acme", scopes=scopes, admin=admin, expires_in=expires_in, now=now
        )


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


# The store and the verifier


async def test_create_list_revoke_and_the_secret_is_never_stored(engine: AsyncEngine) -> None:
    new = await make_key(engine, scopes=frozenset({Scope.SUBMIT, Scope.READ}))
    async with engine.connect() as conn:
        listed = await keystore.list_keys(conn)
        rows = (await conn.exec_driver_sql("SELECT * FROM api_keys")).mappings().all()
    assert [k.id for k in listed] == [new.id]
    assert listed[0].scopes == [Scope.READ, Scope.SUBMIT] and not listed[0].admin
    assert "key" not in listed[0].model_dump()
    secret = secret_of(new.key)
    assert all(secret not in str(v) for v in rows[0].values())
    async with engine.connect() as conn:
        first = await keystore.revoke_key(conn, new.id)
        again = await keystore.revoke_key(conn, new.id)
        assert first.revoked_at is not None and again.revoked_at == first.revoked_at
        with pytest.raises(UnknownKey):
            await keystore.revoke_key(conn, "0123456789ab")


async def test_a_key_needs_a_scope_or_admin_and_a_valid_tenant(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(ConfigurationError, match="at least one scope"):
            await keystore.create_key(conn, tenant="acme", scopes=())
        with pytest.raises(ConfigurationError, match="invalid tenant"):
            await keystore.create_key(conn, tenant="a b", scopes={Scope.READ})
        admin = await keystore.create_key(conn, tenant="ops", scopes=(), admin=True)
        assert await KeyVerifier(0).verify(conn, admin.key) is not None


async def test_verify_gives_the_caller_and_none_for_everything_else(engine: AsyncEngine) -> None:
    good = await make_key(engine, scopes=frozenset({Scope.SUBMIT}))
    key_id = good.id
    verifier = KeyVerifier(0)
    async with engine.connect() as conn:
        caller = await verifier.verify(conn, good.key)
        assert caller is not None
        assert (caller.key_id, caller.tenant, caller.scopes, caller.admin) == (
            key_id,
            "acme",
            frozenset({Scope.SUBMIT}),
            False,
        )
        wrong_secret = good.key[:-4] + ("AAAA" if not good.key.endswith("AAAA") else "BBBB")
        for presented in ("", "nonsense", wrong_secret, f"sq_0123456789ab_{'A' * 43}"):
            assert await verifier.verify(conn, presented) is None
        await keystore.revoke_key(conn, key_id)
        assert await verifier.verify(conn, good.key) is None


async def test_a_revoked_key_works_at_most_for_the_cache_window(engine: AsyncEngine) -> None:
    new = await make_key(engine)
    clock = Clock()
    verifier = KeyVerifier(5, clock)
    async with engine.connect() as conn:
        assert await verifier.verify(conn, new.key) is not None
        await keystore.revoke_key(conn, new.id)  # as another process would: no forget()
        clock.now += timedelta(seconds=4.9)
        assert await verifier.verify(conn, new.key) is not None
        clock.now += timedelta(seconds=0.1)
        assert await verifier.verify(conn, new.key) is None


async def test_the_cache_alone_answers_only_what_verify_would_without_a_read(
    engine: AsyncEngine,
) -> None:
    """``cached`` (the hot submit path's check, no connection) gives the caller only while
    ``verify`` would answer from the cache; otherwise None, and ``verify`` decides."""
    new = await make_key(engine, scopes=frozenset({Scope.SUBMIT}))
    clock = Clock()
    verifier = KeyVerifier(5, clock)
    assert verifier.cached(new.key) is None  # never read: verify must
    async with engine.connect() as conn:
        caller = await verifier.verify(conn, new.key)
    assert caller is not None and verifier.cached(new.key) == caller
    wrong = new.key[:-4] + ("AAAA" if not new.key.endswith("AAAA") else "BBBB")
    assert verifier.cached(wrong) is None and verifier.cached("nonsense") is None
    clock.now += timedelta(seconds=5)  # stale: a revocation elsewhere must be seen
    assert verifier.cached(new.key) is None
    async with engine.connect() as conn:
        await verifier.verify(conn, new.key)
    clock.now += timedelta(seconds=4)
    assert verifier.cached(new.key) == caller
    verifier.forget(new.id)
    assert verifier.cached(new.key) is None


async def test_expiry_holds_to_the_second_even_from_the_cache(engine: AsyncEngine) -> None:
    clock = Clock()
    new = await make_key(engine, expires_in=timedelta(hours=1), now=clock.now)
    verifier = KeyVerifier(5, clock)
    async with engine.connect() as conn:
        clock.now += timedelta(minutes=59, seconds=58)
        assert await verifier.verify(conn, new.key) is not None
        clock.now += timedelta(seconds=2)  # the row is cached; its expiry still counts
        assert await verifier.verify(conn, new.key) is None


async def test_last_used_is_written_at_most_once_a_minute(engine: AsyncEngine) -> None:
    new = await make_key(engine)
    clock = Clock()
    verifier = KeyVerifier(0, clock)
    start = clock.now
    async with engine.connect() as conn:

        async def last_used() -> datetime | None:
            return (await keystore.list_keys(conn))[0].last_used_at

        assert await last_used() is None
        await verifier.verify(conn, new.key)
        assert await last_used() == start
        clock.now += timedelta(seconds=59)
        await verifier.verify(conn, new.key)
        assert await last_used() == start
        clock.now += timedelta(seconds=1)
        await verifier.verify(conn, new.key)
        assert await last_used() == clock.now


# /admin/keys


async def test_admin_creates_lists_and_revokes_over_rest(
    anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    admin = await make_key(engine, admin=True)
    r = await anonymous.post(
        "/admin/keys",
        json={"tenant": "team-b", "scopes": ["read"], "label": "dashboard", "expires": "90d"},
        headers=bearer(admin.key),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith(f"sq_{made['id']}_")
    assert (made["tenant"], made["scopes"], made["admin"]) == ("team-b", ["read"], False)
    lifetime = datetime.fromisoformat(made["expires_at"]) - datetime.fromisoformat(
        made["created_at"]
    )
    assert lifetime == timedelta(days=90)
    listed = await anonymous.get("/admin/keys", headers=bearer(admin.key))
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()] == [admin.id, made["id"]]
    assert made["key"] not in listed.text and admin.key not in listed.text
    assert all(set(k) == set(keystore.KeyInfo.model_fields) for k in listed.json())
    # the new key is a key, and revoking it ends it at once in this process
    assert (await anonymous.get("/admin/keys", headers=bearer(made["key"]))).status_code == 403
    gone = await anonymous.delete(f"/admin/keys/{made['id']}", headers=bearer(admin.key))
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    again = await anonymous.delete(f"/admin/keys/{made['id']}", headers=bearer(admin.key))
    assert again.json()["revoked_at"] == gone.json()["revoked_at"]
    assert (await anonymous.get("/admin/keys", headers=bearer(made["key"]))).status_code == 401
    unknown = await anonymous.delete("/admin/keys/0123456789ab", headers=bearer(admin.key))
    assert unknown.status_code == 404 and unknown.json()["error"] == "no API key '0123456789ab'"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"tenant": "a b"}, "invalid tenant"),
        ({"tenant": "acme", "expires": "soon"}, "duration"),
        ({"tenant": "acme", "expires": "0d"}, "duration"),
        ({"tenant": "acme", "scopes": []}, "at least one scope"),
        ({"tenant": "acme", "scopes": ["write"]}, "scopes"),
        ({"tenant": "acme", "label": "a\nb"}, "invalid label"),
        ({"tenant": "acme", "secret": "mine"}, "secret"),
    ],
)
async def test_bad_create_requests_are_422_and_write_nothing(
    anonymous: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, object], says: str
) -> None:
    admin = await make_key(engine, admin=True)
    r = await anonymous.post("/admin/keys", json=body, headers=bearer(admin.key))
    assert r.status_code == 422, r.text
    assert says in r.json()["error"] and set(r.json()) == {"error", "detail"}
    async with engine.connect() as conn:
        assert [k.id for k in await keystore.list_keys(conn)] == [admin.id]


ADMIN_ROUTES = [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("DELETE", "/admin/keys/x")]


async def _refused_keys(engine: AsyncEngine) -> dict[str, str]:
    """One presented credential per way of being invalid."""
    revoked = await make_key(engine, admin=True)
    async with engine.connect() as conn:
        await keystore.revoke_key(conn, revoked.id)
    past = utcnow() - timedelta(hours=2)
    expired = await make_key(engine, admin=True, expires_in=timedelta(hours=1), now=past)
    real = await make_key(engine, admin=True)
    return {
        "malformed": "not-a-key",
        "unknown": f"sq_0123456789ab_{'A' * 43}",
        "wrong secret": f"sq_{real.id}_{'A' * 43}",
        "revoked": revoked.key,
        "expired": expired.key,
    }


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_every_bad_key_gets_the_same_401(
    anonymous: httpx.AsyncClient, engine: AsyncEngine, method: str, path: str
) -> None:
    answers = []
    for why, presented in (await _refused_keys(engine)).items():
        r = await anonymous.request(method, path, json={"tenant": "x"}, headers=bearer(presented))
        assert r.status_code == 401, (why, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="smartq", error="invalid_token"'
        answers.append(r.json())
    assert all(a == answers[0] for a in answers)
    assert answers[0] == {"error": "invalid API key", "detail": "send Authorization: Bearer <key>"}


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4="])
async def test_no_bearer_key_gets_401_with_a_challenge(
    anonymous: httpx.AsyncClient, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await anonymous.request(method, path, json={"tenant": "x"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="smartq"'
    assert r.json()["error"] == "an API key is required"


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_a_valid_key_that_is_not_admin_gets_403(
    anonymous: httpx.AsyncClient, engine: AsyncEngine, method: str, path: str
) -> None:
    everything = await make_key(engine, scopes=frozenset(Scope))
    r = await anonymous.request(method, path, json={"tenant": "x"}, headers=bearer(everything.key))
    assert r.status_code == 403
    assert r.json() == {"error": "this needs an admin key", "detail": None}
    async with engine.connect() as conn:
        assert len(await keystore.list_keys(conn)) == 1


@pytest.mark.parametrize("param", ["api_key", "token", "access_token", "Authorization", "q"])
@pytest.mark.parametrize("with_header", [True, False])
async def test_a_key_in_the_query_string_is_refused_and_never_logged(
    anonymous: httpx.AsyncClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
    param: str,
    with_header: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await make_key(engine, admin=True)
    headers = bearer(admin.key) if with_header else {}
    r = await anonymous.get("/admin/keys", params={param: admin.key}, headers=headers)
    assert r.status_code == 400
    assert "not accepted in the URL" in r.json()["error"]
    assert admin.key not in r.text
    secret = secret_of(admin.key)
    for record in caplog.records:
        if record.name.startswith(("httpx", "httpcore")):  # the test's own client
            continue
        assert secret not in record.getMessage() and secret not in str(record.__dict__)
    assert any(getattr(rec, "action", None) == "api.key_in_url" for rec in caplog.records)


async def test_admin_routes_are_documented_with_bearer_auth(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `smartq keys create`: `Authorization: Bearer sq_…`.",
    }
    for method in ("get", "post"):
        assert spec["paths"]["/admin/keys"][method]["security"] == [{"ApiKey": []}]
    assert spec["paths"]["/jobs"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
