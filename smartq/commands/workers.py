"""``smartq workers ls``: each worker's state and what it holds of its capacity (bars), its
running jobs, its types and its last heartbeat. The fleet is every tenant's: it needs a key
with the ``monitor`` scope (or an admin's). ``drain``, ``resume`` and ``resize`` change a
worker (admin keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from models.enums import WorkerState
from smartq.client._core import UNCHANGED
from smartq.commands.output import Bar, Output, OutputFormat, Printer, Styled, age, took
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session

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


WorkerArg = Annotated[str, typer.Argument(help="The worker's id.", show_default=False)]
SizeOpt = Annotated[
    str | None,
    typer.Option(help="A whole number, or none for the worker's own.", show_default=False),
]


@app.command("drain")
def drain(
    worker_id: WorkerArg,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Take nothing new on the worker; what runs there finishes (state draining, then
    drained)."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.drain_worker(worker_id))


@app.command("resume")
def resume(
    worker_id: WorkerArg,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Place on a drained worker again."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.resume_worker(worker_id))


@app.command("resize")
def resize(
    worker_id: WorkerArg,
    cpu_units: SizeOpt = None,
    memory_mb: SizeOpt = None,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Give the worker another size (what runs is never stopped; new placements wait until
    use is under it); none goes back to the size it declares."""
    if cpu_units is None and memory_mb is None:
        raise fail("give --cpu-units, --memory-mb or both", ExitCode.BAD_INPUT)
    with session(url, api_key, output) as s:
        answer = s.client.resize_worker(
            worker_id,
            cpu_units=UNCHANGED if cpu_units is None else _size("--cpu-units", cpu_units),
            memory_mb=UNCHANGED if memory_mb is None else _size("--memory-mb", memory_mb),
        )
        _print(s.out, answer)


def _size(flag: str, text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise fail(f"{flag} takes a whole number from 1, or none, not {text!r}", ExitCode.BAD_INPUT)
    return int(text)


def _print(out: Printer, w: dict[str, Any]) -> None:
    if out.json:
        out.emit(w)
        return
    control = w.get("control") or {}
    declared = ""
    if control.get("cpu_units") or control.get("memory_mb"):
        declared = (
            f" (set by an admin; it declares {control['declared_cpu_units']} cpu_units, "
            f"{control['declared_memory_mb']} memory_mb)"
        )
    out.fields(
        [
            ("id", w["id"]),
            ("state", w["state"]),
            ("size", f"{w['cpu_units']} cpu_units, {w['memory_mb']} memory_mb{declared}"),
            ("in use", f"{w['cpu_in_use']} cpu_units, {w['memory_in_use']} memory_mb"),
            ("running", str(w["running_jobs"])),
        ]
    )


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
