"""What an answer means and when to ask again, for both clients: an error answer as the
:class:`~smartq.errors.APIError` of its status (with the server's ``error``, ``detail`` and
``Retry-After``), and :class:`RetryPolicy`, which says whether and when a request is tried again.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson

from smartq.client._core import Call
from smartq.errors import (
    APIError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unreachable,
)

#: Statuses worth another try: the server asked to slow down or could not serve for now.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# -- answers ----------------------------------------------------------------------------------

#: An answer's HTTP status → the class of its error (others are a plain :class:`APIError`).
BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def api_error(
    status: int, message: str, detail: Any = None, retry_after: float | None = None
) -> APIError:
    """The error of an answer of ``status``."""
    return BY_STATUS.get(status, APIError)(status, message, detail, retry_after)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_of(status: int, content: bytes, retry_after_header: str | None) -> APIError:
    """The error an answer of ``status`` means, with the server's ``error`` and ``detail``."""
    message, detail = "", None
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("detail") or "")
        detail = body.get("detail") if "error" in body else None
    if not message:
        message = content[:200].decode(errors="replace") or f"HTTP {status}"
    return api_error(status, message, detail, retry_after(retry_after_header))


def decode(content: bytes) -> Any:
    return orjson.loads(content) if content else None


# -- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a request again: after a connection error or a 429/502/503/504, up to
    ``attempts`` tries in all, waiting ``Retry-After`` when the server sent one (up to
    ``max_retry_after``: a longer wait is given back to the caller as the error), else
    ``base_delay × 2^(n−1)`` up to ``max_delay``, less up to half of it at random so clients
    that failed together do not come back together."""

    attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0

    def backoff(self, attempt: int) -> float:
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return delay * (1 - random.random() / 2)

    def after(self, attempt: int, error: APIError | None) -> float | None:
        """Seconds to wait before try ``attempt + 1`` of a repeatable request whose try
        ``attempt`` failed with ``error`` (None: no answer came); None to give up."""
        if attempt >= self.attempts:
            return None
        if error is None:
            return self.backoff(attempt)
        if error.status not in RETRY_STATUSES:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after + random.random() * min(0.1, error.retry_after / 10)
        return self.backoff(attempt)


def retry_delay(
    policy: RetryPolicy,
    call: Call,
    tries: int,
    error: APIError | None,
    cause: BaseException | None = None,
) -> float:
    """How long to wait before trying ``call`` again after try ``tries`` failed with
    ``error`` (an answer) or ``cause`` (no answer); raises that error (:class:`Unreachable`
    for no answer) when it is not to be tried again."""
    delay = policy.after(tries, error) if call.repeatable else None
    if delay is not None:
        return delay
    if error is not None:
        raise error
    raise Unreachable(f"{call.method} {call.path}: {cause!r}") from cause


#: How the stream reconnects: for about half a minute, so an API restart is ridden out.
STREAM_RECONNECT = RetryPolicy(attempts=20, base_delay=0.1, max_delay=2.0)
#: How a wait polls when it has no stream: soon at first, then every second.
POLL = RetryPolicy(attempts=1_000_000, base_delay=0.05, max_delay=1.0)
