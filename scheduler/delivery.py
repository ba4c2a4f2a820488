"""Batch callbacks, the decisions (pure; :mod:`scheduler.callbacks` does the I/O): which
events a batch's state makes due, and what a delivery attempt's outcome means — delivered,
retried after a backoff with jitter, or given up.

Events are derived from durable state (the jobs' rows), never from messages, so a scheduler
that takes over derives the same ones; each has a key unique per callback, and the store
inserts it once (``ON CONFLICT DO NOTHING``): neither lost nor doubled by a failover.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from smartq.callbacks import Event


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent at next_attempt_at
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # no 2xx within the retry window: given up
    REFUSED = "refused"  # the guard would not call it (its address): never retried


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """What the derivation needs of a batch: whether any job started, whether all ended, and
    each failed job with its attempt number (a job failed again after a retry is a new
    failure: its attempts grew)."""

    started: bool
    done: bool
    failed: Sequence[tuple[uuid.UUID, int]] = ()


@dataclass(frozen=True, slots=True)
class DueEvent:
    event: Event
    #: Unique per callback: the event once, or a job's failure once per attempt.
    key: str
    job_id: uuid.UUID | None = None


def due_events(progress: BatchProgress, wanted: Collection[str]) -> list[DueEvent]:
    """The events a callback asking for ``wanted`` is due now, in the order they happened
    (started, failures, finished); the store skips those already enqueued."""
    out: list[DueEvent] = []
    if Event.BATCH_STARTED in wanted and progress.started:
        out.append(DueEvent(Event.BATCH_STARTED, Event.BATCH_STARTED.value))
    if Event.JOB_FAILED in wanted:
        for job_id, attempt in progress.failed:
            out.append(DueEvent(Event.JOB_FAILED, f"job.failed:{job_id}:{attempt}", job_id))
    if Event.BATCH_FINISHED in wanted and progress.done:
        out.append(DueEvent(Event.BATCH_FINISHED, Event.BATCH_FINISHED.value))
    return out


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base`` doubling to ``cap`` seconds, each wait drawn from its upper half
    ("equal jitter": receivers that came back are not hit by every delivery at once, and no
    wait is shorter than half the schedule); given up ``window`` seconds after the first
    attempt."""

    base: float = 5.0
    cap: float = 3600.0
    window: float = 24 * 3600.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """The wait after the ``attempts``-th failed attempt."""
        full = min(self.cap, self.base * 2.0 ** min(attempts - 1, 60))
        return full / 2 + rng.random() * full / 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: the HTTP status (None: no answer) and what went wrong."""

    status_code: int | None
    error: str | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Decision:
    status: DeliveryStatus
    next_attempt_at: datetime | None


def decide(
    outcome: Outcome,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """What the ``attempts``-th attempt's outcome means for its delivery."""
    if outcome.ok:
        return Decision(DeliveryStatus.DELIVERED, None)
    if outcome.refused:
        return Decision(DeliveryStatus.REFUSED, None)
    at = now + timedelta(seconds=policy.delay(attempts, rng))
    if at > first_attempt_at + timedelta(seconds=policy.window):
        return Decision(DeliveryStatus.FAILED, None)
    return Decision(DeliveryStatus.PENDING, at)
