"""Values that go in and out of the scheduling core: what it is told, what it decides.

Time is always a ``float`` of epoch seconds (UTC); the shell converts datetimes at the edge.
Every decision is a frozen value; the shell performs it (a DB write, a publish).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from models.enums import JobStatus, Outcome


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """A dependency that already ended badly (``failed`` or ``cancelled``) before the job came."""

    job_id: uuid.UUID
    name: str
    status: JobStatus
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One active job as the core needs it, read from the ``jobs`` row.

    ``depends_on`` lists only dependencies that have *not* completed; a dependency that already
    completed is simply left out. ``upstream_failure`` names one dependency that already failed or
    was cancelled: the job is then cancelled at once. The last four fields matter only when the
    state is rebuilt from running/retrying rows; new jobs leave them at their defaults.
    """

    id: uuid.UUID
    name: str
    type: str = ""
    priority: int = 5
    cpu_units: int = 1
    memory_mb: int = 256
    max_attempts: int = 1
    initial_delay_seconds: float = 1.0
    backoff_multiplier: float = 2.0
    run_at: float | None = None
    created_at: float = 0.0
    depends_on: tuple[uuid.UUID, ...] = ()
    upstream_failure: UpstreamFailure | None = None
    status: JobStatus = JobStatus.PENDING
    tenant: str = "default"
    attempts: int = 0
    #: Attempts made before the last manual resubmission; the budget counts from here.
    attempts_base: int = 0
    not_before: float | None = None
    worker_id: str | None = None
    #: The worker ends an attempt here; predictions are capped by it.
    timeout_seconds: float | None = None
    #: When the running attempt started (a rebuild: its predicted end counts from here).
    started_at: float | None = None
    #: Named resources and labels the job asks for (:mod:`scheduler.resources`).
    resources: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The batch it was submitted in (a paused batch holds its ready jobs).
    batch_id: uuid.UUID | None = None
    #: Memory escalations since it was (re)submitted (``memory_mb`` is then the raised ask).
    memory_escalations: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """Job ``job_id`` moves ``from_status`` → ``to_status``.

    Write it as ``UPDATE jobs SET status = to_status, ... WHERE id = job_id AND status =
    from_status AND attempts = attempts``. ``not_before`` is set for ``retrying``; ``worker_id``
    names the worker a ``running`` job left; ``outcome`` is the attempt outcome that caused it.
    """

    job_id: uuid.UUID
    from_status: JobStatus
    to_status: JobStatus
    attempts: int
    reason: str | None = None
    error: str | None = None
    not_before: float | None = None
    worker_id: str | None = None
    outcome: Outcome | None = None
    #: Set when the move also takes the attempt number back: a dispatch that provably never
    #: reached any worker (its queue was gone) was no attempt, so the number is used again.
    to_attempts: int | None = None
    #: Set when a kill for memory raised what later attempts ask for
    #: (:mod:`scheduler.escalation`): the new ask and the job's count of raises.
    memory_mb: int | None = None
    memory_escalations: int | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Run attempt ``attempt`` of ``job_id`` on ``worker_id`` (``ready`` → ``running``).

    Write ``status = running, attempts = attempt, worker_id`` where ``status = ready AND attempts =
    attempt - 1``, then publish the dispatch.
    """

    job_id: uuid.UUID
    worker_id: str
    attempt: int
    cpu_units: int
    memory_mb: int


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Ask ``worker_id`` to stop attempt ``attempt`` of ``job_id`` (publish ``job.cancel``)."""

    job_id: uuid.UUID
    attempt: int
    worker_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What a cancel request decided: transitions done at once, and/or a message to a worker."""

    transitions: tuple[Transition, ...] = ()
    send: SendCancel | None = None


@dataclass(frozen=True, slots=True)
class Lingering:
    """Resources an attempt still holds after it ended: a timed-out plain-function thread
    cannot be killed, so its cpu and memory stay taken until the thread returns."""

    job_id: uuid.UUID
    attempt: int
    cpu_units: int
    memory_mb: int


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker as seen by :func:`scheduler.reasons.why_waiting` (built from DB rows or memory)."""

    worker_id: str
    cpu_units: int
    memory_mb: int
    cpu_in_use: int = 0
    memory_in_use: int = 0
    online: bool = True
    draining: bool = False
    #: The job types it can run; ``None``: any (a worker that has not said).
    job_types: frozenset[str] | None = None
    #: Capacity still held by attempts that ended while their code kept running.
    lingering: tuple[Lingering, ...] = ()
    #: Named resources offered and held, and labels.
    resources: Mapping[str, int] = field(default_factory=dict)
    resources_in_use: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def offers(self, job_type: str) -> bool:
        return self.job_types is None or job_type in self.job_types

    @property
    def accepting(self) -> bool:
        return self.online and not self.draining

    @property
    def cpu_free(self) -> int:
        return self.cpu_units - self.cpu_in_use

    @property
    def memory_free(self) -> int:
        return self.memory_mb - self.memory_in_use
