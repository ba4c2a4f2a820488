"""How long a job will run, learned from the runs the scheduler saw end (pure).

**The prediction** of a job's run time, first that applies:

1. the mean of the last :data:`TENANT_WINDOW` (10) successful runs of its type *for its
   tenant* (recent, and one tenant's inputs are often larger than another's; in the
   simulated W3 queue ten predicted starts better than two: 65 % vs 57 % within bounds);
2. the mean of the type's last :data:`TYPE_WINDOW` successful runs, any tenant;
3. ``default`` (``SMARTQ_PREDICTION_DEFAULT_SECONDS``), for a type never seen.

It is capped by the job's ``timeout_seconds`` (the worker ends it there anyway). Only
successful runs teach: a failure may end early (a bad input) or at the timeout, and neither is
how long the work takes.

**A job that overruns** its prediction is never stopped for it: its predicted run grows to
twice the time it has run so far (capped by its timeout), so an estimate that was too short
corrects itself at once instead of promising an end that already passed.

**The spread** (:meth:`Durations.p90`): the 90th percentile of the type's window, shown on
``GET /types``. Predicted starts draw run times from the runs themselves
(:meth:`Durations.runs_of`, :mod:`scheduler.forecast`).

The shell seeds it at a rebuild with the last runs in ``job_attempts`` (:meth:`seed`), so a
standby that takes over predicts like the leader did.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: Runs of a type kept for its mean and percentile.
TYPE_WINDOW = 50
#: Runs of a (type, tenant) kept for the first rule (see the module doc for why not 2).
TENANT_WINDOW = 10
#: Runs of a (type, tenant) needed before forecasts draw from them instead of the type's.
TENANT_DRAWS = 5
#: Distinct (type, tenant) pairs remembered; the oldest are forgotten past this.
MAX_PAIRS = 100_000


@dataclass(frozen=True, slots=True)
class TypeEstimate:
    """What the scheduler predicts for one type, as ``GET /types`` shows it."""

    job_type: str
    seconds: float
    p90_seconds: float
    runs: int


class Durations:
    """Recent successful run times by type and by (type, tenant)."""

    def __init__(self, default: float = 10.0) -> None:
        if default <= 0:
            raise ValueError("the default prediction must be positive")
        self.default = default
        self._by_type: dict[str, deque[float]] = {}
        self._sum: dict[str, float] = {}
        self._by_pair: dict[tuple[str, str], deque[float]] = {}

    def observe(self, job_type: str, tenant: str, seconds: float) -> None:
        """A run of ``job_type`` for ``tenant`` succeeded after ``seconds``."""
        seconds = max(seconds, 0.0)
        window = self._by_type.get(job_type)
        if window is None:
            window = self._by_type[job_type] = deque(maxlen=TYPE_WINDOW)
            self._sum[job_type] = 0.0
        if len(window) == window.maxlen:
            self._sum[job_type] -= window[0]
        window.append(seconds)
        self._sum[job_type] += seconds
        pair = (job_type, tenant)
        recent = self._by_pair.pop(pair, None)  # re-inserted: the dict keeps recency order
        if recent is None:
            recent = deque(maxlen=TENANT_WINDOW)
            if len(self._by_pair) >= MAX_PAIRS:
                del self._by_pair[next(iter(self._by_pair))]
        recent.append(seconds)
        self._by_pair[pair] = recent

    @property
    def runs(self) -> int:
        """How many runs it holds (0: it learned nothing yet)."""
        return sum(len(w) for w in self._by_type.values())

    def seed(self, runs: list[tuple[str, str, float]]) -> None:
        """Runs read at a rebuild, oldest first: (type, tenant, seconds)."""
        for job_type, tenant, seconds in runs:
            self.observe(job_type, tenant, seconds)

    def predict(self, job_type: str, tenant: str, timeout: float | None = None) -> float:
        """The predicted run time of a job of ``job_type`` for ``tenant`` (module doc)."""
        recent = self._by_pair.get((job_type, tenant))
        if recent:
            seconds = sum(recent) / len(recent)
        else:
            window = self._by_type.get(job_type)
            seconds = self._sum[job_type] / len(window) if window else self.default
        return min(seconds, timeout) if timeout is not None else seconds

    def runs_of(self, job_type: str, tenant: str) -> Sequence[float]:
        """The recent runs a job's run time is drawn from (:mod:`scheduler.forecast`): the
        type's (up to :data:`TYPE_WINDOW`), unless the tenant's own runs (at least
        :data:`TENANT_DRAWS`) have a mean more than three standard errors away from the type's —
        then the tenant's. Fewer runs draw a poorer distribution, so they must differ to win
        (in the simulated W3 queue, one tenant, the last ten alone: 73 % / 67 % of starts in
        bounds at 70 % / 90 % load; the type's fifty: 78 % / 70 %). Empty: never seen."""
        window = self._by_type.get(job_type)
        if not window:
            return ()
        recent = self._by_pair.get((job_type, tenant))
        if recent is None or len(recent) < TENANT_DRAWS:
            return window
        mean = sum(recent) / len(recent)
        spread = math.sqrt(sum((s - mean) ** 2 for s in recent) / (len(recent) - 1))
        if abs(mean - self._sum[job_type] / len(window)) > 3 * spread / math.sqrt(len(recent)):
            return recent
        return window

    def p90(self, job_type: str, tenant: str, timeout: float | None = None) -> float:
        """The 90th percentile of the type's recent runs (at least the prediction)."""
        window = self._by_type.get(job_type)
        seconds = self.predict(job_type, tenant, timeout)
        if window:
            ordered = sorted(window)
            seconds = max(seconds, ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))])
        return min(seconds, timeout) if timeout is not None else seconds

    def estimates(self) -> list[TypeEstimate]:
        """Every type seen, by name."""
        return [
            TypeEstimate(name, self.predict(name, ""), self.p90(name, ""), len(window))
            for name, window in sorted(self._by_type.items())
        ]


def predicted_end(
    started_at: float, predicted: float, now: float, timeout: float | None = None
) -> float:
    """When a job that started at ``started_at`` is predicted to end, seen at ``now``: its
    prediction, or twice its run so far once it overran (capped by its timeout)."""
    end = started_at + predicted
    if now > end:
        end = started_at + 2.0 * (now - started_at)
    if timeout is not None:
        end = min(end, started_at + timeout)
    return max(end, now)
