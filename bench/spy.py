"""Where the CPU of ``bench dask``'s 5,000-job row goes:
``python -m bench spy [--parts scheduler,worker] [--seconds 20] [--py-spy PATH]``.

A Stack with one worker of 8 CPU units takes 1,000 no-op jobs to warm up, then py-spy records
each named process (``record -f raw``, 100 Hz, idle threads left out) while 5,000 no-op jobs
run, submitted 1,000 at a time. Prints the run's CPU-ms per job of every process and, per
profiled process, the shares of its samples by task (the frame under ``Runner.run``: uvloop's
own C time shows as ``Runner.run`` with nothing under it) and by leaf frame. The raw profiles
are kept in a temporary folder named on stderr. Not in ``bench all`` or ``smoke``: it needs
py-spy and root.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import e2e, figures
from bench.harness import Stack

JOBS = 5_000
LOOP = "Runner.run (asyncio/runners.py)"
UVLOOP = "(uvloop: polling, socket calls, callbacks)"


def frame_name(frame: str) -> str:
    """``fn (…/site-packages/pkg/mod.py:12)`` → ``fn (pkg/mod.py)``."""
    match = re.match(r"(.*) \((.*):\d+\)$", frame)
    if match is None:
        return frame
    name, path = match.groups()
    path = re.sub(r".*/(site-packages|python3\.\d+|bench|wt-[^/]+|main)/", "", path)
    return f"{name} ({path})"


def shares(raw: Path, top: int = 12) -> dict[str, Any]:
    """The samples of a py-spy raw file by task and by leaf frame, in % of all samples."""
    tasks: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";")]
        leaves[frames[-1]] += n
        if LOOP in frames:
            below = frames.index(LOOP) + 1
            tasks[frames[below] if below < len(frames) else UVLOOP] += n
        else:
            tasks[f"(thread) {frames[-1]}"] += n
    pct = 100 / max(total, 1)
    return {
        "samples": total,
        "tasks": {k: round(v * pct, 1) for k, v in tasks.most_common(top)},
        "leaves": {k: round(v * pct, 1) for k, v in leaves.most_common(top)},
    }


def start_spies(
    pyspy: str, pids: dict[str, int], seconds: int, out: Path
) -> list[subprocess.Popen[bytes]]:
    """One ``py-spy record`` a process, each writing ``<out>/<part>.txt``."""
    return [
        subprocess.Popen(
            [
                *(pyspy, "record", "-p", str(pid), "-d", str(seconds), "-f", "raw"),
                *("--nonblocking", "-o", str(out / f"{part}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for part, pid in pids.items()
    ]


async def profile(parts: list[str], seconds: int, pyspy: str, out: Path) -> dict[str, Any]:
    async with Stack(worker_units=8) as stack:
        await e2e.one_run(stack, 1_000, 1_000)
        spies = start_spies(pyspy, {p: stack.procs[p].popen.pid for p in parts}, seconds, out)
        await asyncio.sleep(0.5)
        before = await stack.cpu_now()
        run = await e2e.one_run(stack, JOBS, 1_000)
        after = await stack.cpu_now()
        await asyncio.to_thread(lambda: [spy.wait() for spy in spies])
    cpu = {k: round((v - before.get(k, 0.0)) / JOBS, 3) for k, v in after.items()}
    return {
        "jobs": JOBS,
        "jobs_per_s": round(run["jobs_per_s"]),
        "cpu_ms_per_job": cpu,
        "profiles": {part: shares(out / f"{part}.txt") for part in parts},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench spy")
    parser.add_argument("--parts", default="scheduler,worker,logger,api")
    parser.add_argument("--seconds", type=int, default=20, help="how long py-spy records")
    parser.add_argument("--py-spy", dest="pyspy", default="py-spy")
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="smartq-bench-spy-"))
    print(f"smartq bench: raw profiles in {out}", file=sys.stderr)
    started = time.perf_counter()
    parts = [p for p in args.parts.split(",") if p]
    body = asyncio.run(profile(parts, args.seconds, args.pyspy, out))
    figures.emit("spy", figures.Options(quick=False, runs=1), body, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
