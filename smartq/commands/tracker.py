"""What ``smartq watch`` knows about the jobs it watches, with no I/O: each job's newest status
(from job documents and stream events, in the server's order of statuses, so an older one never
overwrites a newer), its progress while it runs, the recent failures, and the totals.

Each update returns the :class:`Change` it made (None when it told nothing new), which the
views print or draw.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.enums import FINAL_STATUSES, JobStatus, status_order

if TYPE_CHECKING:
    from smartq.client.events import StatusEvent

#: Failures a view shows, the newest last.
RECENT_FAILURES = 5
#: Statuses a job waits in, shown together.
WAITING = (JobStatus.PENDING, JobStatus.BLOCKED, JobStatus.READY, JobStatus.RETRYING)


@dataclass(slots=True)
class Tracked:
    """One watched job."""

    id: uuid.UUID
    label: str
    type: str
    status: JobStatus
    attempt: int
    worker_id: str | None = None
    error: str | None = None
    reason: str | None = None
    #: When this watch saw it start running (monotonic seconds), for the running time.
    running_since: float | None = None
    fraction: float | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Change:
    """What one update changed: a job's status, or its progress."""

    job: Tracked
    kind: str  # "status" or "progress"


@dataclass(frozen=True, slots=True)
class Failure:
    label: str
    job_id: uuid.UUID
    attempt: int
    status: JobStatus
    error: str


def label_of(doc: dict[str, Any]) -> str:
    """How a view names a job: its key in its batch, else its name."""
    return str(doc.get("key") or doc.get("name") or doc["id"])


class Tracker:
    """The watched jobs (a batch's, or one)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.jobs: dict[uuid.UUID, Tracked] = {}
        self.failures: deque[Failure] = deque(maxlen=RECENT_FAILURES)
        self._clock = clock

    # -- updates ------------------------------------------------------------------------------
    def read(self, doc: dict[str, Any]) -> Change | None:
        """A job document (``GET``). It wins over what is known when it is newer, and when a
        job known to be final comes back waiting under the same attempt number (``smartq
        retry`` resubmitted it; it has not started again yet)."""
        job_id = uuid.UUID(doc["id"])
        status = JobStatus(doc["status"])
        attempt = int(doc.get("attempts") or 0)
        job = self.jobs.get(job_id)
        if job is None:
            job = Tracked(job_id, label_of(doc), str(doc["type"]), JobStatus.PENDING, 0)
            self.jobs[job_id] = job
            self._moved(job, status, attempt, doc.get("worker_id"), doc.get("error"))
            job.reason = doc.get("status_reason")
            return Change(job, "status")
        rerun = job.done and status not in FINAL_STATUSES and attempt >= job.attempt
        if not rerun and status_order(status, attempt) <= status_order(job.status, job.attempt):
            return None
        self._moved(job, status, attempt, doc.get("worker_id"), doc.get("error"))
        job.reason = doc.get("status_reason")
        return Change(job, "status")

    def saw(self, event: StatusEvent) -> Change | None:
        """A status from the stream."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return None  # not read yet: the read that follows brings it
        if status_order(event.status, event.attempt) <= status_order(job.status, job.attempt):
            return None
        self._moved(job, event.status, event.attempt, event.worker_id, event.error)
        job.reason = event.reason
        return Change(job, "status")

    def progressed(self, raw: dict[str, Any]) -> Change | None:
        """A ``job.progress`` event: kept for the attempt that runs now."""
        job = self.jobs.get(uuid.UUID(raw["job_id"]))
        if job is None or job.done or int(raw.get("attempt") or 0) < job.attempt:
            return None
        job.fraction = float(raw["fraction"])
        job.message = raw.get("message")
        return Change(job, "progress")

    def _moved(
        self,
        job: Tracked,
        status: JobStatus,
        attempt: int,
        worker_id: str | None,
        error: str | None,
    ) -> None:
        if status is JobStatus.RUNNING and (
            job.status is not JobStatus.RUNNING or attempt > job.attempt
        ):
            job.running_since = self._clock()
            job.fraction = job.message = None
        elif status is not JobStatus.RUNNING:
            job.running_since = None
        job.status, job.attempt = status, attempt
        job.worker_id = worker_id or (job.worker_id if status is JobStatus.RUNNING else None)
        job.error = error
        if error and status in (JobStatus.RETRYING, JobStatus.FAILED):
            self.failures.append(Failure(job.label, job.id, attempt, status, error))

    # -- what it says -------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.jobs)

    @property
    def done(self) -> bool:
        return bool(self.jobs) and all(j.done for j in self.jobs.values())

    @property
    def succeeded(self) -> bool:
        return self.done and all(j.status is JobStatus.COMPLETED for j in self.jobs.values())

    def counts(self) -> Counter[JobStatus]:
        return Counter(j.status for j in self.jobs.values())

    @property
    def finished(self) -> int:
        counts = self.counts()
        return sum(counts[s] for s in FINAL_STATUSES)

    def running(self) -> list[Tracked]:
        """The running jobs, longest running first."""
        jobs = [j for j in self.jobs.values() if j.status is JobStatus.RUNNING]
        return sorted(jobs, key=lambda j: j.running_since or 0.0)

    def ended_badly(self) -> list[Tracked]:
        bad = (JobStatus.FAILED, JobStatus.CANCELLED)
        return [j for j in self.jobs.values() if j.status in bad]

    def differs(self, totals: dict[str, int]) -> bool:
        """Whether the server's totals by status disagree with what this watch knows."""
        counts = self.counts()
        return (
            any(counts[JobStatus(s)] != n for s, n in totals.items())
            or sum(totals.values()) != self.total
        )

    def read_all(self, docs: Iterable[dict[str, Any]]) -> list[Change]:
        return [c for c in (self.read(d) for d in docs) if c is not None]
