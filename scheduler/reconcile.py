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
    worker_id: str
    since: float
    republished: int = 0


@dataclass(frozen=True, slots=True)
class Verdicts:
    republish: list[tuple[uuid.UUID, int, str]]
    lost: list[tuple[uuid.UUID, int, str]]


class DispatchTracker:
    def __init__(self, grace: float, max_republish: int = 3) -> None:
        self.grace = grace
        self.max_republish = max_republish
        self._open: dict[Key, _Outstanding] = {}

    def __len__(self) -> int:
        return len(self._open)

    def dispatched(self, job_id: uuid.UUID, attempt: int, worker_id: str, now: float) -> None:
        self._open[(job_id, attempt)] = _Outstanding(worker_id, now)

    def settled(self, job_id: uuid.UUID, attempt: int) -> None:
        """A report arrived for the attempt: it certainly reached its worker."""
        self._open.pop((job_id, attempt), None)

    def on_heartbeat(self, worker_id: str, holds: Iterable[Key], now: float) -> Verdicts:
        held = set(holds)
        republish: list[tuple[uuid.UUID, int, str]] = []
        lost: list[tuple[uuid.UUID, int, str]] = []
        for key, entry in list(self._open.items()):
            if entry.worker_id != worker_id:
                continue
            if key in held:
                del self._open[key]
            elif now - entry.since >= self.grace:
                if entry.republished >= self.max_republish:
                    del self._open[key]
                    lost.append((key[0], key[1], worker_id))
                else:
                    entry.republished += 1
                    entry.since = now
                    republish.append((key[0], key[1], worker_id))
        return Verdicts(republish, lost)

    def worker_gone(self, worker_id: str) -> None:
        """The worker's lease expired: the core already made its attempts lost."""
        for key in [k for k, e in self._open.items() if e.worker_id == worker_id]:
            del self._open[key]
