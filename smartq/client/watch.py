"""Waiting and following as state, with no I/O, for both clients: :class:`Watch` (jobs waited
for until each is final) and :class:`LogCursor` (which log lines a follower has given out).

Both clients wait the same way: subscribe to the stream first (the server then sends each
watched job's current status, read after the subscription, so a job that finished before the
subscription is not missed), take statuses from it, and read the jobs with ``GET`` whenever the
stream is silent for :data:`CHECK_SECONDS` (a safety net: a stream event can be lost, and the
server's stream does not show the statuses of a job resubmitted after ``failed``). Without a
stream they poll with backoff.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from models.enums import FINAL_STATUSES, JobStatus
from smartq.client.events import LogLine, StatusEvent
from smartq.errors import Unreachable, WaitTimeout

#: How long a wait trusts a silent stream before reading the jobs itself.
CHECK_SECONDS = 2.0
#: Reads of the jobs that got no answer in a row (each already retried) before a wait gives up:
#: about as long as a stream keeps reconnecting.
MAX_CHECK_FAILURES = 20


class Deadline:
    """When a wait for ``what`` gives up (never, for a ``timeout`` of None)."""

    __slots__ = ("at", "timeout", "what")

    def __init__(self, timeout: float | None, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.at = None if timeout is None else time.monotonic() + timeout

    def left(self, cap: float | None = None) -> float | None:
        """Seconds left (None: no end), at most ``cap``."""
        if self.at is None:
            return cap
        remaining = max(0.0, self.at - time.monotonic())
        return remaining if cap is None else min(remaining, cap)

    @property
    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def expired(self) -> WaitTimeout:
        return WaitTimeout(self.what, self.timeout or 0.0)


class Watched(Protocol):
    """What a watch needs of a job (both Job classes are)."""

    @property
    def id(self) -> uuid.UUID: ...

    def _saw(self, event: StatusEvent) -> None: ...

    def _update(self, doc: dict[str, Any]) -> None: ...

    @property
    def status(self) -> JobStatus: ...


class Watch:
    """Jobs waited for until each has a final status; each is given out once when it does."""

    def __init__(self, jobs: Iterable[Watched]) -> None:
        self.pending: dict[uuid.UUID, Watched] = {}
        self.finished: list[Watched] = []
        self._check_failures = 0
        for job in jobs:
            if job.status in FINAL_STATUSES:
                self.finished.append(job)
            else:
                self.pending[job.id] = job

    @property
    def done(self) -> bool:
        return not self.pending

    def take(self) -> list[Watched]:
        """The jobs that became final since the last call."""
        out, self.finished = self.finished, []
        return out

    def saw(self, event: StatusEvent) -> None:
        job = self.pending.get(event.job_id)
        if job is None:
            return
        job._saw(event)
        if event.is_final:
            self.finished.append(self.pending.pop(event.job_id))

    def read(self, docs: Iterable[dict[str, Any]]) -> None:
        """Job documents read with ``GET``."""
        self._check_failures = 0
        for doc in docs:
            job = self.pending.get(uuid.UUID(doc["id"]))
            if job is None:
                continue
            job._update(doc)
            if job.status in FINAL_STATUSES:
                self.finished.append(self.pending.pop(job.id))

    def unanswered(self, error: Unreachable) -> None:
        """A read of the jobs got no answer (the API restarts?): raises ``error`` once too many
        did in a row, else the wait goes on."""
        self._check_failures += 1
        if self._check_failures >= MAX_CHECK_FAILURES:
            raise error


class LogCursor:
    """The lines a follower has given out (stream and ``GET`` overlap, so each is given out
    once) and where its next ``GET`` starts."""

    def __init__(self, job_id: uuid.UUID, attempt: int | None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.after: str | None = None
        self._seen: set[tuple[int, int]] = set()

    def stored(self, page: dict[str, Any]) -> tuple[list[LogLine], bool]:
        """A page of ``GET /jobs/{id}/logs``: its lines not given out yet, and whether more
        pages follow. The next read starts after the page's last line."""
        lines = [LogLine.of(raw, self.job_id) for raw in page["lines"]]
        if lines:
            last = lines[-1]
            self.after = f"{last.attempt}:{last.seq}"
        return [ln for ln in lines if self.new(ln)], page.get("next_after") is not None

    def new(self, line: LogLine) -> bool:
        """Whether ``line`` (of this job and attempt) is yet to be given out; marks it given."""
        if line.job_id != self.job_id or self.attempt not in (None, line.attempt):
            return False
        if line.position in self._seen:
            return False
        self._seen.add(line.position)
        return True
