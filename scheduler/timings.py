"""Where a scheduling pass spends its time, by phase (pure; the service logs a summary).

The service marks the end of each phase of a pass (``decide``: decode and feed the core,
``plan``: the rows to write, ``write``: the pass's one statement or transaction, ``encode``:
dispatches and events built, ``publish``: handed to the publisher, ``ack``: inputs
settled); every ``scheduler_stats_seconds`` it logs the median and 99th percentile of each
phase and of whole passes, then starts afresh. Operators see where latency goes without a
profiler; the benchmarks read the same line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class PassTimings:
    clock: Callable[[], float] = time.perf_counter
    phases: dict[str, list[float]] = field(default_factory=dict)
    _started: float = 0.0
    _last: float = 0.0

    def start(self) -> None:
        self._started = self._last = self.clock()

    def mark(self, phase: str) -> None:
        """The phase that began at the previous mark (or the start) ends now."""
        now = self.clock()
        self.phases.setdefault(phase, []).append(now - self._last)
        self._last = now

    def finish(self) -> None:
        self.phases.setdefault("pass", []).append(self.clock() - self._started)

    def summary(self) -> dict[str, float | int]:
        """Passes counted, and p50/p99 in milliseconds of every phase; then starts afresh."""
        out: dict[str, float | int] = {"passes": len(self.phases.get("pass", []))}
        for phase, values in self.phases.items():
            if values:
                out[f"{phase}_p50_ms"] = round(_percentile(values, 0.5) * 1000, 2)
                out[f"{phase}_p99_ms"] = round(_percentile(values, 0.99) * 1000, 2)
        self.phases = {}
        return out
