"""How long a refused request is told to wait (``Retry-After``), pure: the wait and the random
draw are arguments, so the rule is a table of cases.

``Retry-After`` is whole seconds (RFC 9110 ``delta-seconds``), so the jitter cannot be a
fraction added on top: the wait is rounded up *after* adding a draw in [0, 1), which sends a
herd refused together back over two adjacent seconds in proportion, instead of all at once.
Every answer is at least 1 (0 would ask for an immediate retry) and at most :data:`MAX_SECONDS`
(a client told to wait longer would rather give up and say so).
"""

from __future__ import annotations

import math

#: The longest wait ever asked for.
MAX_SECONDS = 60
#: Over the active-jobs quota, no bucket says when room comes (jobs end when they end): a
#: short wait spread over this range, so a refused herd comes back spread out.
ACTIVE_JOBS_SECONDS = (1, 5)
#: The database had no connection free in time: a short spread wait, the load passes or not.
OVERLOADED_SECONDS = (1, 3)


def after_wait(wait: float, draw: float) -> int:
    """The ``Retry-After`` for a limit whose room comes back in ``wait`` seconds (a token
    bucket's next token), with ``draw`` in [0, 1) as the jitter."""
    if not math.isfinite(wait):
        return MAX_SECONDS
    seconds = math.ceil(max(0.0, wait) + _unit(draw))
    return min(MAX_SECONDS, max(1, seconds))


def spread(bounds: tuple[int, int], draw: float) -> int:
    """A whole number of seconds from ``bounds[0]`` to ``bounds[1]`` (both included, within
    1 … :data:`MAX_SECONDS`), picked by ``draw`` in [0, 1)."""
    low, high = max(1, bounds[0]), min(MAX_SECONDS, bounds[1])
    if high <= low:
        return low
    return low + min(high - low, math.floor(_unit(draw) * (high - low + 1)))


def _unit(draw: float) -> float:
    """``draw`` held in [0, 1): a random source that returns 1.0 (or NaN) stays harmless."""
    if not 0.0 <= draw < 1.0:
        return 0.0 if not draw > 0.0 else math.nextafter(1.0, 0.0)
    return draw
