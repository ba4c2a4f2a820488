"""The accounting of ``bench fleet``: latency histograms, per-second rates, their JSON."""

from __future__ import annotations

import math

import pytest

from bench.fleet_stats import (
    Histogram,
    Tally,
    latencies_ms,
    merged,
    weighted_median,
    window_rates,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0] * 99 + [40.0], 0.5, 1.1),  # a bin's upper edge
        ([1.0] * 99 + [40.0], 0.99, 1.1),
        ([1.0] * 98 + [40.0] * 2, 0.99, 40.1),
        ([0.0], 1.0, 0.1),
        ([-3.0], 0.5, 0.1),  # clocks a hair apart: counted as the first bin
    ],
)
def test_histogram_percentiles_are_nearest_rank(
    values: list[float], q: float, expected: float
) -> None:
    h = Histogram()
    for v in values:
        h.add(v)
    assert h.percentile(q) == pytest.approx(expected)


def test_an_empty_histogram_has_no_percentile() -> None:
    assert math.isnan(Histogram().percentile(0.5))


def test_tallies_merge_and_survive_json() -> None:
    a, b = Tally(), Tally()
    a.starts[100] += 3
    b.starts[100] += 2
    b.starts[101] += 1
    a.pass_to_received.add(5.0)
    b.pass_to_received.add(7.0)
    b.probes["j"] = 100.5
    b.duplicates = 1
    total = merged([Tally.from_json(a.to_json()), Tally.from_json(b.to_json())])
    assert total.starts == {100: 5, 101: 1}
    assert total.pass_to_received.count == 2
    assert total.probes == {"j": 100.5} and total.duplicates == 1


def test_window_rates_count_silent_seconds_as_zero() -> None:
    assert window_rates({10: 5, 12: 7, 13: 1}, 9.5, 13.0) == [5.0, 0.0, 7.0]
    assert window_rates({10: 5, 12: 7, 13: 1}, 10.0, 14.5, bucket=2) == [2.5, 4.0]


def test_latencies_join_ready_and_received() -> None:
    got = latencies_ms({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.004, "c": 3.05})
    assert got == pytest.approx([4.0, 50.0])


def test_weighted_median_counts_each_period_by_its_passes() -> None:
    assert weighted_median([5000.0, 5.0, 6.0], [3, 1000, 900]) == 5.0
    assert weighted_median([1.0, 2.0], [1, 1]) == 1.0
    assert math.isnan(weighted_median([], []))
