"""Failure classes and memory escalation: what a failed attempt was, and how much memory its
retry asks for. Pure: no I/O, no clock.

Choices:

* A failure is ``timeout``, ``memory`` (a ``MemoryError`` in the job, a kill by the worker's
  memory watchdog or the kernel's OOM killer), ``signal`` (killed by a signal the worker did not
  send) or ``error`` (anything else the job raised). Only ``memory`` escalates.
* The retry of a memory failure asks ``min(largest worker, max(2 × request, 1.25 × peak))`` MB,
  like Nextflow's ``memory { 2.GB * task.attempt }`` but fed by the observed peak, so a job
  that needed 3.5× its request gets there in two steps, not three.
* Escalations have their own counter, bounded by :data:`MAX_MEMORY_ESCALATIONS`: they are the
  scheduler's correction of a bad request, not the user's retry budget for bad luck.
* When even the largest accepting worker cannot hold what the retry needs (or it cannot grow
  any further), the job fails at once, saying how much it needs and what the largest has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

#: At most this many memory escalations per job (on top of ``max_attempts``).
MAX_MEMORY_ESCALATIONS = 3


class FailureClass(StrEnum):
    """Why an attempt failed, stored on the attempt."""

    TIMEOUT = "timeout"
    MEMORY = "memory"
    SIGNAL = "signal"
    ERROR = "error"


def classify(
    *,
    timed_out: bool = False,
    memory_killed: bool = False,
    memory_error: bool = False,
    exit_signal: int | None = None,
    signal_ours: bool = False,
) -> FailureClass:
    """The class of a failed attempt from what the worker observed.

    A memory kill wins over a signal (the watchdog's SIGKILL is a memory kill, and so is the
    kernel's OOM SIGKILL when the worker saw the child's RSS at its limit); a timeout wins over
    the signal the worker sent to end it; a signal the worker did not send is ``signal``.
    """
    if memory_killed or memory_error:
        return FailureClass.MEMORY
    if timed_out:
        return FailureClass.TIMEOUT
    if exit_signal is not None and not signal_ours:
        return FailureClass.SIGNAL
    return FailureClass.ERROR


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
