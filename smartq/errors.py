"""One exception base for smartq, with a short hierarchy.

Job code uses the last three to say how an attempt should end: ordinary exceptions and
:class:`RetryableError` retry with backoff while attempts remain, :class:`NonRetryableError` fails
the job at once, :class:`Retry` asks for another attempt after a given delay.
"""

from __future__ import annotations


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
