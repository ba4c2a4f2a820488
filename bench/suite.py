"""``python -m bench all [--quick] [--runs N]`` and ``python -m bench smoke``.

``all`` runs each benchmark in its own interpreter (one JSON line each, in order), so a failing
one is reported and the rest still run. ``smoke`` is what CI runs so the harness cannot rot: the
quick version of every workload, with the stack workloads sharing one stack (starting four
processes and migrating a database is most of a quick run), one JSON line each; its figures
only show that the code paths work.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import (
    api,
    auth,
    dags,
    e2e,
    figures,
    latency,
    memory,
    packing,
    placement_real,
    sched_pass,
    spawn,
    ws,
)
from bench.harness import Stack

ORDER = (
    "core",
    "api",
    "batch",
    "e2e",
    "latency",
    "dag1k",
    "chain",
    "dag10k",
    "packing",
    "placement-real",
    "pass",
    "pass-flow",
    "fairness",
    "memory",
    "escalation",
    "spawn",
    "ws",
    "auth",
    "sdk",
    "fleet",
)


def run_all(extra: list[str], timeout: float, only: tuple[str, ...] = ORDER) -> int:
    failed = 0
    for name in only:
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench", name, *extra],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            ok = done.returncode == 0
            line = done.stdout.strip().splitlines()[-1] if ok and done.stdout.strip() else ""
            error = "" if ok else done.stderr.strip()[-1500:]
        except subprocess.TimeoutExpired:
            ok, line, error = False, "", f"timed out after {timeout}s"
        if ok and line:
            print(line, flush=True)
        else:
            failed += 1
            seconds = round(time.perf_counter() - t0, 1)
            print(json.dumps({"bench": name, "error": error, "bench_seconds": seconds}), flush=True)
    return 1 if failed else 0


def main_all(argv: list[str]) -> int:
    quick = "--quick" in argv
    return run_all(argv, timeout=120 if quick else 1_800)


async def _shared(stack: Stack) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "api": lambda: api.api_run(stack, 100),
        "batch": lambda: e2e.post_batch(stack.http(), e2e.batch_body([{"type": "noop"}] * 500)),
        "e2e": lambda: e2e.one_run(stack, 200, 100),
        "latency": lambda: latency.latency_run(stack, 1.0),
        "dag1k": lambda: dags.dag_run(stack, dags.layered(3, 20, 3, 0)),
        "chain": lambda: dags.dag_run(stack, dags.chain(10)),
        "dag10k": lambda: dags.dag_run(stack, dags.layered(2, 100, 2, 0)),
        "ws": lambda: ws.ws_run(stack, ws.QUICK_CLIENTS, 1.0),
    }


def _line(name: str, started: float, body: dict[str, Any]) -> None:
    figures.emit(name, figures.Options(quick=True, runs=1), {"smoke": True, **body}, started)


async def _smoke() -> int:
    failed = 0
    async with Stack(worker_units=64) as stack:
        for name, work in (await _shared(stack)).items():
            started = time.perf_counter()
            try:
                result = await work()
                _line(name, started, {"result": result if isinstance(result, dict) else "ok"})
            except Exception as exc:
                failed += 1
                _line(name, started, {"error": repr(exc)})
    quick = figures.Options(quick=True, runs=1)
    offline = (
        ("packing", packing.run),
        ("placement-real", placement_real.run),
        ("pass", sched_pass.run),
        ("pass-flow", sched_pass.run_flow),
        ("memory", memory.run),
        ("auth", auth.run),
        ("spawn", spawn.run),
    )
    for name, go in offline:
        started = time.perf_counter()
        try:
            _line(name, started, await go(quick))
        except Exception as exc:
            failed += 1
            _line(name, started, {"error": repr(exc)})
    return failed


def main_smoke(argv: list[str]) -> int:
    """Every workload's quick version in well under 3 minutes (CI)."""
    # escalation and ui start stacks of their own (a small worker, their own job modules; ui
    # drives the system's Chromium, which .ci/run installs); fleet its simulated workers
    # (~17 s).
    failed = run_all(["--quick"], timeout=180, only=("core", "escalation", "ui", "fleet"))
    failed += asyncio.run(_smoke())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main_all(sys.argv[1:]))
