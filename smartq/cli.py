"""The ``smartq`` command: one subcommand per process, plus ``dev`` (all in one),
``migrate`` and ``keys``; the user commands (submit, watch, jobs...) are
in :mod:`smartq.commands`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from scheduler.resources import Offer
from smartq import commands
from smartq.commands.output import OutputFormat, plain_table
from smartq.errors import ConfigurationError, SmartqError, UnknownKey
from smartq.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from smartq.keystore import KeyInfo

T = TypeVar("T")

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
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="With SMARTQ_AUTH=off, serve an address other hosts can reach anyway "
        "(anyone who reaches it can do anything).",
    ),
]
CpuUnits = Annotated[
    int | None, typer.Option(help="Worker capacity in cpu_units (default: CPU count).", min=1)
]
MemoryMb = Annotated[
    int | None, typer.Option(help="Worker capacity in MB (default: available memory).", min=1)
]

ResourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--resource",
        help="A named resource this worker offers, NAME=COUNT (repeat, or gpu=2,license=1); "
        "default: SMARTQ_WORKER_RESOURCES.",
    ),
]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        help="A label of this worker, NAME=VALUE (repeat, or zone=eu,disk=ssd); default: "
        "SMARTQ_WORKER_LABELS.",
    ),
]


def _offer(settings: Settings, resources: list[str] | None, labels: list[str] | None) -> Offer:
    """The worker's named resources and labels: the options, else the settings."""
    from scheduler.resources import ResourceSpecError, parse_counts, parse_labels

    try:
        return Offer(
            parse_counts(resources) if resources else dict(settings.worker_resources),
            parse_labels(labels) if labels else dict(settings.worker_labels),
        )
    except ResourceSpecError as error:
        raise typer.BadParameter(str(error)) from error


def _settings(imports: list[str] | None = None) -> Settings:
    settings = get_settings()
    if imports:
        settings = settings.model_copy(update={"imports": [*settings.imports, *imports]})
    from smartq import logs

    logs.configure(settings.log_level, settings.log_format)
    return settings


def _with_auth(settings: Settings, host: str, *, dev: bool, insecure: bool) -> Settings:
    """The settings with the auth mode decided for this process (see :mod:`smartq.authmode`);
    says it at start, as a warning when the API is open. Exits 2 when it must not start."""
    from smartq import authmode

    try:
        mode = authmode.decide(settings.auth, host, dev=dev, insecure=insecure)
    except ConfigurationError as exc:
        typer.secho(f"smartq: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    if mode.required:
        log.info(mode.notice, extra={"action": "api.auth", "auth": "on"})
    else:
        log.warning(mode.notice, extra={"action": "api.auth", "auth": "off"})
    return settings.model_copy(update={"auth": "on" if mode.required else "off"})


def _run(coro: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run a process's main coroutine on the configured event loop until it ends."""
    factory = None
    if event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)
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
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    imports: Imports = None,
    insecure: Insecure = False,
) -> None:
    """Serve the REST and WebSocket API. Every request needs an API key (`smartq keys
    create`) unless SMARTQ_AUTH=off."""
    settings = _with_auth(_settings(imports), host, dev=False, insecure=insecure)
    from smartq.runner import run_api

    _run(run_api(settings, host, port), settings.event_loop)


@app.command()
def scheduler() -> None:
    """Run the scheduler (one active at a time)."""
    settings = _settings()
    from smartq.runner import run_scheduler

    _run(run_scheduler(settings), settings.event_loop)


@app.command()
def worker(
    imports: Imports = None,
    cpu_units: CpuUnits = None,
    memory_mb: MemoryMb = None,
    worker_id: Annotated[str | None, typer.Option(help="Stable id of this worker.")] = None,
    resource: ResourceOpt = None,
    label: LabelOpt = None,
) -> None:
    """Run a worker that executes jobs of the registered types."""
    settings = _settings(imports)
    offer = _offer(settings, resource, label)
    from smartq.runner import run_worker

    _run(run_worker(settings, cpu_units, memory_mb, worker_id, offer), settings.event_loop)


@app.command(name="logger")
def logger_cmd() -> None:
    """Store job log lines from the broker in the database."""
    settings = _settings()
    from smartq.runner import run_logger

    _run(run_logger(settings), settings.event_loop)


@app.command()
def dev(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    imports: Imports = None,
    cpu_units: CpuUnits = None,
    memory_mb: MemoryMb = None,
    insecure: Insecure = False,
    resource: ResourceOpt = None,
    label: LabelOpt = None,
) -> None:
    """Everything in one process: migrate, then API, scheduler, worker and logger.

    On the embedded default (SQLite file + in-process broker) unless SMARTQ_DATABASE_URL and
    SMARTQ_BROKER_URL point at PostgreSQL and RabbitMQ. Bound to loopback it runs open (no
    API key needed) unless SMARTQ_AUTH=on; on any other address it needs keys.
    """
    settings = _with_auth(_settings(imports), host, dev=True, insecure=insecure)
    offer = _offer(settings, resource, label)
    from smartq import migrate as m
    from smartq.runner import run_dev

    m.upgrade(settings.resolved_database_url())
    _run(run_dev(settings, host, port, cpu_units, memory_mb, offer), settings.event_loop)


keys_app = typer.Typer(
    help="API keys: create, list and revoke them, straight in the database "
    "(SMARTQ_DATABASE_URL; default: the embedded SQLite file).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="text or json.")]


def _fail(exc: SmartqError, code: int) -> typer.Exit:
    typer.secho(f"smartq: {exc}", err=True, fg="red")
    return typer.Exit(code)


def _on_database(action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``action`` on a connection to the configured database, its schema brought up to
    date first (as ``dev`` does). Exit codes: 1 for an unknown key, 2 for bad input.

    Logging stays unconfigured: smartq logs to stdout, which here carries only the answer."""
    from smartq import migrate as m
    from smartq.db import create_async

    url = get_settings().resolved_database_url()

    async def run() -> T:
        engine = create_async(url)
        try:
            async with engine.connect() as conn:
                return await action(conn)
        finally:
            await engine.dispose()

    try:
        m.upgrade(url)
        return asyncio.run(run())
    except UnknownKey as exc:
        raise _fail(exc, 1) from None
    except SmartqError as exc:
        raise _fail(exc, 2) from None


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    scope: Annotated[
        str, typer.Option(help="What it may do, comma separated: submit, read, cancel, monitor.")
    ] = "submit,read,cancel",
    admin: Annotated[bool, typer.Option("--admin", help="Every right, on every tenant.")] = False,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d, 12h, 30m (default: none).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="A note for people, e.g. its owner.")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Create a key and print it: this once, it cannot be shown again."""
    from smartq import keys, keystore

    try:
        scopes = keys.parse_scopes(scope)
        expires_in = keys.parse_duration(expires) if expires is not None else None
    except ConfigurationError as exc:
        raise _fail(exc, 2) from None
    new = _on_database(
        lambda conn: keystore.create_key(
            conn, tenant=tenant, scopes=scopes, admin=admin, label=label, expires_in=expires_in
        )
    )
    if output is OutputFormat.JSON:
        typer.echo(new.model_dump_json())
        return
    typer.echo(new.key)
    if sys.stdout.isatty():
        typer.echo(
            f"key {new.id} for tenant {new.tenant}: save it now, it is not shown again", err=True
        )


@keys_app.command("ls")
def keys_ls(output: Output = OutputFormat.TEXT) -> None:
    """Every key (never its secret), oldest first."""
    from smartq import keystore

    infos = _on_database(keystore.list_keys)
    if output is OutputFormat.JSON:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in infos]))
        return
    typer.echo(plain_table([_KEY_COLUMNS, *(_key_row(k) for k in infos)]))


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (see keys ls).")],
    output: Output = OutputFormat.TEXT,
) -> None:
    """Revoke a key; it stops working within SMARTQ_AUTH_CACHE_SECONDS. Revoking it again
    changes nothing; an unknown id exits with 1."""
    from smartq import keystore

    info = _on_database(lambda conn: keystore.revoke_key(conn, key_id))
    if output is OutputFormat.JSON:
        typer.echo(info.model_dump_json())
    else:
        typer.echo(f"revoked {info.id} (since {_when(info.revoked_at)})")


_KEY_COLUMNS = [
    "ID",
    "TENANT",
    "SCOPES",
    "ADMIN",
    "LABEL",
    "CREATED",
    "EXPIRES",
    "LAST USED",
    "REVOKED",
]


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else "-"


def _key_row(k: KeyInfo) -> list[str]:
    return [
        k.id,
        k.tenant,
        ",".join(k.scopes) or "-",
        "yes" if k.admin else "no",
        k.label or "-",
        *(_when(t) for t in (k.created_at, k.expires_at, k.last_used_at, k.revoked_at)),
    ]


commands.register(app)

if __name__ == "__main__":
    app()
