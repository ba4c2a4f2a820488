"""``smartq types ls``: the job types one can submit, with their defaults, how many live
workers run each (0: its jobs wait until a worker that imports it starts), an admin's override
of its limits and its breaker. ``smartq types set NAME``: that override (admin keys); only
what it names changes, ``none`` clears one (back to the ``@smartq.job`` value)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smartq.commands.output import Output, OutputFormat, Styled, stamp, took
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session

app = typer.Typer(help="Job types: what can run, and where.", no_args_is_help=True)


@app.command("ls")
def ls(url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT) -> None:
    """Job types by name: live workers that run each, their defaults, whether this API knows
    the type (a type only workers offer is listed too)."""
    with session(url, api_key, output) as s:
        types = s.client.types()
        if s.out.json:
            s.out.emit(types)
            return
        rows = [
            [
                t["name"],
                Styled(str(t["workers"]), "green" if t["workers"] else "red"),
                _or_dash(t["cpu_units"]),
                _or_dash(t["memory_mb"]),
                _or_dash(t["max_attempts"]),
                took(t["timeout_seconds"]) if t["timeout_seconds"] else "-",
                "yes" if t["known_to_api"] else "no",
                _override(t.get("limits")),
                _breaker(t.get("breaker")),
            ]
            for t in types
        ]
        columns = ["NAME", "WORKERS", "CPU", "MEMORY MB", "ATTEMPTS", "TIMEOUT", "IN API"]
        s.out.table([*columns, "OVERRIDE", "BREAKER"], rows)


Breaker = Annotated[
    str | None,
    typer.Option(
        help="open: hold it open (nothing of the type runs); closed: hold it closed; auto: "
        "let it decide.",
        show_default=False,
    ),
]


@app.command("set")
def set_limits(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The job type.")],
    rate_limit: Annotated[
        str | None,
        typer.Option(
            help="Dispatches at most, e.g. 5/s, 30/min, 100/h; none: clear it.", show_default=False
        ),
    ] = None,
    max_running: Annotated[
        str | None,
        typer.Option(help="Running jobs at most; none: clear it.", show_default=False),
    ] = None,
    breaker: Breaker = None,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Override a job type's limits (admin keys); what is not named stays as it is."""
    changes: dict[str, Any] = {}
    if rate_limit is not None:
        changes["rate_limit"] = None if _is_none(rate_limit) else rate_limit
    if max_running is not None:
        changes["max_running"] = None if _is_none(max_running) else _count(max_running)
    if breaker is not None:
        if breaker not in ("open", "closed", "auto"):
            raise fail(f"--breaker takes open, closed or auto, not {breaker!r}", ExitCode.BAD_INPUT)
        changes["breaker"] = breaker
    if not changes:
        raise fail("nothing to set: name a limit, e.g. --rate-limit 5/s", ExitCode.BAD_INPUT)
    with session(url, api_key, output) as s:
        limits = s.client.set_type_limits(name, **changes)
        if s.out.json:
            s.out.emit(limits)
            return
        s.out.fields(
            [
                ("type", name),
                ("rate limit", limits["rate_limit"] or "- (the type's own)"),
                ("max running", _or_dash(limits["max_running"])),
                ("breaker", limits["breaker_force"] or "auto"),
                ("updated", stamp(limits["updated_at"])),
            ]
        )


def _is_none(text: str) -> bool:
    return text.strip().lower() == "none"


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        message = f"--max-running takes a whole number or none, not {text!r}"
        raise fail(message, ExitCode.BAD_INPUT) from None


def _override(limits: dict[str, Any] | None) -> str:
    """``5/s, 3 running, forced open`` or ``-``."""
    if not limits:
        return "-"
    parts = [limits["rate_limit"]] if limits["rate_limit"] else []
    if limits["max_running"] is not None:
        parts.append(f"{limits['max_running']} running")
    if limits["breaker_force"]:
        parts.append(f"forced {limits['breaker_force']}")
    return ", ".join(parts) or "-"


def _breaker(breaker: dict[str, Any] | None) -> Styled | str:
    if not breaker:
        return "-"
    style = {"closed": "green", "open": "red"}.get(breaker["state"], "yellow")
    return Styled(breaker["state"] + (" (forced)" if breaker["forced"] else ""), style)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
