"""Process entry points: build resources from settings, run one part (or, for ``dev``, all of
them as tasks of one event loop), stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from scheduler.resources import Offer
from smartq import heap
from smartq.broker import Broker, create_broker, declare_shared_queues
from smartq.registry import load_job_modules, registry
from smartq.settings import Settings

if TYPE_CHECKING:  # the worker needs neither; importing them costs it a second at start-up
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


@contextlib.contextmanager
def _signals_after_serve() -> Iterator[None]:
    """uvicorn handles the first SIGINT/SIGTERM itself and raises it again when its server
    returns, so that the default handler ends the process: ``smartq dev`` would then be killed
    (SIGTERM) or cancelled (SIGINT) in the middle of stopping its worker and scheduler, and the
    scheduler would lose the worker's last reports and goodbye. Here that raised-again signal
    is taken as what it is, a request to stop, already under way; a second one from the user
    still ends the process the usual way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    seen: set[int] = set()

    def handler(sig: int, frame: FrameType | None) -> None:
        if sig not in seen:
            seen.add(sig)
            return
        before = previous[signal.Signals(sig)]
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextlib.asynccontextmanager
async def _resources(
    settings: Settings, *, database: bool = True, pre_ping: bool = True
) -> AsyncIterator[tuple[AsyncEngine | None, Broker]]:
    engine = None
    if database:
        from smartq.db import create_async

        engine = create_async(settings.resolved_database_url(), pre_ping=pre_ping)
    broker = create_broker(settings)
    await broker.connect()
    await declare_shared_queues(broker)
    try:
        yield engine, broker
    finally:
        await broker.close()
        if engine is not None:
            await engine.dispose()


async def _until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await run(stop)


def api_server(
    settings: Settings, host: str, port: int, engine: AsyncEngine | None, broker: Broker | None
) -> uvicorn.Server:
    """The API app under uvicorn; ``engine`` and ``broker`` are shared when given (``dev``)."""
    import uvicorn

    from api.app import create_app
    from api.server import ApiServer

    app = create_app(settings, engine=engine, broker=broker)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=int(settings.api_keep_alive_seconds),
        # Stream events are small JSON documents (~170 bytes): per-message deflate saved little
        # and was a fifth of the API's CPU in bench ws (py-spy). A proxy can compress if wanted.
        ws_per_message_deflate=False,
    )
    return ApiServer(config, app)


async def run_api(settings: Settings, host: str, port: int) -> None:
    server = api_server(settings, host, port, None, None)
    heap.freeze()  # modules, routes and models: full collections paused requests ~110 ms
    await server.serve()


async def run_scheduler(settings: Settings) -> None:
    from scheduler.service import SchedulerService

    async with _resources(settings) as (engine, broker):
        assert engine is not None
        await _until_signal(SchedulerService(settings, engine, broker).run)


async def run_worker(
    settings: Settings,
    cpu_units: int | None,
    memory_mb: int | None,
    worker_id: str | None,
    offer: Offer | None = None,
) -> None:
    from worker.service import WorkerService

    load_job_modules(settings.imports)
    async with _resources(settings, database=False) as (_, broker):
        service = WorkerService(
            settings,
            broker,
            registry,
            worker_id=worker_id,
            cpu_units=cpu_units,
            memory_mb=memory_mb,
            offer=offer,
        )
        await _until_signal(service.run)


async def run_logger(settings: Settings) -> None:
    from logger.service import LogStore

    # No round trip before each flush: it was a second transaction per flush, on the path of
    # every job (its report waits for the flush). A flush on a connection the server dropped
    # fails, its messages are redelivered, and SQLAlchemy replaces the pool.
    async with _resources(settings, pre_ping=False) as (engine, broker):
        assert engine is not None
        await _until_signal(LogStore(settings, engine, broker).run)


def _report_death(task: asyncio.Task[None]) -> None:
    """A part of ``smartq dev`` that ends with an error says so at once (the rest goes on; it
    used to die silently until the process stopped)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.critical(
            "the %s stopped with an error; restart smartq dev",
            task.get_name(),
            exc_info=error,
            extra={"action": "dev.part_failed", "part": task.get_name()},
        )


async def run_dev(
    settings: Settings,
    host: str,
    port: int,
    cpu_units: int | None,
    memory_mb: int | None,
    offer: Offer | None = None,
) -> None:
    """API, scheduler, worker and logger in one process, sharing one engine and one broker."""
    from logger.service import LogStore
    from scheduler.service import SchedulerService
    from worker.service import WorkerService

    load_job_modules(settings.imports)
    async with _resources(settings) as (engine, broker):
        assert engine is not None
        stop, stop_worker = asyncio.Event(), asyncio.Event()
        worker = WorkerService(
            settings, broker, registry, cpu_units=cpu_units, memory_mb=memory_mb, offer=offer
        )
        worker_task = asyncio.create_task(worker.run(stop_worker), name="worker")
        parts = {
            "scheduler": SchedulerService(settings, engine, broker).run(stop),
            "logger": LogStore(settings, engine, broker).run(stop),
        }
        tasks = [asyncio.create_task(coro, name=name) for name, coro in parts.items()]
        for task in (worker_task, *tasks):
            task.add_done_callback(_report_death)
        where = (
            "embedded SQLite + in-process broker"
            if settings.embedded_broker
            else "configured servers"
        )
        log.info(
            f"smartq dev on http://{host}:{port} ({where}); dashboard at /ui, docs at /docs",
            extra={"action": "dev.start"},
        )
        try:
            # uvicorn owns SIGINT/SIGTERM here; when it returns, everything else stops too.
            with _signals_after_serve():
                await api_server(settings, host, port, engine, broker).serve()
        finally:
            # The worker first: its hand-backs and goodbye reach the scheduler, which settles
            # them before it stops (the in-process broker keeps nothing across a restart).
            stop_worker.set()
            await asyncio.gather(worker_task, return_exceptions=True)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
