"""The verdict on how an attempt ended, as pure functions of what happened.

A job may return, be asked to stop (cancel, lost, hand-back) or reach its deadline, and two of
those may happen together. :func:`why_ended` settles that race, :func:`stopped` gives the ending
of an attempt that did not end on its own, and :func:`end_line` words the attempt's last log
line. No clock, no I/O: times are passed in, so each is tested as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.enums import Outcome
from worker.outcomes import Ending

#: Why waiting for a job ended: it returned, a stop was asked, or its deadline passed.
Why = Literal["done", "stop", "timeout"]

_END_LEVELS = {
    Outcome.SUCCEEDED: "info",
    Outcome.FAILED: "warning",
    Outcome.FAILED_PERMANENTLY: "error",
    Outcome.RETRY_REQUESTED: "warning",
    Outcome.TIMED_OUT: "error",
    Outcome.CANCELLED: "warning",
    Outcome.LOST: "warning",
    Outcome.HANDED_BACK: "warning",
}
#: Appended to the end line of an attempt whose thread outlived it.
STILL_RUNNING = "; its thread is still running and holds its resources until it returns"


@dataclass(frozen=True, slots=True)
class Stop:
    """The first request to stop an attempt: its outcome (``CANCELLED``, ``LOST`` or
    ``HANDED_BACK``), the reason reported, and when (``time.monotonic()``) it was asked."""

    outcome: Outcome
    reason: str
    asked: float


def why_ended(*, job_done: bool, returned: float | None, stop: Stop | None, stop_seen: bool) -> Why:
    """Why the wait for a job ended. ``job_done``: the job's future is done; ``returned``: when
    its function returned, if known; ``stop_seen``: the cancel flag fired during the wait."""
    # A job that returned before any stop was asked is done, even if the stop arrived while we
    # were waking up: its work happened. One that returned after the stop is stopped (it most
    # likely returned because it saw ctx.cancelled()).
    if job_done and returned is not None and (stop is None or returned <= stop.asked):
        return "done"
    if stop_seen or stop is not None:
        return "stop"
    return "done" if job_done else "timeout"


def stopped(why: Why, stop: Stop | None, limit: float | None, *, released: bool = True) -> Ending:
    """The ending of an attempt stopped by ``why`` (``"stop"`` or ``"timeout"``)."""
    if why == "timeout":
        return Ending(Outcome.TIMED_OUT, error=f"timed out after {limit:g}s", released=released)
    if stop is None:
        return Ending(Outcome.CANCELLED, error="cancelled", released=released)
    return Ending(stop.outcome, error=stop.reason or "cancelled", released=released)


def end_line(ending: Ending, took: float) -> tuple[str, str]:
    """``(level, text)`` of the log line that ends an attempt that ran ``took`` seconds."""
    ran = f"{took:.2f}s"
    match ending.outcome:
        case Outcome.SUCCEEDED:
            text = f"succeeded in {ran}"
        case Outcome.FAILED:
            text = f"failed after {ran}: {ending.error}"
        case Outcome.FAILED_PERMANENTLY:
            text = f"failed permanently after {ran}: {ending.error}"
        case Outcome.RETRY_REQUESTED:
            text = f"retry requested in {ending.retry_after:g}s after {ran}: {ending.error}"
        case Outcome.CANCELLED:
            text = f"cancelled after {ran}: {ending.error}"
        case _:  # TIMED_OUT carries its own wording; LOST is the hand-back reason
            text = ending.error or ending.outcome.value
    if not ending.released:
        text += STILL_RUNNING
    if ending.traceback:
        return "error", f"{text}\n{ending.traceback}"
    return _END_LEVELS[ending.outcome], text
