"""Finding dispatches that never reached their worker (pure).

A dispatch is committed (job ``running``) before it is published, so a crash or a broker
failure between the two can lose it. Each worker's heartbeat lists the attempts it holds: a
dispatch the worker still does not list ``grace`` seconds after it was sent is published again
(the worker ignores an attempt it already took), and after ``max_republish`` tries it is given
up as lost (a new attempt follows). Once a heartbeat lists it, the worker's lease covers it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[uuid.UUID, int]


@dataclass(slots=True)
class _Outstanding:
    since: float
    republished: int = 0


@dataclass(frozen=True, slots=True)
class Verdicts:
    republish: list[tuple[uuid.UUID, int, str]]
    lost: list[tuple[uuid.UUID, int, str]]


class DispatchTracker:
    """Open dispatches indexed by worker: a heartbeat looks at its own worker's only. Scanning
    every open dispatch per heartbeat cost 19 % of the leader's time at 1,000 workers and
    3,000 dispatches/s (``bench fleet``), and grew with workers × dispatch rate."""

    def __init__(self, grace: float, max_republish: int = 3) -> None:
        self.grace = grace
        self.max_republish = max_republish
        self._open: dict[str, dict[Key, _Outstanding]] = {}
        self._worker_of: dict[Key, str] = {}

    def __len__(self) -> int:
        return len(self._worker_of)

    def dispatched(self, job_id: uuid.UUID, attempt: int, worker_id: str, now: float) -> None:
        key = (job_id, attempt)
        self._drop(key)
        self._open.setdefault(worker_id, {})[key] = _Outstanding(now)
        self._worker_of[key] = worker_id

    def settled(self, job_id: uuid.UUID, attempt: int) -> None:
        """A report arrived for the attempt: it certainly reached its worker."""
        self._drop((job_id, attempt))

    def on_heartbeat(self, worker_id: str, holds: Iterable[Key], now: float) -> Verdicts:
        republish: list[tuple[uuid.UUID, int, str]] = []
        lost: list[tuple[uuid.UUID, int, str]] = []
        mine = self._open.get(worker_id)
        if not mine:
            return Verdicts(republish, lost)
        held = set(holds)
        for key, entry in list(mine.items()):
            if key in held:
                self._drop(key)
            elif now - entry.since >= self.grace:
                if entry.republished >= self.max_republish:
                    self._drop(key)
                    lost.append((key[0], key[1], worker_id))
                else:
                    entry.republished += 1
                    entry.since = now
                    republish.append((key[0], key[1], worker_id))
        return Verdicts(republish, lost)

    def worker_gone(self, worker_id: str) -> None:
        """The worker's lease expired: the core already made its attempts lost."""
        for key in self._open.pop(worker_id, {}):
            del self._worker_of[key]

    def _drop(self, key: Key) -> None:
        worker_id = self._worker_of.pop(key, None)
        if worker_id is None:
            return
        mine = self._open[worker_id]
        del mine[key]
        if not mine:
            del self._open[worker_id]
