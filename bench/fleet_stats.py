"""What the simulated fleet counts, and how counts become figures (pure; ``bench fleet``).

Each simulated-worker process keeps a :class:`Tally`: dispatches received per wall-clock
second, a latency histogram, the receive times of the probe jobs, and what went wrong
(duplicates). Histograms are 0.1 ms bins in a ``Counter``: a run of 200,000 dispatches costs a
few thousand keys, merges by addition, and travels as JSON from the processes to the bench.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Histogram resolution: one bin per 0.1 ms.
BIN_MS = 0.1


@dataclass
class Histogram:
    """Latencies in :data:`BIN_MS` bins; percentiles are nearest-rank over the bins."""

    bins: Counter[int] = field(default_factory=Counter)

    def add(self, ms: float) -> None:
        self.bins[max(0, math.floor(ms / BIN_MS))] += 1

    def merge(self, other: Histogram) -> None:
        self.bins.update(other.bins)

    @property
    def count(self) -> int:
        return sum(self.bins.values())

    def percentile(self, q: float) -> float:
        """The ``q`` (0..1) nearest-rank percentile in ms (a bin's upper edge); NaN if empty."""
        total = self.count
        if not total:
            return float("nan")
        rank = max(1, math.ceil(q * total))
        seen = 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen >= rank:
                return round((b + 1) * BIN_MS, 4)
        raise AssertionError("unreachable: rank <= total")

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.bins.items()}

    @classmethod
    def from_json(cls, doc: Mapping[str, int]) -> Histogram:
        return cls(Counter({int(k): int(v) for k, v in doc.items()}))


@dataclass
class Tally:
    """One process's counts over one run."""

    #: Dispatches received, by ``int(time.time())`` of their arrival.
    starts: Counter[int] = field(default_factory=Counter)
    #: Reports of success sent, by second.
    finishes: Counter[int] = field(default_factory=Counter)
    #: Arrival − the ``dispatched_at`` of the pass that placed it, every dispatch.
    pass_to_received: Histogram = field(default_factory=Histogram)
    #: Probe jobs' arrival times (epoch seconds), by job id; the bench joins them with the
    #: database (when each probe became ready).
    probes: dict[str, float] = field(default_factory=dict)
    #: The same attempt dispatched twice to a worker (a republish the worker had taken).
    duplicates: int = 0
    #: Heartbeats sent.
    heartbeats: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "starts": {str(k): v for k, v in self.starts.items()},
            "finishes": {str(k): v for k, v in self.finishes.items()},
            "pass_to_received": self.pass_to_received.to_json(),
            "probes": self.probes,
            "duplicates": self.duplicates,
            "heartbeats": self.heartbeats,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Tally:
        return cls(
            starts=Counter({int(k): int(v) for k, v in doc["starts"].items()}),
            finishes=Counter({int(k): int(v) for k, v in doc["finishes"].items()}),
            pass_to_received=Histogram.from_json(doc["pass_to_received"]),
            probes={str(k): float(v) for k, v in doc["probes"].items()},
            duplicates=int(doc["duplicates"]),
            heartbeats=int(doc["heartbeats"]),
        )

    def merge(self, other: Tally) -> None:
        self.starts.update(other.starts)
        self.finishes.update(other.finishes)
        self.pass_to_received.merge(other.pass_to_received)
        self.probes.update(other.probes)
        self.duplicates += other.duplicates
        self.heartbeats += other.heartbeats


def merged(tallies: Iterable[Tally]) -> Tally:
    out = Tally()
    for t in tallies:
        out.merge(t)
    return out


def window_rates(
    per_second: Mapping[int, int], start: float, end: float, bucket: int = 1
) -> list[float]:
    """Rates (per second) of every whole ``bucket`` of seconds inside ``[start, end)`` (epoch
    seconds), empty seconds included: a second with no start counts at 0/s, it is not left
    out. Passes of a loaded leader come seconds apart, so 1 s buckets can swing 0 to 6,000."""
    first, last = math.ceil(start), math.floor(end)
    out = []
    for b in range(first, last - bucket + 1, bucket):
        out.append(sum(per_second.get(s, 0) for s in range(b, b + bucket)) / bucket)
    return out


def latencies_ms(ready_at: Mapping[str, float], received: Mapping[str, float]) -> list[float]:
    """For each job in both: received − ready, in ms."""
    return [(received[j] - ready_at[j]) * 1000 for j in ready_at if j in received]


def weighted_median(values: Sequence[float], weights: Sequence[int]) -> float:
    """The median of ``values`` with each counted ``weights`` times (NaN if none): the
    scheduler logs a p50 per period, and a period of three 5 s passes must not weigh as much as
    one of a thousand 5 ms passes."""
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    total = sum(w for _, w in pairs)
    seen = 0
    for value, weight in pairs:
        seen += weight
        if 2 * seen >= total:
            return value
    return float("nan")
