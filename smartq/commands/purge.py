"""``smartq purge``: an admin deletes finished jobs by filter (``POST /admin/purge``), with
``--dry-run`` to count first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.enums import FINAL_STATUSES, JobStatus
from smartq.commands.output import Output, OutputFormat
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session
from smartq.errors import ConfigurationError

if TYPE_CHECKING:
    from smartq.client.retention import PurgeFilter


def purge(
    finished_before: Annotated[
        str | None,
        typer.Option(
            help="Only jobs that finished before this: an age (30d, 12h) or an ISO time with "
            "a zone.",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        list[JobStatus] | None,
        typer.Option(
            "--status", help="completed, failed or cancelled (repeatable).", show_default=False
        ),
    ] = None,
    job_type: Annotated[
        str | None, typer.Option("--type", help="Only jobs of this type.", show_default=False)
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's jobs.", show_default=False)
    ] = None,
    batch: Annotated[
        uuid.UUID | None, typer.Option("--batch", help="Only this batch.", show_default=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Delete finished jobs by filter, with their attempts, logs and results (admin keys).

    At least one filter is needed. Jobs that something unfinished still depends on are kept
    (and counted as kept)."""
    if any(s not in FINAL_STATUSES for s in status or ()):
        raise fail(
            "--status: only completed, failed or cancelled jobs can be purged", ExitCode.BAD_INPUT
        )
    before = _moment(finished_before) if finished_before is not None else None
    with session(url, api_key, output) as s:
        flt: PurgeFilter = {"dry_run": dry_run}
        for key, value in (("type", job_type), ("tenant", tenant), ("batch_id", batch)):
            if value is not None:
                flt[key] = value  # type: ignore[literal-required]
        if before is not None:
            flt["finished_before"] = before
        answer = s.client.purge([st.value for st in status or ()] or None, **flt)
        if s.out.json:
            s.out.emit(answer)
        else:
            s.out.line(_words(answer))


def _moment(text: str) -> datetime:
    """An age (``30d``: that long ago) or an ISO 8601 time with a zone."""
    from smartq.keys import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ConfigurationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise fail(
            f"--finished-before: {text!r} is neither an age (30d, 12h) nor an ISO time with a "
            "zone (2026-11-01T00:00:00Z)",
            ExitCode.BAD_INPUT,
        )
    return moment


def _words(answer: dict[str, Any]) -> str:
    kept = f"; {answer['kept']} kept (something unfinished needs them)" if answer["kept"] else ""
    if answer["dry_run"]:
        return f"would delete {answer['matched']} job(s){kept}"
    return f"deleted {answer['deleted']} job(s){kept}"
