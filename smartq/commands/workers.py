"""``smartq workers ls``: each worker's state and what it holds of its capacity (bars), its
running jobs, its types and its last heartbeat. The fleet is every tenant's: it needs a key
with the ``monitor`` scope (or an admin's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from models.enums import WorkerState
from smartq.commands.output import Bar, Output, OutputFormat, Styled, age, took
from smartq.commands.session import ApiKey, Url, session

app = typer.Typer(help="Workers: their capacity and use.", no_args_is_help=True)

_STATE_STYLES = {"idle": "green", "busy": "cyan", "draining": "yellow", "offline": "dim"}
#: Job types named in a row; the rest are counted.
_TYPES_SHOWN = 4


@app.command("ls")
def ls(
    state: Annotated[
        list[WorkerState] | None,
        typer.Option(
            "--state", help="Only workers in this state (repeatable).", show_default=False
        ),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Workers by id: state, cpu_units and memory_mb in use of their capacity, running
    jobs, job types, last heartbeat, uptime."""
    params = [("state", s.value) for s in state or ()]
    with session(url, api_key, output) as s:
        workers = s.get("/workers", params)
        if s.out.json:
            s.out.emit(workers)
            return
        now = datetime.now(UTC)
        rows = [
            [
                w["id"],
                Styled(w["state"], _STATE_STYLES.get(w["state"], "")),
                Bar(w["cpu_in_use"], w["cpu_units"], width=8),
                Bar(w["memory_in_use"], w["memory_mb"], width=8),
                str(w["running_jobs"])
                + (f" (+{len(w['lingering'])} lingering)" if w.get("lingering") else ""),
                _offer(w),
                _types(w["job_types"]),
                age(w["last_heartbeat"], now),
                took(w["uptime_seconds"]),
            ]
            for w in workers
        ]
        columns = [
            "ID",
            "STATE",
            "CPU",
            "MEMORY MB",
            "RUNNING",
            "OFFERS",
            "TYPES",
            "HEARTBEAT",
            "UPTIME",
        ]
        s.out.table(columns, rows)


def _offer(w: dict[str, Any]) -> str:
    """Named resources as used/total, then labels: ``gpu 1/2 zone=eu``; ``-`` for none."""
    used = w.get("resources_in_use") or {}
    offered = sorted((w.get("resources") or {}).items())
    parts = [f"{name} {used.get(name, 0)}/{n}" for name, n in offered]
    parts += [f"{k}={v}" for k, v in sorted((w.get("labels") or {}).items())]
    return " ".join(parts) or "-"


def _types(names: list[str]) -> str:
    shown = ",".join(sorted(names)[:_TYPES_SHOWN])
    more = len(names) - _TYPES_SHOWN
    return shown + (f" +{more}" if more > 0 else "") if names else "-"
