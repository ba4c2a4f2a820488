"""Rate and concurrency limits, pure: fed the clock and the dispatches the pass makes, they say
whether one more job may go now and, when not, when it may (issue 17).

A rate is a token bucket: ``rate`` tokens a second, at most ``burst`` held (by default one
second's worth, at least one), one token per dispatch; a type limited to 5/s with 100 jobs
waiting dispatches them at 5 a second, the first ``burst`` at once. A concurrency limit counts
the running attempts it covers: the pass takes a slot per dispatch and gives it back when the
attempt's hold is freed (a report, or the lease of a dead worker expiring), so no slot leaks.
Limits are checked in the pass, never at submit, so what they hold stays ready with a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from smartq.flowspec import parse_rate

__all__ = ["Held", "Slots", "TokenBucket", "TypeLimits", "parse_rate"]

#: Tokens short of a whole one that still count as one (the clock's float arithmetic: a token
#: due at ``next_at`` must be there at ``next_at``).
_EPSILON = 1e-9


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.tokens = self.burst
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def take(self, now: float) -> bool:
        """Use a token if one is there."""
        self._refill(now)
        if self.tokens >= 1.0 - _EPSILON:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def next_at(self, now: float) -> float:
        """When the next token is there (``now`` if one is)."""
        self._refill(now)
        if self.tokens >= 1.0 - _EPSILON:
            return now
        return now + (1.0 - self.tokens) / self.rate


@dataclass
class Slots:
    """At most ``limit`` running at once."""

    limit: int
    running: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a concurrency limit must be at least 1")

    def free(self) -> bool:
        return self.running < self.limit

    def take(self) -> bool:
        if not self.free():
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running = max(0, self.running - 1)


@dataclass(frozen=True, slots=True)
class Held:
    """Why a job waits for a limit: what limits it and when it may go (None: when a slot is
    given back)."""

    what: str
    limit: str
    next_at: float | None

    def reason(self) -> str:
        """``rate limited: type resize, 5/s, next slot at …`` or ``concurrency limited:
        tenant acme, 3 running at most``."""
        if self.next_at is None:
            return f"concurrency limited: {self.what}, {self.limit}"
        return f"rate limited: {self.what}, {self.limit}, next slot at {_clock(self.next_at)}"


class TypeLimits:
    """The limits of one job type (or tenant): a rate, a concurrency limit, or both. A job
    goes only when both allow it, and takes from both at once (a job held by one takes
    nothing from the other: Hatchet's rate-limited tasks deadlocked holding slots)."""

    def __init__(
        self,
        name: str,
        *,
        rate: str | None = None,
        max_running: int | None = None,
        now: float = 0.0,
    ) -> None:
        self.name = name
        self.rate_text = rate
        self.bucket = TokenBucket(parse_rate(rate), now=now) if rate else None
        self.slots = Slots(max_running) if max_running is not None else None

    def admit(self, now: float) -> Held | None:
        """None, having taken a token and a slot, when one more may go; else why not."""
        held = self.blocked(now)
        if held is None:
            self.take(now)
        return held

    def blocked(self, now: float) -> Held | None:
        """Why one more may not go now, or None (taking nothing: the pass looks before it
        knows a worker has room, and takes only for a job it starts)."""
        if self.slots is not None and not self.slots.free():
            return Held(self.name, f"{self.slots.limit} running at most", None)
        if self.bucket is not None and self.bucket.next_at(now) > now:
            return Held(self.name, f"{self.rate_text}", self.bucket.next_at(now))
        return None

    def holding(self, now: float) -> Held | None:
        """What holds the jobs waiting on it: :meth:`blocked`, or when a token came since
        the last pass (jobs still wait for that pass), the rate with its next slot now."""
        held = self.blocked(now)
        if held is None and self.bucket is not None:
            held = Held(self.name, f"{self.rate_text}", self.bucket.next_at(now))
        return held

    def take(self, now: float) -> None:
        """One more goes (after :meth:`blocked` said it may)."""
        if self.bucket is not None:
            self.bucket.take(now)
        if self.slots is not None:
            self.slots.take()

    def room(self, now: float) -> int | None:
        """How many more may go now (None: no bound)."""
        room: int | None = None
        if self.slots is not None:
            room = max(0, self.slots.limit - self.slots.running)
        if self.bucket is not None:
            self.bucket.next_at(now)  # refill
            tokens = math.floor(self.bucket.tokens + _EPSILON)
            room = tokens if room is None else min(room, tokens)
        return room

    @property
    def running(self) -> int:
        return self.slots.running if self.slots is not None else 0

    @property
    def max_running(self) -> int | None:
        return self.slots.limit if self.slots is not None else None

    def describe(self) -> str:
        """``5/s, 3 running at most``."""
        parts = [self.rate_text] if self.rate_text else []
        if self.slots is not None:
            parts.append(f"{self.slots.limit} running at most")
        return ", ".join(parts)

    def finished(self) -> None:
        """An attempt it admitted no longer holds its slot."""
        if self.slots is not None:
            self.slots.give_back()

    def restore(self, running: int) -> None:
        """After a rebuild: the attempts it covers that run now."""
        if self.slots is not None:
            self.slots.running = max(0, running)


def _clock(at: float) -> str:
    whole = math.floor(at * 1000) / 1000
    return (
        datetime.fromtimestamp(whole, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
