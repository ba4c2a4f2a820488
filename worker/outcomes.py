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
from models.enums import Outcome
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


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, the error string of a report."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException) -> Ending:
    """``Retry`` → retry after its delay; ``NonRetryableError`` → no retry; anything else
    (``RetryableError``, a plain exception, even a ``TimeoutError`` the job raised) → retry."""
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
