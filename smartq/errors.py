"""One exception base for smartq, with a short hierarchy.

Job code says how an attempt should end with three of them: ordinary exceptions and
:class:`RetryableError` retry with backoff while attempts remain, :class:`NonRetryableError` fails
the job at once, :class:`Retry` asks for another attempt after a given delay.

The SDK (:mod:`smartq.client`) raises those at the end: :class:`APIError` is an answer the server
gave (its HTTP status, its ``error`` headline and its ``detail``), one subclass per status a
caller may want to catch alone; :class:`Unreachable` is no answer at all. :class:`JobFailed`,
:class:`JobCancelled` and :class:`WaitTimeout` are about a job's outcome, not about the request
that read it.
"""

from __future__ import annotations

import uuid
from typing import Any


class SmartqError(Exception):
    """Base of every error smartq raises on purpose."""


class ConfigurationError(SmartqError):
    """Settings or arguments that cannot work (bad URL, unknown module...)."""


class UnknownJobType(SmartqError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown job type {name!r}; registered types: {', '.join(known)}")
        self.name = name
        self.known = known


class UnknownKey(SmartqError):
    """No API key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")
        self.key_id = key_id


class RetryableError(SmartqError):
    """The attempt failed; retry with the job's backoff while attempts remain."""


class NonRetryableError(SmartqError):
    """The attempt failed in a way another attempt cannot fix: fail the job now."""


class Retry(SmartqError):
    """Ask for another attempt after ``delay`` seconds (counts against max_attempts)."""

    def __init__(self, delay: float = 0.0, message: str = "") -> None:
        super().__init__(message or f"retry requested in {delay}s")
        self.delay = delay


class StreamRequestError(SmartqError):
    """A live-stream request that cannot be served; ``kind`` says why: :attr:`INVALID`, a bad
    filter or message; :attr:`NOT_FOUND`, a job or batch that does not exist (or is another
    tenant's); :attr:`FORBIDDEN`, events the key may not see (monitoring without the
    ``monitor`` scope)."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"

    def __init__(self, message: str, kind: str = INVALID) -> None:
        super().__init__(message)
        self.kind = kind


class SubmissionRejected(SmartqError):
    """A submission that cannot be accepted as it is; ``kind`` says why: :attr:`INVALID` (a
    cycle, an unknown dependency or type, an unstorable payload) or :attr:`TOO_LARGE`. The API
    alone maps a kind to an HTTP status; ``detail`` goes into its error shape."""

    INVALID = "invalid"
    TOO_LARGE = "too_large"

    def __init__(self, message: str, detail: object = None, kind: str = INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.kind = kind


class OverQuota(SmartqError):
    """A submission over one of its tenant's quotas for now (its submit rate, its active jobs):
    nothing was written and the same request may succeed later. ``quota`` names the quota,
    ``detail`` (its limit and the count against it) goes into the API's error shape, and
    ``retry_after`` is the whole seconds to wait; the API answers 429."""

    def __init__(self, message: str, quota: str, detail: dict[str, Any], retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.quota = quota
        self.detail = {"quota": quota, **detail}
        self.retry_after = retry_after


# -- the SDK's errors ---------------------------------------------------------------------


class APIError(SmartqError):
    """The server refused or could not serve a request. ``status`` is the HTTP status (a
    stream's close code 44xx is reported as 4xx), ``message`` the server's headline, ``detail``
    its details (a list of problems, a dict, or None), ``retry_after`` the seconds its
    ``Retry-After`` asked for (None without one)."""

    def __init__(
        self, status: int, message: str, detail: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.detail = detail
        self.retry_after = retry_after


class NotFound(APIError):
    """404: no such job or batch (or another tenant's)."""


class Conflict(APIError):
    """409: the job is not in a state that allows it (cancel a finished job, retry a running
    one), or an idempotency key was used for another body."""


class Unauthorized(APIError):
    """401: no key, or one that is unknown, revoked, expired or malformed."""


class Forbidden(APIError):
    """403: a valid key without the scope this needs."""


class RateLimited(APIError):
    """429: too many requests; raised once the client's retries are used up."""


class Unavailable(APIError):
    """502, 503 or 504: the server (or the database behind it) cannot serve now; nothing was
    written. Raised once the client's retries are used up."""


class Unreachable(SmartqError):
    """No answer: the connection failed or timed out on every try (the cause is chained)."""


class JobFailed(SmartqError):
    """The job ended ``failed``: ``error`` is its last error, ``attempts`` how many it made."""

    def __init__(self, job_id: uuid.UUID, error: str | None, attempts: int) -> None:
        super().__init__(f"job {job_id} failed after {attempts} attempt(s): {error}")
        self.job_id = job_id
        self.error = error
        self.attempts = attempts


class JobCancelled(SmartqError):
    """The job ended ``cancelled``; ``reason`` says by whom or because of which job."""

    def __init__(self, job_id: uuid.UUID, reason: str | None) -> None:
        super().__init__(f"job {job_id} was cancelled: {reason}")
        self.job_id = job_id
        self.reason = reason


class WaitTimeout(SmartqError, TimeoutError):
    """A wait ended before the job (or batch) finished; it goes on running."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"{what} did not finish within {timeout:g}s")
        self.what = what
        self.timeout = timeout


class InvalidSignature(SmartqError):
    """A callback's ``Smartq-Signature`` does not prove the body came from smartq: malformed,
    signed with another secret, or older than the tolerance (:func:`smartq.callbacks.verify`)."""


class CallbackRefused(SmartqError):
    """A callback URL smartq will not call (a scheme other than http(s), an address that is
    loopback, private, link-local… and not allowed): :mod:`smartq.urlguard`."""
