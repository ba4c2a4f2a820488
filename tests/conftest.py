"""Shared fixtures: per-test databases on PostgreSQL and SQLite, and an API client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from smartq.brokers.memory import InMemoryBroker
from smartq.db import create_async
from smartq.keys import Scope
from smartq.registry import load_job_modules
from smartq.settings import Settings
from tests.apikeys import bearer, key_of, suite_key
from tests.databases import PostgresDatabases, SqliteDatabases

load_job_modules([])

_factories: dict[str, Any] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The multi-host scenarios (marker ``cluster``: root, network namespaces, minutes each)
    run only when asked for by name in ``-m`` (``scripts/cluster faults`` and CI's third stage
    do), so neither ``./scripts/test`` alone nor CI's ``-m slow`` stage picks them up."""
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    kept = [i for i in items if i.get_closest_marker("cluster") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDatabases]:
    dbs = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
    yield dbs
    dbs.close()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases()
    yield dbs
    dbs.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of each kind, dropped after the test."""
    factory: Any = request.getfixturevalue(f"{request.param}_databases")
    url = factory.create()
    yield url
    factory.drop(url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=None,
        auth="on",
        max_payload_bytes=64 * 1024,
        max_batch_jobs=2_000,
        max_request_bytes=4 * 1024 * 1024,
    )


@pytest.fixture
async def memory_broker() -> AsyncIterator[InMemoryBroker]:
    broker = InMemoryBroker()
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def api_app(
    settings: Settings, engine: AsyncEngine, memory_broker: InMemoryBroker
) -> AsyncIterator[FastAPI]:
    """The API app (keys required), with its lifespan run."""
    app = create_app(settings, engine=engine, broker=memory_broker)
    async with app.router.lifespan_context(app):
        yield app


def asgi_client(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://smartq", headers=headers)


@pytest.fixture
async def client(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the API app that presents a key of the tenant ``default`` with every
    scope."""
    key = await suite_key(engine)
    async with asgi_client(api_app, bearer(key.key)) as c:
        yield c


class Tenants:
    """Clients of one app for tenants A and B, and an admin."""

    def __init__(self, app: FastAPI, engine: AsyncEngine) -> None:
        self.app = app
        self.engine = engine
        self.keys: dict[str, str] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}

    async def add(self, name: str, tenant: str, **kw: Any) -> httpx.AsyncClient:
        self.keys[name] = await key_of(self.engine, tenant, **kw)
        self.clients[name] = asgi_client(self.app, bearer(self.keys[name]))
        return self.clients[name]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.aclose()


@pytest.fixture
async def tenants(api_app: FastAPI, engine: AsyncEngine) -> AsyncIterator[Tenants]:
    t = Tenants(api_app, engine)
    await t.add("a", "acme")
    await t.add("b", "bravo")
    await t.add("admin", "ops", scopes=set(), admin=True)
    await t.add("reader", "acme", scopes={Scope.READ})
    yield t
    await t.close()


@pytest.fixture
async def anonymous(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the same app that presents no key (a test adds its own)."""
    async with asgi_client(api_app) as c:
        yield c


import tests.jobs  # noqa: E402,F401  (registers the test job types)
from tests.services import require_rabbitmq  # noqa: E402
from tests.system import System, running_system  # noqa: E402


@pytest.fixture(params=["servers", "embedded"])
async def system(request: pytest.FixtureRequest) -> AsyncIterator[System]:
    """A smartq on PostgreSQL + RabbitMQ ("servers") or SQLite + in-process broker
    ("embedded"); the test starts the parts it needs."""
    kind = request.param
    dbs: Any = request.getfixturevalue(
        "postgres_databases" if kind == "servers" else "sqlite_databases"
    )
    rabbit = require_rabbitmq() if kind == "servers" else None
    marker = request.node.get_closest_marker("system_settings")
    overrides = dict(marker.kwargs) if marker is not None else {}
    url = dbs.create()
    try:
        async with running_system(kind, url, rabbit, **overrides) as sys_:
            yield sys_
    finally:
        dbs.drop(url)
