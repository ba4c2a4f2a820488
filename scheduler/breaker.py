"""A circuit breaker per job type, pure: fed attempt outcomes and the clock, it says whether
jobs of its type may be dispatched now (issue 17; not wired into the pass yet).

* **Closed**: everything is dispatched. Outcomes that say the environment is broken — a
  retryable error, a timeout, a lost attempt — count as failures, successes as successes; a
  permanent error (the job's own input), a cancellation, a requested retry or a job handed
  back by a stopping worker count as nothing, so one tenant's bad payloads cannot open it for
  everyone. With at least ``min_attempts`` counted in the last ``window_seconds`` and a share
  of failures of at least ``failure_ratio``, it opens.
* **Open**: nothing is dispatched (jobs wait, no attempt is used) until ``cooldown`` has
  passed since it opened; then it is half-open.
* **Half-open**: one job is let through as a probe (:meth:`Breaker.dispatched`); nothing more
  until its outcome. Success closes the breaker (and resets the cool-down); a counted failure
  opens it again with the cool-down doubled, up to ``max_cooldown_seconds``; an outcome that
  counts as nothing lets another probe through.
* **Forced** by an admin, open or closed, it stays so whatever happens, until released.

Every change of state is returned as a :class:`Change` for the shell to persist (the state
survives failover: :meth:`Breaker.record` / :meth:`Breaker.restore`) and to publish.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from models.enums import Outcome
from smartq.flowspec import BreakerPolicy

__all__ = ["FAILURES", "Breaker", "BreakerPolicy", "BreakerRecord", "BreakerState", "Change"]

#: Outcomes that say the environment is broken.
FAILURES = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.LOST})


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Change:
    """The breaker of ``job_type`` went from ``before`` to ``after`` at ``at``."""

    job_type: str
    before: BreakerState
    after: BreakerState
    at: float
    why: str


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """What survives a failover (the counting window starts afresh)."""

    state: BreakerState
    opened_at: float | None
    cooldown: float
    forced: bool


class Breaker:
    def __init__(self, job_type: str, policy: BreakerPolicy | None = None) -> None:
        self.job_type = job_type
        self.policy = policy or BreakerPolicy()
        self.state = BreakerState.CLOSED
        self.opened_at: float | None = None
        self.cooldown = self.policy.cooldown_seconds
        self.forced = False
        self.probe: object | None = None  # the job let through while half-open
        self._window: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._failures = 0  # failed ones in the window

    # -- what the pass asks -------------------------------------------------------------
    def may_dispatch(self, now: float) -> tuple[bool, Change | None]:
        """Whether one more job of this type may be dispatched now (and the change to
        half-open, when the cool-down has just ended)."""
        change = None
        if self.state is BreakerState.OPEN and not self.forced and now >= self.probe_at():
            change = self._move(BreakerState.HALF_OPEN, now, "cool-down over: one probe")
        if self.state is BreakerState.CLOSED:
            return True, change
        if self.state is BreakerState.HALF_OPEN:
            return self.probe is None, change
        return False, change

    def dispatched(self, job: object) -> None:
        """A job of this type was dispatched; while half-open it is the probe."""
        if self.state is BreakerState.HALF_OPEN and self.probe is None:
            self.probe = job

    def probe_at(self) -> float:
        """When an open breaker lets a probe through."""
        return (self.opened_at or 0.0) + self.cooldown

    def reason(self, now: float) -> str | None:
        """Why a job of this type waits, or None when the breaker does not hold it."""
        if self.state is BreakerState.CLOSED:
            return None
        since = _clock(self.opened_at or now)
        if self.forced:
            return f"circuit open for type {self.job_type} (forced by an admin) since {since}"
        if self.state is BreakerState.OPEN:
            probe = _clock(self.probe_at())
            return f"circuit open for type {self.job_type} since {since}, probe at {probe}"
        return f"circuit half-open for type {self.job_type} since {since}: a probe job is running"

    # -- what the pass tells it ---------------------------------------------------------
    def finished(self, job: object, outcome: Outcome, now: float) -> Change | None:
        """An attempt of this type ended with ``outcome``."""
        failed = outcome in FAILURES
        counted = failed or outcome is Outcome.SUCCEEDED
        if self.forced:
            return None
        if self.state is BreakerState.HALF_OPEN:
            if job != self.probe:
                return None  # dispatched before it opened: says nothing of the probe
            self.probe = None
            if not counted:
                return None  # another probe goes
            if failed:
                self.cooldown = min(2 * self.cooldown, self.policy.max_cooldown_seconds)
                return self._open(now, "the probe failed")
            self.cooldown = self.policy.cooldown_seconds
            self._clear()
            return self._move(BreakerState.CLOSED, now, "the probe succeeded")
        if not counted or self.state is not BreakerState.CLOSED:
            return None
        window = self._window
        window.append((now, failed))
        self._failures += failed
        while window and window[0][0] <= now - self.policy.window_seconds:
            self._failures -= window.popleft()[1]
        failures = self._failures  # kept with the window: a sum per attempt was O(window)
        if len(window) >= self.policy.min_attempts and failures >= self.policy.failure_ratio * len(
            window
        ):
            why = f"{failures} of the last {len(window)} attempts failed"
            return self._open(now, why)
        return None

    # -- admins and failover -------------------------------------------------------------
    def force(self, state: BreakerState | None, now: float) -> Change | None:
        """Hold it open or closed (``None``: back to counting, closed with an empty window)."""
        if state is BreakerState.HALF_OPEN:
            raise ValueError("a breaker can be forced open or closed, not half-open")
        self.forced = state is not None
        self.probe = None
        self._clear()
        target = state or BreakerState.CLOSED
        if target is BreakerState.OPEN:
            self.opened_at = now
        self.cooldown = self.policy.cooldown_seconds
        why = f"forced {target.value} by an admin" if state else "released by an admin"
        return self._move(target, now, why)

    def record(self) -> BreakerRecord:
        return BreakerRecord(self.state, self.opened_at, self.cooldown, self.forced)

    def restore(self, record: BreakerRecord) -> None:
        """Take over a stored state. A half-open breaker's probe may have run anywhere: it is
        open again with the same cool-down, so exactly one new probe goes."""
        self.state = record.state
        self.opened_at = record.opened_at
        self.cooldown = record.cooldown
        self.forced = record.forced
        self.probe = None
        self._clear()
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN

    # -- moves ---------------------------------------------------------------------------
    def _clear(self) -> None:
        self._window.clear()
        self._failures = 0

    def _open(self, now: float, why: str) -> Change | None:
        self.opened_at = now
        self._clear()
        return self._move(BreakerState.OPEN, now, why)

    def _move(self, to: BreakerState, now: float, why: str) -> Change | None:
        before, self.state = self.state, to
        if before is to:
            return None
        return Change(self.job_type, before, to, now, why)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
