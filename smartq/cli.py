"""The ``smartq`` command: one subcommand per process, plus ``dev`` (all in one) and
``migrate``."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from smartq.errors import ConfigurationError, SmartqError
from smartq.settings import Settings, get_settings

app = typer.Typer(
    help="smartq: a dependency- and resource-aware job scheduler.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("smartq")

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)]
Imports = Annotated[
    list[str] | None,
    typer.Option("--import", "-i", help="Module that registers job types (repeatable)."),
]
CpuUnits = Annotated[
    int | None, typer.Option(help="Worker capacity in cpu_units (default: CPU count).", min=1)
]
MemoryMb = Annotated[
    int | None, typer.Option(help="Worker capacity in MB (default: available memory).", min=1)
]


def _settings(imports: list[str] | None = None) -> Settings:
    settings = get_settings()
    if imports:
        settings = settings.model_copy(update={"imports": [*settings.imports, *imports]})
    from smartq import logs

    logs.configure(settings.log_level, settings.log_format)
    return settings


def _run(coro: object) -> None:
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    except SmartqError as exc:
        typer.secho(f"smartq: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (production processes expect this first)."""
    settings = _settings()
    from smartq import migrate as m

    url = settings.resolved_database_url()
    try:
        m.upgrade(url)
    except ConfigurationError as exc:
        typer.secho(f"smartq: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo(f"schema is up to date on {url.split('@')[-1]}")


@app.command()
def api(host: Host = "127.0.0.1", port: Port = 8000, imports: Imports = None) -> None:
    """Serve the REST and WebSocket API."""
    settings = _settings(imports)
    from smartq.runner import run_api

    _run(run_api(settings, host, port))


@app.command()
def scheduler() -> None:
    """Run the scheduler (one active at a time)."""
    settings = _settings()
    from smartq.runner import run_scheduler

    _run(run_scheduler(settings))


@app.command()
def worker(
    imports: Imports = None,
    cpu_units: CpuUnits = None,
    memory_mb: MemoryMb = None,
    worker_id: Annotated[str | None, typer.Option(help="Stable id of this worker.")] = None,
) -> None:
    """Run a worker that executes jobs of the registered types."""
    settings = _settings(imports)
    from smartq.runner import run_worker

    _run(run_worker(settings, cpu_units, memory_mb, worker_id))


@app.command(name="logger")
def logger_cmd() -> None:
    """Store job log lines from the broker in the database."""
    settings = _settings()
    from smartq.runner import run_logger

    _run(run_logger(settings))


@app.command()
def dev(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    imports: Imports = None,
    cpu_units: CpuUnits = None,
    memory_mb: MemoryMb = None,
) -> None:
    """Everything in one process: migrate, then API, scheduler, worker and logger.

    On the embedded default (SQLite file + in-process broker) unless SMARTQ_DATABASE_URL and
    SMARTQ_BROKER_URL point at PostgreSQL and RabbitMQ.
    """
    settings = _settings(imports)
    from smartq import migrate as m
    from smartq.runner import run_dev

    m.upgrade(settings.resolved_database_url())
    _run(run_dev(settings, host, port, cpu_units, memory_mb))


if __name__ == "__main__":
    app()
