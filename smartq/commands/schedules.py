"""``smartq schedules create|ls|show|pause|resume|rm``: cron schedules over the API. What a
schedule submits is given as a JSON body (``--job '{"type": "noop"}'`` or ``--batch @dag.json``),
the same bodies ``POST /jobs`` and ``POST /jobs/batch`` take."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from smartq.commands.output import Output, OutputFormat, Printer, stamp
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session

app = typer.Typer(
    help="Cron schedules: submit a job or a batch at every tick.", no_args_is_help=True
)

ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="The schedule's id.")]
Body = Annotated[
    str | None, typer.Option(help="A JSON body, or @file holding one.", show_default=False)
]


def _body(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
        doc = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise fail(f"{flag}: not a JSON body: {exc}", ExitCode.BAD_INPUT) from None
    if not isinstance(doc, dict):
        raise fail(f"{flag}: a JSON object is needed", ExitCode.BAD_INPUT)
    return doc


@app.command("create")
def create(
    cron: Annotated[str, typer.Argument(help="5 fields, or 6 with a leading seconds field.")],
    job: Body = None,
    batch: Body = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    name: Annotated[str | None, typer.Option(show_default=False)] = None,
    overlap: Annotated[str, typer.Option(help="skip, allow or cancel_previous.")] = "skip",
    catchup: Annotated[str, typer.Option(help="none, latest or all.")] = "none",
    max_catchup: Annotated[int | None, typer.Option(show_default=False)] = None,
    paused: Annotated[bool, typer.Option(help="Make it paused.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """A schedule that submits --job or --batch at each tick of CRON."""
    if (job is None) == (batch is None):
        raise fail("give exactly one of --job and --batch", ExitCode.BAD_INPUT)
    with session(url, api_key, output) as s:
        made = s.client.create_schedule(
            cron,
            job=_body(job, "--job"),
            batch=_body(batch, "--batch"),
            timezone=timezone,
            name=name,
            overlap=overlap,
            catchup=catchup,
            max_catchup=max_catchup,
            paused=paused,
        )
        _print(s.out, made)


@app.command("ls")
def ls(url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT) -> None:
    """The tenant's schedules, newest first."""
    with session(url, api_key, output) as s:
        found = s.client.schedules()
        if s.out.json:
            s.out.emit(found)
            return
        rows = [
            [
                d["id"],
                d["name"] or "",
                d["cron"],
                d["timezone"],
                "paused" if d["paused"] else stamp(d["next_fire_at"]),
                str(d["runs"]),
                str(d["skipped"]),
            ]
            for d in found
        ]
        s.out.table(["ID", "NAME", "CRON", "ZONE", "NEXT", "RUNS", "SKIPPED"], rows)


@app.command("show")
def show(
    schedule_id: ScheduleId,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """A schedule: its rules, next fire times and what its ticks did."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.schedule(schedule_id))


@app.command("pause")
def pause(
    schedule_id: ScheduleId,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """No tick fires until it is resumed."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.pause_schedule(schedule_id))


@app.command("resume")
def resume(
    schedule_id: ScheduleId,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Fire again from the next tick after now."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.resume_schedule(schedule_id))


@app.command("rm")
def rm(
    schedule_id: ScheduleId,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Delete a schedule; its runs stay."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.delete_schedule(schedule_id))


def _print(out: Printer, doc: dict[str, Any]) -> None:
    if out.json:
        out.emit(doc)
        return
    what = "job " + doc["job"]["type"] if doc["job"] else f"batch of {len(doc['batch']['jobs'])}"
    pairs = [
        ("id", doc["id"]),
        ("name", doc["name"] or ""),
        ("cron", f"{doc['cron']} ({doc['timezone']})"),
        ("submits", what),
        ("overlap", doc["overlap"]),
        ("catchup", f"{doc['catchup']} (at most {doc['max_catchup']})"),
        ("state", "paused" if doc["paused"] else "running"),
        ("next", ", ".join(stamp(t) for t in doc["next_fire_times"]) or "-"),
        ("runs", f"{doc['runs']} (skipped {doc['skipped']})"),
        ("last run", doc["last_job_id"] or doc["last_batch_id"] or "-"),
        ("last skip", doc["last_skip"] or "-"),
    ]
    out.fields(pairs)
