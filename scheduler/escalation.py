"""Memory escalation: how much memory the retry of an attempt killed for memory asks for, or why
it has none. Pure: no I/O, no clock.

Choices:

* A failure is ``timeout``, ``memory`` (a ``MemoryError`` in the job, a kill by the worker's
  memory watchdog or the kernel's OOM killer), ``signal`` (killed by a signal the worker did not
  send) or ``error`` (anything else the job raised): :class:`models.enums.FailureClass`, decided
  by the worker (:func:`worker.outcomes.classify_failure`), which saw it. Only ``memory``
  escalates.
* The retry of a memory failure asks ``min(largest worker, max(2 × request, 1.25 × peak))`` MB,
  like Nextflow's ``memory { 2.GB * task.attempt }`` but fed by the observed peak, so a job
  that needed 3.5× its request gets there in two steps, not three.
* Escalations have their own counter, bounded by :data:`MAX_MEMORY_ESCALATIONS`: they are the
  scheduler's correction of a bad request, not the user's retry budget for bad luck.
* When even the largest accepting worker cannot hold what the retry needs (or it cannot grow
  any further), the job fails at once, saying how much it needs and what the largest has.
  "Largest" counts the workers that could hold the job but for its memory (its type, cpu,
  named resources and labels), accepting ones first, else any known.
* The retry goes at once, without backoff, and counts as nothing for the type's breaker: the
  job did nothing wrong but ask for too little.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.enums import FailureClass
from scheduler.resources import counts_fit, labels_match
from scheduler.retry import RetryDecision, Verdict

if TYPE_CHECKING:
    from scheduler.state import JobRecord
    from scheduler.workers import WorkerRecord

__all__ = [
    "MAX_MEMORY_ESCALATIONS",
    "Escalation",
    "FailureClass",
    "escalated_memory",
    "largest_memory",
    "memory_retry",
]

#: At most this many memory escalations per job (on top of ``max_attempts``).
MAX_MEMORY_ESCALATIONS = 3


@dataclass(frozen=True, slots=True)
class Escalation:
    """The memory a retry asks for, or why there is no retry (``memory_mb`` is then None)."""

    memory_mb: int | None
    error: str | None = None


def escalated_memory(
    request_mb: int,
    peak_mb: int | None,
    largest_worker_mb: int | None,
    escalations: int,
    max_escalations: int = MAX_MEMORY_ESCALATIONS,
) -> Escalation:
    """What the retry of an attempt killed for memory asks for.

    ``escalations`` is how many this job already had. ``largest_worker_mb`` is the memory of
    the largest worker that accepts the job's type (None: none is known, so nothing caps it).
    """
    if escalations >= max_escalations:
        return Escalation(
            None, error=f"killed for memory after {escalations} memory escalations (the bound)"
        )
    wanted = max(2 * request_mb, math.ceil(1.25 * (peak_mb or 0)))
    # Without a peak, any growth may do: only a job already at the largest worker cannot retry.
    needed = math.ceil(1.25 * peak_mb) if peak_mb else request_mb + 1
    if largest_worker_mb is None:
        return Escalation(wanted)
    if needed > largest_worker_mb or request_mb >= largest_worker_mb:
        shown = wanted if request_mb >= largest_worker_mb else needed
        return Escalation(
            None,
            error=(
                f"needs {shown} MB after a memory kill; "
                f"the largest worker has {largest_worker_mb} MB"
            ),
        )
    return Escalation(min(largest_worker_mb, wanted))


def largest_memory(workers: Iterable[WorkerRecord], job: JobRecord) -> int | None:
    """The memory of the largest worker that could hold ``job`` but for its memory: among the
    accepting workers, else among all known (None: no worker could)."""
    fit = [
        w
        for w in workers
        if w.offers(job.type)
        and w.cpu_total >= job.cpu
        and counts_fit(job.resources, w.res_total)
        and labels_match(job.labels, w.labels)
    ]
    accepting = [w.mem_total for w in fit if w.accepting]
    return max(accepting or [w.mem_total for w in fit], default=None)


def memory_retry(
    job: JobRecord, peak_mb: int | None, workers: Iterable[WorkerRecord]
) -> tuple[RetryDecision, int | None]:
    """What attempt ``job.attempts``, killed for memory, means: a retry at once asking for the
    memory returned, or a failure saying why there is none."""
    out = escalated_memory(job.mem, peak_mb, largest_memory(workers, job), job.memory_escalations)
    if out.memory_mb is None:
        return RetryDecision(Verdict.FAIL, reason=f"attempt {job.attempts}: {out.error}"), None
    seen = f"{peak_mb} MB seen" if peak_mb else "no peak seen"
    reason = (
        f"attempt {job.attempts} killed for memory ({seen}, {job.mem} MB asked); retrying with "
        f"{out.memory_mb} MB (memory escalation {job.memory_escalations + 1} of "
        f"{MAX_MEMORY_ESCALATIONS})"
    )
    return RetryDecision(Verdict.RETRY, reason=reason), out.memory_mb
