"""How a job function's return or exception becomes an attempt :class:`Ending`.

Shared by the three ways an attempt runs (event loop, thread, child process), so a job is
classified the same wherever it ran.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from models import storable
from models.enums import FailureClass, Outcome
from smartq.errors import NonRetryableError, Retry, RetryableError
from worker.context import JobContext


@dataclass(frozen=True, slots=True)
class Ending:
    """How one attempt ended, before it becomes an ``AttemptFinished`` message."""

    outcome: Outcome
    result: Any = None
    error: str | None = None
    retry_after: float | None = None
    #: Set for unexpected exceptions only; logged with the end line at error level.
    traceback: str | None = None
    #: False while a thread that timed out or ignored cancellation still runs.
    released: bool = True
    #: How a failed attempt failed, when the outcome does not say it (see
    #: :func:`failure_class`); the most memory its process was seen to use (isolated jobs).
    failure_class: FailureClass | None = None
    peak_memory_mb: int | None = None


#: The class of a failure that carries none of its own.
_IMPLIED = {
    Outcome.FAILED: FailureClass.ERROR,
    Outcome.FAILED_PERMANENTLY: FailureClass.ERROR,
    Outcome.TIMED_OUT: FailureClass.TIMEOUT,
}


def failure_class(ending: Ending) -> FailureClass | None:
    """The class an attempt's report carries: its own, else what its outcome implies (None for
    an attempt that did not fail: a success, a retry it asked for, a cancel, a hand-back)."""
    if ending.failure_class is not None:
        return ending.failure_class
    return _IMPLIED.get(ending.outcome)


def classify_failure(
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


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, the error string of a report."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException) -> Ending:
    """``Retry`` → retry after its delay; ``NonRetryableError`` → no retry; anything else
    (``RetryableError``, a plain exception, even a ``TimeoutError`` the job raised) → retry;
    a ``MemoryError`` is a failure of class ``memory`` (its retry may ask for more)."""
    if isinstance(exc, Retry):
        return Ending(Outcome.RETRY_REQUESTED, error=describe(exc), retry_after=exc.delay)
    if isinstance(exc, NonRetryableError):
        return Ending(Outcome.FAILED_PERMANENTLY, error=describe(exc))
    if isinstance(exc, RetryableError):
        return Ending(Outcome.FAILED, error=describe(exc))
    return Ending(
        Outcome.FAILED,
        error=describe(exc),
        traceback="".join(traceback.format_exception(exc)).rstrip(),
        failure_class=classify_failure(memory_error=isinstance(exc, MemoryError)),
    )


def succeeded(value: Any) -> Ending:
    """A returned value is the result if it is JSON; it is normalised to plain JSON types
    (a datetime becomes its ISO string) so every report serialises the same way, and made
    storable (models.storable: a 70-bit integer becomes its string, NaN null, NUL U+FFFD)."""
    try:
        result = orjson.loads(orjson.dumps(storable.json_value(value)))
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        return Ending(
            Outcome.FAILED_PERMANENTLY,
            error=f"result is not JSON-serialisable: {describe(exc)}",
        )
    return Ending(Outcome.SUCCEEDED, result=result)


def call_sync(func: Callable[[JobContext], Any], ctx: JobContext) -> Ending:
    try:
        value = func(ctx)
    except (Exception, SystemExit) as exc:
        return classify(exc)
    return succeeded(value)


async def call_async(func: Callable[[JobContext], Awaitable[Any]], ctx: JobContext) -> Ending:
    try:
        value = await func(ctx)
    except Exception as exc:
        return classify(exc)
    return succeeded(value)
