"""Flow-control values as users write them, pure: rates (``5/s``, ``30/min``, ``100/h``) and
breaker policies. Shared by the ``@smartq.job(rate_limit=..., breaker=...)`` decorator, the
API's ``PATCH /types/{name}`` and the scheduler, so all of them accept and refuse the same."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """``"5/s"``, ``"30/min"``, ``"100/h"`` as a rate per second (> 0)."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (say e.g. 5/s, 30/min or 100/h)")
    rate = float(match.group(1)) / _PER[match.group(2)]
    if rate <= 0:
        raise ValueError(f"a rate must be more than zero: {text!r}")
    return rate


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a job type's circuit breaker opens: with at least ``min_attempts`` attempts ended
    in the last ``window_seconds`` and a share ``failure_ratio`` of them failed; it stays open
    ``cooldown_seconds`` before one probe, doubled after each failed probe up to
    ``max_cooldown_seconds``. ``@smartq.job(breaker=BreakerPolicy(...))`` sets a type's."""

    min_attempts: int = 10
    window_seconds: float = 60.0
    failure_ratio: float = 0.5
    cooldown_seconds: float = 30.0
    max_cooldown_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.min_attempts < 1 or self.window_seconds <= 0 or self.cooldown_seconds <= 0:
            raise ValueError("min_attempts, window_seconds and cooldown_seconds must be > 0")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.max_cooldown_seconds < self.cooldown_seconds:
            raise ValueError("max_cooldown_seconds must be at least cooldown_seconds")
