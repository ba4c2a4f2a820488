"""``smartq submit``: one job (``smartq submit TYPE``) or a DAG from a file (``smartq submit -f
dag.yaml``), then, if asked, wait for it quietly (``--wait``) or watch it live (``--watch``)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scheduler.resources import ResourceSpecError, parse_counts, parse_labels
from smartq.callbacks import EVENT_NAMES
from smartq.commands import dagfile
from smartq.commands.output import Output, OutputFormat
from smartq.commands.session import ApiKey, ExitCode, Session, Url, fail, session
from smartq.errors import ConfigurationError

if TYPE_CHECKING:
    from smartq.client import Job

TypeArg = Annotated[
    str | None,
    typer.Argument(
        metavar="TYPE", help="The job type, e.g. sleep (or give -f FILE).", show_default=False
    ),
]
FileOpt = Annotated[
    str | None,
    typer.Option(
        "--file",
        "-f",
        help="A DAG in YAML or JSON ('-': standard input): a list of jobs with key, type, "
        "payload, depends_on..., or {name: ..., jobs: [...]}.",
        show_default=False,
    ),
]
PayloadOpt = Annotated[
    str | None,
    typer.Option(
        help="The payload: a JSON object, or @FILE holding one (@- for stdin).", show_default=False
    ),
]
PriorityOpt = Annotated[
    str | None,
    typer.Option(help="critical, high, normal, low, or 0-10 (higher first).", show_default=False),
]
CpuOpt = Annotated[int | None, typer.Option(help="cpu_units it holds.", min=1, show_default=False)]
MemOpt = Annotated[int | None, typer.Option(help="memory_mb it holds.", min=1, show_default=False)]
ResourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--resource",
        help="A named resource it needs, NAME=COUNT (repeatable), e.g. gpu=1.",
        show_default=False,
    ),
]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        help="A label its worker must have, NAME=VALUE (repeatable), e.g. zone=eu.",
        show_default=False,
    ),
]
AfterOpt = Annotated[
    list[uuid.UUID] | None,
    typer.Option("--after", help="A job it waits for (repeatable).", show_default=False),
]
AttemptsOpt = Annotated[
    int | None, typer.Option(help="Attempts in all, retries included.", min=1, show_default=False)
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds an attempt may run.", show_default=False)
]
NameOpt = Annotated[
    str | None, typer.Option(help="A name for people (with -f: the batch's).", show_default=False)
]
CallbackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--callback",
        help="With -f: a URL to POST the batch's events to, signed (repeatable).",
        show_default=False,
    ),
]
CallbackEventsOpt = Annotated[
    str,
    typer.Option(help="With --callback: the events, comma separated."),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Wait until it ends; exit 0 if it completed, else 1.")
]
WatchOpt = Annotated[
    bool,
    typer.Option("--watch", help="Watch it live until it ends; exit 0 if it completed, else 1."),
]


def submit(
    job_type: TypeArg = None,
    file: FileOpt = None,
    payload: PayloadOpt = None,
    priority: PriorityOpt = None,
    cpu_units: CpuOpt = None,
    memory_mb: MemOpt = None,
    resource: ResourceOpt = None,
    label: LabelOpt = None,
    after: AfterOpt = None,
    max_attempts: AttemptsOpt = None,
    timeout: TimeoutOpt = None,
    name: NameOpt = None,
    callback: CallbackOpt = None,
    callback_events: CallbackEventsOpt = ",".join(EVENT_NAMES),
    wait: WaitOpt = False,
    watch: WatchOpt = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Submit a job of TYPE, or a DAG from a file (-f).

    Prints what was submitted; with --wait or --watch, exits 0 if it completed (every job of
    the DAG), 1 if any failed or was cancelled."""
    if (job_type is None) == (file is None):
        raise fail("give a job TYPE or -f FILE (one of them)", ExitCode.BAD_INPUT)
    if wait and watch:
        raise fail("--wait or --watch, not both", ExitCode.BAD_INPUT)
    with session(url, api_key, output) as s:  # bad input in it exits 2 too
        if file is not None:
            one_job = {
                "--payload": payload,
                "--priority": priority,
                "--cpu-units": cpu_units,
                "--memory-mb": memory_mb,
                "--resource": resource or None,
                "--label": label or None,
                "--after": after or None,
                "--max-attempts": max_attempts,
                "--timeout": timeout,
            }
            given = [flag for flag, value in one_job.items() if value is not None]
            if given:
                raise ConfigurationError(f"{given[0]} is for one job; with -f put it in the file")
            hooks = [{"url": u, "events": _events(callback_events)} for u in callback or ()]
            dag = dagfile.read(file)
            code = _submit_dag(s, dag, name, hooks, wait=wait, watch=watch)
        else:
            assert job_type is not None
            if callback:
                raise ConfigurationError("--callback is for a batch (-f FILE)")
            options: dict[str, Any] = {
                "priority": _priority(priority),
                "cpu_units": cpu_units,
                "memory_mb": memory_mb,
                "resources": _pairs(parse_counts, resource),
                "labels": _pairs(parse_labels, label),
                "retry": max_attempts,
                "timeout_seconds": timeout,
                "name": name,
            }
            job = s.client.submit(job_type, read_payload(payload), depends_on=after, **options)
            code = _after_one(s, job, wait=wait, watch=watch)
    raise typer.Exit(code)


def _pairs(parse: Callable[[list[str]], dict[str, Any]], items: list[str] | None) -> Any:
    """``--resource``/``--label`` values as a mapping (None when not given)."""
    if not items:
        return None
    try:
        return parse(items)
    except ResourceSpecError as error:
        raise ConfigurationError(str(error)) from None


def read_payload(text: str | None) -> dict[str, Any]:
    """``--payload``: a JSON object, or ``@file`` holding one (``@-``: standard input)."""
    if text is None:
        return {}
    source = "--payload"
    if text.startswith("@"):
        path = text[1:]
        source = path
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigurationError(f"cannot read the payload file {path}: {reason}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(
            f"{source}: the payload must be a JSON object, not {text.strip()[:40]}"
        )
    return doc


def _priority(text: str | None) -> str | int | None:
    """A name as it is, a number as the integer the API takes (it judges both)."""
    if text is None:
        return None
    stripped = text.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


def _after_one(s: Session, job: Job, *, wait: bool, watch: bool) -> ExitCode:
    if watch:
        from smartq.commands.watch import watch_job

        return watch_job(s, job.doc)
    if wait:
        job.wait()
        job.refresh()
    doc = job.doc
    code = _outcome_code(doc["status"]) if wait else ExitCode.OK
    if s.out.json:
        s.out.emit(doc)
        return code
    s.out.line(_one_line(doc), _style(doc["status"]))
    return code


def _one_line(doc: dict[str, Any]) -> str:
    status = doc["status"]
    head = f"job {doc['id']} ({doc['type']})"
    if status == "completed":
        return (
            f"{head} completed after {doc['attempts']} attempt(s): {json.dumps(doc.get('result'))}"
        )
    if status == "failed":
        return f"{head} failed after {doc['attempts']} attempt(s): {doc.get('error')}"
    if status == "cancelled":
        return f"{head} cancelled: {doc.get('status_reason')}"
    return f"{head} submitted: {status}"


def _style(status: str) -> str | None:
    return {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(status)


def _outcome_code(status: str) -> ExitCode:
    return ExitCode.OK if status == "completed" else ExitCode.FAILED


def _events(text: str) -> list[str]:
    """``--callback-events``: known names only (exit 2 for others)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EVENT_NAMES]
    if unknown or not names:
        raise ConfigurationError(
            f"--callback-events: {', '.join(unknown) or 'none given'}; "
            f"known: {', '.join(EVENT_NAMES)}"
        )
    return names


def _submit_dag(
    s: Session,
    dag: dagfile.Dag,
    name: str | None,
    hooks: list[dict[str, Any]],
    *,
    wait: bool,
    watch: bool,
) -> ExitCode:
    batch = s.client.batch(name or dag.name, callbacks=dag.callbacks + hooks)
    for job in dag.jobs:
        batch.add(job.type, job.payload, key=job.key, after=job.depends_on, **job.options)
    batch.submit()
    assert batch.id is not None
    if watch:
        from smartq.commands.watch import watch_batch

        return watch_batch(s, str(batch.id))
    if wait:
        from smartq.commands.batches import show_report

        batch.wait()
        return show_report(s, str(batch.id))
    if s.out.json:
        s.out.emit({"batch_id": batch.id, "name": batch.name, "jobs": [j.doc for j in batch.jobs]})
        return ExitCode.OK
    s.out.line(f"batch {batch.id} submitted: {len(batch.jobs)} job(s)")
    keys = {str(j.id): j.key for j in batch.jobs}
    rows = [[j.key or "-", str(j.id), j.type, _deps(j.doc, keys)] for j in batch.jobs]
    s.out.table(["KEY", "ID", "TYPE", "DEPENDS ON"], rows)
    return ExitCode.OK


def _deps(doc: dict[str, Any], keys: dict[str, str | None]) -> str:
    """A job's dependencies by key where they are in the batch, else by id."""
    return ", ".join(keys.get(str(d)) or str(d) for d in doc.get("depends_on") or ()) or "-"
