"""``smartq batches ls`` (newest first, with totals) and ``smartq batches show ID``: the batch
report — totals, when it ran, each job with its outcome and duration, the failures with their
errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from smartq.commands.output import (
    Output,
    OutputFormat,
    Styled,
    age,
    between,
    first_line,
    stamp,
    status_cell,
    took,
)
from smartq.commands.session import ApiKey, ExitCode, Session, Url, session

app = typer.Typer(help="Batches (DAGs): list them, show one's report.", no_args_is_help=True)

_FINAL = ("completed", "failed", "cancelled")
Limit = Annotated[int, typer.Option(help="At most this many.", min=1)]


@app.command("ls")
def ls(
    limit: Limit = 50,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Batches, newest first, with their totals by status."""
    with session(url, api_key, output) as s:
        items = s.pages("/batches", [], limit)
        if s.out.json:
            s.out.emit(items)
            return
        now = datetime.now(UTC)
        rows = [
            [
                b["batch_id"],
                b.get("name") or "-",
                str(b["job_count"]),
                _state(b),
                *(str(b["totals"].get(k, 0)) for k in _FINAL),
                str(b["job_count"] - sum(b["totals"].get(k, 0) for k in _FINAL)),
                age(b["created_at"], now),
                took(b.get("duration_seconds")),
            ]
            for b in items
        ]
        columns = ["ID", "NAME", "JOBS", "STATE", "COMPLETED", "FAILED", "CANCELLED", "ACTIVE"]
        s.out.table([*columns, "AGE", "TOOK"], rows)


def _state(batch: dict[str, Any]) -> Styled:
    if not batch["done"]:
        return Styled("running", "cyan")
    if batch["totals"].get("completed", 0) == batch["job_count"]:
        return Styled("succeeded", "green")
    return Styled("failed", "red")


@app.command("show")
def show(
    batch_id: Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The batch's id.")],
    limit: Annotated[
        int, typer.Option(help="Jobs listed at most (the totals count all).", min=1)
    ] = 100,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """A batch's report: totals, start, end, its jobs with their outcome, the failures."""
    with session(url, api_key, output) as s:
        code = show_report(s, str(batch_id), limit)
    raise typer.Exit(code)


def show_report(s: Session, batch_id: str, limit: int = 100) -> ExitCode:
    """Print the report of a batch; OK when every job completed, else FAILED."""
    first = s.get(f"/batches/{batch_id}", [("limit", str(min(limit, 500)))])
    jobs = first["jobs"]
    if first.get("next_cursor") and len(jobs) < limit:
        path, left = f"/batches/{batch_id}", limit - len(jobs)
        jobs += s.pages(path, [], left, key="jobs", cursor=first["next_cursor"])
    succeeded = first["done"] and first["totals"].get("completed", 0) == first["job_count"]
    code = ExitCode.OK if succeeded else ExitCode.FAILED
    if s.out.json:
        s.out.emit({**first, "jobs": jobs[:limit], "next_cursor": None})
        return code
    _say_report(s, first, jobs[:limit])
    return code


def _say_report(s: Session, report: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    out = s.out
    name = f" {report['name']}" if report.get("name") else ""
    out.line(
        f"batch{name} {report['batch_id']}: {report['job_count']} job(s), {_state(report).text}",
        "bold",
    )
    totals = report["totals"]
    out.line("  " + ", ".join(f"{n} {k}" for k, n in totals.items() if n) or "  no jobs")
    out.line(
        f"  started {stamp(report.get('started_at'))}, ended {stamp(report.get('finished_at'))},"
        f" took {took(report.get('duration_seconds'))}"
    )
    if report.get("predicted_finish_at"):
        out.line(
            f"  predicted to finish {stamp(report['predicted_finish_at'])}"
            f" (by {stamp(report.get('predicted_finish_late_at'))} at the 90th percentile)"
        )
    rows = [
        [
            j.get("key") or j["name"],
            j["id"],
            j["type"],
            status_cell(j["status"]),
            str(j["attempts"]),
            took(between(j.get("started_at"), j.get("finished_at"))),
            _note(j),
        ]
        for j in jobs
    ]
    out.table(["KEY", "ID", "TYPE", "STATUS", "TRIES", "RAN", "NOTE"], rows)
    hidden = report["job_count"] - len(jobs)
    if hidden > 0:
        out.line(f"  and {hidden} more job(s) (--limit)")
    for f in report.get("failures") or ():
        who = f"{f.get('key') or f['name']} ({f['id']})"
        out.line(f"failed: {who} after {f['attempts']} attempt(s): {f.get('error')}", "red")


def _note(job: dict[str, Any]) -> str:
    if job["status"] == "failed":
        return first_line(job.get("error"), 80)
    if job["status"] == "cancelled":
        return first_line(job.get("status_reason"), 80)
    return ""


@app.command("cancel")
def cancel(
    batch_id: Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The batch's id.")],
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Stop a batch: its waiting jobs are cancelled, its running ones asked to stop."""
    with session(url, api_key, output) as s:
        answer = s.call("POST", f"/batches/{batch_id}/cancel")
        if s.out.json:
            s.out.emit(answer)
            return
        s.out.line(
            f"batch {batch_id}: {answer['cancelled']} waiting job(s) cancelled, "
            f"{answer['stopping']} running asked to stop"
        )


_DELIVERY_STYLE = {"delivered": "green", "pending": "yellow", "failed": "red", "refused": "red"}


@app.command("deliveries")
def deliveries(
    batch_id: Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The batch's id.")],
    limit: Limit = 500,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """A batch's callback deliveries: each event, its attempts and their status codes, the
    last error and the next retry."""
    with session(url, api_key, output) as s:
        items = s.pages(f"/batches/{batch_id}/deliveries", [], limit)
        if s.out.json:
            s.out.emit(items)
            return
        rows = [
            [
                d["id"],
                d["event"],
                d.get("job_id") or "-",
                d["url"],
                Styled(d["status"], _DELIVERY_STYLE.get(d["status"], "")),
                str(d["attempts"]),
                ",".join(str(h["status_code"] or "-") for h in d["history"]) or "-",
                first_line(d.get("last_error"), 60) or "-",
                stamp(d.get("next_attempt_at")),
            ]
            for d in items
        ]
        columns = ["ID", "EVENT", "JOB", "URL", "STATUS", "TRIES", "CODES", "LAST ERROR", "NEXT"]
        s.out.table(columns, rows)
