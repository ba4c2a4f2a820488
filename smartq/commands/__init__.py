"""The user commands of ``smartq``, on the SDK: submit, watch and inspect jobs and batches
over the API (``--url`` / ``SMARTQ_URL``, ``--api-key`` / ``SMARTQ_API_KEY``). One module per
concept; :mod:`~smartq.commands.output` prints for all of them (``-o json``, plain text off a
terminal) and :mod:`~smartq.commands.session` maps errors to exit codes.

Each module imports the SDK (httpx, websockets) only when its command runs, so the process
commands (``smartq worker`` ...) do not pay for it.
"""

from __future__ import annotations

import typer

from smartq.commands import (
    batches,
    explain,
    jobs,
    logs,
    pauses,
    purge,
    schedules,
    submit,
    tenants,
    types,
    watch,
    workers,
)

PANEL = "Jobs, batches and workers (over the API)"


def register(app: typer.Typer) -> None:
    """Add the user commands to the ``smartq`` app."""
    for name, command in (
        ("submit", submit.submit),
        ("watch", watch.watch),
        ("explain", explain.explain),
        ("logs", logs.logs),
        ("cancel", jobs.cancel),
        ("retry", jobs.retry),
        ("pause", pauses.pause),
        ("resume", pauses.resume),
        ("pauses", pauses.pauses),
        ("purge", purge.purge),
    ):
        app.command(name, rich_help_panel=PANEL)(command)
    for name, group in (
        ("jobs", jobs.app),
        ("batches", batches.app),
        ("workers", workers.app),
        ("types", types.app),
        ("tenants", tenants.app),
        ("schedules", schedules.app),
    ):
        app.add_typer(group, name=name, rich_help_panel=PANEL)
