"""Figures, targets and the shared command line of the benchmarks.

Every benchmark prints one JSON line: for each figure its median, min and max over the runs,
with the target beside it (``"target": ">= 500"``) and whether the median meets it (``"ok"``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Options:
    quick: bool
    runs: int | None

    def pick(self, full: int, quick: int) -> int:
        """``runs`` when given, else the default of the mode."""
        return self.runs if self.runs is not None else (quick if self.quick else full)


def parse(argv: Sequence[str], name: str) -> Options:
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}")
    parser.add_argument("--quick", action="store_true", help="a smoke version (seconds)")
    parser.add_argument("--runs", type=int, default=None, help="how many runs (median of them)")
    args = parser.parse_args(list(argv))
    return Options(quick=args.quick, runs=args.runs)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def figure(values: Sequence[float], target: str | None = None, digits: int = 4) -> dict[str, Any]:
    """Median/min/max of ``values``, the ``target`` (``">= 500"``) and whether the median
    meets it."""
    out: dict[str, Any] = summary(values, digits)
    if target is not None:
        op, bound = target.split()
        out["target"] = target
        out["ok"] = _OPS[op](out["median"], float(bound))
    return out


def emit(name: str, options: Options, body: dict[str, Any], started: float) -> None:
    """Print the benchmark's one JSON line."""
    line = {"bench": name, "quick": options.quick, **body}
    line["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(line), flush=True)


def run_main(
    name: str, argv: Sequence[str], run: Callable[[Options], Coroutine[Any, Any, dict[str, Any]]]
) -> int:
    """A benchmark's command: parse ``argv``, run it, print its one JSON line."""
    options = parse(argv, name)
    started = time.perf_counter()
    emit(name, options, asyncio.run(run(options)), started)
    return 0
