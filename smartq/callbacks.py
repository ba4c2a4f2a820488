"""Batch callbacks as a receiver sees them: the events, the headers and the signature.

Every delivery is a ``POST`` of a JSON body with the headers ``Smartq-Delivery`` (the
delivery's id, the same on every retry: deduplicate on it; it is in the body too),
``Smartq-Event`` and ``Smartq-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 of ``"<t>.<body>"`` under the tenant's callback secret. A receiver checks it
with::

    from smartq.callbacks import verify

    verify(secret, request.headers["Smartq-Signature"], await request.body())  # or raises

Pure functions, no I/O: the scheduler signs with :func:`sign`, a receiver checks with
:func:`verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum

from smartq.errors import InvalidSignature

SIGNATURE_HEADER = "Smartq-Signature"
DELIVERY_HEADER = "Smartq-Delivery"
EVENT_HEADER = "Smartq-Event"
#: How old a signature :func:`verify` accepts by default (seconds, either way).
TOLERANCE_SECONDS = 300


class Event(StrEnum):
    """What a batch callback may ask to hear of."""

    BATCH_STARTED = "batch.started"  # a job of the batch started running
    BATCH_FINISHED = "batch.finished"  # every job of the batch ended; the body is its report
    JOB_FAILED = "job.failed"  # a job of the batch failed for good (once per failure)


EVENT_NAMES = tuple(e.value for e in Event)


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``Smartq-Signature`` header of ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    """The timestamp and every ``v1`` signature of a header (several may come while a
    secret is rotated)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: want t=<seconds>,v1=<hex>")
    return timestamp, signatures


def verify(
    secret: str | bytes,
    header: str,
    body: bytes,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a delivery: ``header`` is its ``Smartq-Signature``, ``body`` the raw bytes as
    received (not re-encoded JSON). Returns the signed timestamp; raises
    :class:`~smartq.errors.InvalidSignature` when the signature is malformed, wrong, or more
    than ``tolerance`` seconds from ``now`` (default: the clock), which bounds replays."""
    timestamp, signatures = _parse(header)
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignature("signature does not match the body under this secret")
    at = time.time() if now is None else now
    if abs(at - timestamp) > tolerance:
        raise InvalidSignature(
            f"signature timestamp {timestamp} is {abs(at - timestamp):.0f}s from now "
            f"(tolerance {tolerance:.0f}s)"
        )
    return timestamp
