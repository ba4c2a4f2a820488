"""Domain values: job statuses, priorities, attempt outcomes, worker states."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # accepted, not yet taken in by the scheduler
    BLOCKED = "blocked"  # waiting on dependencies
    READY = "ready"  # may run; waiting for a worker with room
    RUNNING = "running"  # dispatched to a worker
    RETRYING = "retrying"  # a failed attempt waits out its backoff
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset(set(JobStatus) - FINAL_STATUSES)
#: Statuses a job may be cancelled from at once, without asking a worker.
CANCELLABLE_AT_ONCE = frozenset(
    {JobStatus.PENDING, JobStatus.BLOCKED, JobStatus.READY, JobStatus.RETRYING}
)


class Priority(StrEnum):
    """Named priorities; integers 0-10 are accepted too, higher runs first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def value_int(self) -> int:
        return PRIORITY_VALUES[self]


PRIORITY_VALUES: dict[Priority, int] = {
    Priority.LOW: 2,
    Priority.NORMAL: 5,
    Priority.HIGH: 8,
    Priority.CRITICAL: 10,
}
PRIORITY_NAMES: dict[int, Priority] = {v: k for k, v in PRIORITY_VALUES.items()}
MIN_PRIORITY = 0
MAX_PRIORITY = 10


class Outcome(StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retryable error
    FAILED_PERMANENTLY = "failed_permanently"  # non-retryable error: no retry
    RETRY_REQUESTED = "retry_requested"  # the job asked to be retried after a delay
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"  # the worker went away (lease expired) or the dispatch could not be delivered
    HANDED_BACK = "handed_back"  # a stopping worker gave the job back unfinished


class FailureClass(StrEnum):
    """Why a failed attempt failed, stored on the attempt (see :mod:`scheduler.escalation`)."""

    TIMEOUT = "timeout"
    MEMORY = "memory"  # a MemoryError, or killed by the worker's memory watchdog
    SIGNAL = "signal"  # killed by a signal the worker did not send
    ERROR = "error"  # anything else the job raised or did


class WorkerState(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    #: Drained: draining and nothing runs there any more.
    DRAINED = "drained"
    OFFLINE = "offline"


#: A point in a job's life, comparable: see :func:`status_order`.
Order = tuple[int, int, int]

_RANK = {
    JobStatus.PENDING: 0,
    JobStatus.BLOCKED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.RETRYING: 3,
    JobStatus.READY: 4,
}


def status_order(status: JobStatus, attempt: int) -> Order:
    """A job's statuses in the order they can happen, for whoever drops stale status events
    (the API's stream hub and each client's snapshot fence, the SDK's reconnecting stream):
    within attempt n, running → retrying → ready, and a final status ends attempt n; then
    attempt n+1 runs. A job resubmitted after it failed (``POST /jobs/{id}/retry``) runs again
    under higher attempt numbers, so its new life orders after its old end; only the waiting
    statuses between the resubmission and the next start (attempt n still) sort before it."""
    if status in FINAL_STATUSES:
        return (attempt, 1, 0)
    return (attempt, 0, _RANK[status])
