"""The FastAPI application: ``create_app`` wires settings, database, broker and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from api import errors
from api.admission import Admission
from api.deadline import Deadline
from api.deps import ApiContext
from api.fastpath import SubmitFastPath
from api.hints import SubmitHints
from api.keywatch import KeyWatch
from api.metrics import Metrics
from api.routes import (
    admin_keys,
    admin_tenants,
    batches,
    health,
    jobs,
    logs,
    metrics,
    pauses,
    purge,
    retry,
    schedules,
    stream,
    submissions,
    types,
    workers,
)
from api.stream import StreamHub
from api.ui import install as install_ui
from smartq.broker import Broker, create_broker, declare_shared_queues
from smartq.db import create_async
from smartq.keystore import KeyVerifier
from smartq.registry import Registry, load_job_modules, registry
from smartq.settings import Settings, get_settings

DESCRIPTION = """smartq accepts jobs and DAGs of jobs, and shows their state, history and logs.
Errors are JSON documents `{"error": ..., "detail": ...}`."""


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    broker: Broker | None = None,
    job_registry: Registry | None = None,
) -> FastAPI:
    """An API app. Resources not given are created from the settings at start-up and closed at
    shutdown; resources given (by ``smartq dev`` or tests) belong to the caller."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(settings, engine, broker, job_registry) as ctx:
            app.state.ctx = ctx
            yield

    app = FastAPI(title="smartq", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(SubmitFastPath)  # inside the body limit (the last added is outermost)
    app.add_middleware(errors.BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(Deadline, seconds=settings.api_deadline_seconds)  # outermost
    routers = (
        stream.router,
        submissions.router,
        jobs.router,
        retry.router,
        logs.router,
        batches.router,
        workers.router,
        types.router,
        schedules.router,
        admin_keys.router,
        admin_tenants.router,
        pauses.router,
        purge.router,
    )
    for router in (*routers, metrics.router, health.router):
        app.include_router(router)
    install_ui(app)
    return app


@asynccontextmanager
async def _running(
    settings: Settings,
    engine: AsyncEngine | None,
    broker: Broker | None,
    job_registry: Registry | None,
) -> AsyncIterator[ApiContext]:
    """The API's resources while it serves; those it made itself are closed afterwards."""
    # A request waits this long at most for a connection, then is answered 503 (api.errors)
    # instead of queueing behind an overload it cannot see the end of.
    eng = engine or create_async(
        settings.resolved_database_url(),
        pre_ping=False,
        pool_timeout=settings.api_db_acquire_timeout_seconds,
    )
    brk = broker or create_broker(settings)
    if broker is None:
        await brk.connect()
        await declare_shared_queues(brk)
    if job_registry is None:
        load_job_modules(settings.imports)

    async def publish(routing_key: str, body: bytes) -> None:
        await brk.publish(routing_key, body)

    figures = Metrics()
    hub = StreamHub(
        brk, figures, capacity=settings.stream_buffer, stall_seconds=settings.stream_stall_seconds
    )
    await hub.start()
    hints = SubmitHints(publish, settings.api_hint_linger_seconds)
    hints.start()
    verifier = KeyVerifier(settings.auth_cache_seconds)
    watch = KeyWatch(eng, hub, verifier, settings.auth_stream_check_seconds)
    watch.start()
    try:
        yield ApiContext(
            settings=settings,
            engine=eng,
            registry=job_registry or registry,
            publish=publish,
            broker_ping=brk.ping,
            metrics=figures,
            hub=hub,
            hints=hints,
            keys=verifier,
            admission=Admission(settings),
        )
    finally:
        await watch.stop()
        await hints.stop()
        await hub.stop()
        if broker is None:
            await brk.close()
        if engine is None:
            await eng.dispose()
