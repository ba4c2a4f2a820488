"""The ``Retry-After`` rule as tables: rounded up after the jitter, at least 1, at most 60; a
spread range takes every value in it and nothing outside."""

from __future__ import annotations

import math

import pytest

from api.retry_after import ACTIVE_JOBS_SECONDS, MAX_SECONDS, OVERLOADED_SECONDS, after_wait, spread


@pytest.mark.parametrize(
    ("wait", "draw", "seconds"),
    [
        (0.0, 0.0, 1),  # a token is there already: never 0
        (0.0, 0.99, 1),
        (0.2, 0.5, 1),  # 0.7 rounds up to 1 ...
        (0.2, 0.9, 2),  # ... 1.1 to 2: a herd splits over two seconds
        (1.0, 0.0, 1),
        (1.0, 0.01, 2),
        (2.5, 0.4, 3),
        (2.5, 0.6, 4),
        (59.5, 0.2, 60),
        (59.5, 0.9, 60),  # bounded
        (3600.0, 0.0, 60),
        (math.inf, 0.5, 60),
        (math.nan, 0.5, 60),
        (-3.0, 0.5, 1),  # a clock that went back
        (0.5, 1.0, 2),  # a draw of 1.0 is held just below it
        (0.5, -1.0, 1),
        (0.5, math.nan, 1),
    ],
)
def test_after_wait(wait: float, draw: float, seconds: int) -> None:
    assert after_wait(wait, draw) == seconds


@pytest.mark.parametrize(
    ("bounds", "draw", "seconds"),
    [
        ((1, 5), 0.0, 1),
        ((1, 5), 0.19, 1),
        ((1, 5), 0.2, 2),
        ((1, 5), 0.5, 3),
        ((1, 5), 0.99, 5),
        ((1, 5), 1.0, 5),
        ((1, 5), math.nan, 1),
        ((3, 3), 0.7, 3),
        ((0, 2), 0.0, 1),  # never 0
        ((5, 1), 0.5, 5),  # an empty range is its low end
        ((50, 90), 0.99, MAX_SECONDS),
    ],
)
def test_spread(bounds: tuple[int, int], draw: float, seconds: int) -> None:
    assert spread(bounds, draw) == seconds


@pytest.mark.parametrize("bounds", [ACTIVE_JOBS_SECONDS, OVERLOADED_SECONDS])
def test_a_spread_covers_its_whole_range_evenly(bounds: tuple[int, int]) -> None:
    draws = [i / 1000 for i in range(1000)]
    seen = [spread(bounds, d) for d in draws]
    low, high = bounds
    assert set(seen) == set(range(low, high + 1))
    counts = [seen.count(s) for s in range(low, high + 1)]
    assert max(counts) - min(counts) <= 1
