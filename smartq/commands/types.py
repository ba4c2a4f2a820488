"""``smartq types ls``: the job types one can submit, with their defaults, and how many live
workers run each (0: its jobs wait until a worker that imports it starts)."""

from __future__ import annotations

import typer

from smartq.commands.output import Output, OutputFormat, Styled, took
from smartq.commands.session import ApiKey, Url, session

app = typer.Typer(help="Job types: what can run, and where.", no_args_is_help=True)


@app.command("ls")
def ls(url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT) -> None:
    """Job types by name: live workers that run each, their defaults, whether this API knows
    the type (a type only workers offer is listed too)."""
    with session(url, api_key, output) as s:
        types = s.get("/types")
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
            ]
            for t in types
        ]
        columns = ["NAME", "WORKERS", "CPU", "MEMORY MB", "ATTEMPTS", "TIMEOUT", "IN API"]
        s.out.table(columns, rows)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
