"""``smartq jobs ls`` / ``jobs show ID`` / ``jobs delete ID...``, and what one does to jobs:
``smartq cancel ID...`` and ``smartq retry ID``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from models.enums import JobStatus
from smartq.commands.output import Output, OutputFormat, age, between, stamp, status_cell, took
from smartq.commands.session import (
    ApiKey,
    ExitCode,
    Session,
    Url,
    describe,
    exit_code,
    fail,
    session,
)
from smartq.errors import APIError, ConfigurationError

JobId = Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The job's id.")]

app = typer.Typer(help="Jobs: list them, show one, delete finished ones.", no_args_is_help=True)


@app.command("ls")
def ls(
    status: Annotated[
        list[JobStatus] | None,
        typer.Option("--status", help="Only jobs in this status (repeatable).", show_default=False),
    ] = None,
    job_type: Annotated[
        str | None, typer.Option("--type", help="Only jobs of this type.", show_default=False)
    ] = None,
    batch: Annotated[
        uuid.UUID | None,
        typer.Option("--batch", help="Only the jobs of this batch.", show_default=False),
    ] = None,
    parent: Annotated[
        uuid.UUID | None,
        typer.Option(
            "--parent", help="Only the jobs this job submitted while it ran.", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only jobs submitted within this long, e.g. 30m, 1h, 2d.", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Jobs, newest first."""
    params = [("status", s.value) for s in status or ()]
    if job_type is not None:
        params.append(("type", job_type))
    if batch is not None:
        params.append(("batch_id", str(batch)))
    if parent is not None:
        params.append(("parent_id", str(parent)))
    if since is not None:
        params.append(("created_after", _since(since).isoformat()))
    with session(url, api_key, output) as s:
        items = s.pages("/jobs", params, limit)
        if s.out.json:
            s.out.emit(items)
            return
        now = datetime.now(UTC)
        rows = [
            [
                j["id"],
                j["name"],
                j["type"],
                status_cell(j["status"]),
                str(j["priority"]),
                f"{j['attempts']}/{j['retry']['max_attempts']}",
                age(j["created_at"], now),
                took(between(j["started_at"], j["finished_at"])),
            ]
            for j in items
        ]
        s.out.table(["ID", "NAME", "TYPE", "STATUS", "PRIORITY", "TRIES", "AGE", "RAN"], rows)


def _since(text: str) -> datetime:
    from smartq.keys import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ConfigurationError as exc:
        raise fail(f"--since: {exc}", ExitCode.BAD_INPUT) from None


@app.command("show")
def show(
    job_id: JobId,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """One job: status, why it waits, progress, attempts, dependencies, result or error."""
    with session(url, api_key, output) as s:
        doc = s.get(f"/jobs/{job_id}")
        if s.out.json:
            s.out.emit(doc)
            return
        s.out.fields(job_fields(doc))


def job_fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """A job document as ``name value`` lines, the ones that say something."""
    retry = doc["retry"]
    pairs = [
        ("id", doc["id"]),
        ("name", f"{doc['name']} (type {doc['type']})"),
        ("status", _status_words(doc)),
    ]
    optional = [
        ("waiting", doc.get("waiting_reason")),
        ("reason", doc.get("status_reason")),
        ("progress", progress_words(doc.get("progress"))),
        ("error", doc.get("error")),
        ("batch", f"{doc['batch_id']} (key {doc.get('key')})" if doc.get("batch_id") else None),
        ("parent", doc.get("parent_id")),
        ("depends on", ", ".join(doc.get("depends_on") or ()) or None),
        ("dependents", ", ".join(doc.get("dependents") or ()) or None),
    ]
    pairs += [(k, v) for k, v in optional if v]
    pairs += [
        ("priority", str(doc["priority"])),
        ("resources", resource_words(doc) + raised(doc)),
        (
            "retry",
            f"{retry['max_attempts']} attempt(s), backoff {retry['initial_delay_seconds']:g}s"
            f" x{retry['backoff_multiplier']:g}",
        ),
        ("timeout", took(doc.get("timeout_seconds")) if doc.get("timeout_seconds") else "none"),
        ("created", stamp(doc["created_at"])),
        ("started", stamp(doc.get("started_at"))),
        ("finished", stamp(doc.get("finished_at"))),
        ("ran", took(between(doc.get("started_at"), doc.get("finished_at")))),
        ("payload", json.dumps(doc.get("payload") or {})),
    ]
    if doc["status"] == JobStatus.COMPLETED:
        pairs.append(("result", json.dumps(doc.get("result"))))
    return pairs


def resource_words(doc: dict[str, Any]) -> str:
    """``2 cpu_units, 512 memory_mb, gpu=1; labels zone=eu``."""
    parts = [f"{doc['cpu_units']} cpu_units", f"{doc['memory_mb']} memory_mb"]
    parts += [f"{name}={n}" for name, n in sorted((doc.get("resources") or {}).items())]
    labels = sorted((doc.get("labels") or {}).items())
    tail = "; labels " + ", ".join(f"{k}={v}" for k, v in labels) if labels else ""
    return ", ".join(parts) + tail


def _status_words(doc: dict[str, Any]) -> str:
    words = f"{doc['status']}, attempt {doc['attempts']} of {doc['retry']['max_attempts']}"
    if doc.get("worker_id"):
        words += f", worker {doc['worker_id']}"
    return words


def progress_words(progress: dict[str, Any] | None) -> str | None:
    """``40% resized 40 of 100 (attempt 1, 3.1s ago)``."""
    if not progress:
        return None
    words = f"{progress['fraction'] * 100:.0f}%"
    if progress.get("message"):
        words += f" {progress['message']}"
    return words + f" (attempt {progress['attempt']}, {age(progress.get('updated_at'))} ago)"


# -- what one does to jobs ----------------------------------------------------------------------


def cancel(
    job_ids: Annotated[list[uuid.UUID], typer.Argument(metavar="ID...", help="Jobs to cancel.")],
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Cancel jobs (and what depends on them).

    A waiting job is cancelled at once with everything downstream; a running one's worker is
    asked to stop it. Exit 1 if any was not found or had already ended."""
    worst = ExitCode.OK
    results: list[dict[str, Any]] = []
    with session(url, api_key, output) as s:
        for job_id in job_ids:
            try:
                answer = s.call("PATCH", f"/jobs/{job_id}/cancel")
            except APIError as exc:
                worst = max(worst, _refused(s, job_id, exc, results))
                continue
            results.append({"job_id": str(job_id), **answer})
            if not s.out.json:
                s.out.line(_cancelled_words(job_id, answer))
        if s.out.json:
            s.out.emit(results)
    raise typer.Exit(worst)


@app.command("delete")
def delete(
    job_ids: Annotated[list[uuid.UUID], typer.Argument(metavar="ID...", help="Jobs to delete.")],
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Delete finished jobs with their attempts, logs and results (the cancel scope).

    Exit 1 if any was not found, is still active, or an unfinished job depends on it."""
    worst = ExitCode.OK
    results: list[dict[str, Any]] = []
    with session(url, api_key, output) as s:
        for job_id in job_ids:
            try:
                s.client.delete_job(job_id)
            except APIError as exc:
                worst = max(worst, _refused(s, job_id, exc, results))
                continue
            results.append({"job_id": str(job_id), "deleted": True})
            if not s.out.json:
                s.out.line(f"job {job_id} deleted")
        if s.out.json:
            s.out.emit(results)
    raise typer.Exit(worst)


def _refused(
    s: Session, job_id: uuid.UUID, exc: APIError, results: list[dict[str, Any]]
) -> ExitCode:
    """A refusal of one of many jobs: said, kept for ``-o json``, and its exit code."""
    from smartq.commands.output import error

    if not 400 <= exc.status < 500 or exc.status in (401, 403):
        raise exc  # not about this job: nothing else will work either
    error(describe(exc, None))
    results.append({"job_id": str(job_id), "error": exc.message, "status": exc.status})
    return exit_code(exc)


def _cancelled_words(job_id: uuid.UUID, answer: dict[str, Any]) -> str:
    if answer.get("pending_worker_stop"):
        return f"job {job_id} is running: its worker was asked to stop it"
    downstream = [c for c in answer.get("cancelled") or () if c != str(job_id)]
    tail = f" (and {len(downstream)} job(s) downstream)" if downstream else ""
    return f"job {job_id} cancelled{tail}"


def retry(
    job_id: JobId,
    with_descendants: Annotated[
        bool,
        typer.Option(
            "--with-descendants", help="Also run again the jobs cancelled because it failed."
        ),
    ] = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Run a failed job again, with a fresh retry budget.

    With --with-descendants, the jobs cancelled because it failed run again too. Exit 1 if
    it has not failed."""
    params = [("with_descendants", "true" if with_descendants else "false")]
    with session(url, api_key, output) as s:
        answer = s.call("POST", f"/jobs/{job_id}/retry", params, repeatable=False)
        if s.out.json:
            s.out.emit(answer)
            return
        others = len(answer.get("resubmitted") or ()) - 1
        tail = f" with {others} job(s) downstream" if others > 0 else ""
        s.out.line(f"job {job_id} runs again{tail}: {answer['job']['status']}")


def raised(doc: dict[str, Any]) -> str:
    """What a kill for memory raised the ask to, after the request (empty: never raised)."""
    if not doc.get("memory_escalated_mb"):
        return ""
    times = doc.get("memory_escalations") or 0
    return f" (raised to {doc['memory_escalated_mb']} after {times} memory kill(s))"
