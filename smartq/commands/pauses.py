"""``smartq pause`` / ``smartq resume``: a batch (``--batch ID``, its owner's key with the
``cancel`` scope), a job type (``--type NAME``) or everything (``--all``; admin keys for both);
``smartq pauses``: every pause in force (admin keys)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smartq.commands.output import Output, OutputFormat, Printer, stamp
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session

BatchOpt = Annotated[str | None, typer.Option("--batch", help="A batch's id.", show_default=False)]
TypeOpt = Annotated[str | None, typer.Option("--type", help="A job type.", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Everything (admin keys).")]


def _target(batch: str | None, job_type: str | None, everything: bool) -> tuple[str, str | None]:
    given = [(k, v) for k, v in (("batch", batch), ("type", job_type)) if v] + (
        [("all", None)] if everything else []
    )
    if len(given) != 1:
        raise fail("give one of --batch ID, --type NAME or --all", ExitCode.BAD_INPUT)
    return given[0]


def pause(
    batch: BatchOpt = None,
    job_type: TypeOpt = None,
    everything: AllOpt = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Pause a batch, a job type or everything: nothing new of it starts, what runs
    finishes; its waiting jobs say who paused them and when."""
    kind, name = _target(batch, job_type, everything)
    with session(url, api_key, output) as s:
        _print(s.out, s.client.pause(kind, name))


def resume(
    batch: BatchOpt = None,
    job_type: TypeOpt = None,
    everything: AllOpt = False,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Resume what ``smartq pause`` paused."""
    kind, name = _target(batch, job_type, everything)
    with session(url, api_key, output) as s:
        _print(s.out, s.client.resume(kind, name))


def pauses(url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT) -> None:
    """Every pause in force: what, by which key, since when."""
    with session(url, api_key, output) as s:
        found = s.client.pauses()
        if s.out.json:
            s.out.emit(found)
            return
        rows = [[p["kind"], p["name"], p["paused_by"] or "-", stamp(p["paused_at"])] for p in found]
        s.out.table(["KIND", "NAME", "BY", "SINCE"], rows)


def _print(out: Printer, pause: dict[str, Any]) -> None:
    if out.json:
        out.emit(pause)
        return
    what = "everything" if pause["kind"] == "all" else f"{pause['kind']} {pause['name']}"
    if pause["paused"]:
        out.line(f"paused {what} (by {pause['paused_by'] or '-'}, {stamp(pause['paused_at'])})")
    else:
        out.line(f"resumed {what}")
