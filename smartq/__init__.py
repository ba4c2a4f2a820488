"""smartq: a dependency- and resource-aware job scheduler.

User code registers job types with :func:`smartq.job`::

    import smartq

    @smartq.job(timeout=30, max_attempts=5, cpu_units=2)
    async def resize(ctx):
        ctx.log.info("resizing %s", ctx.payload["path"])
        return {"ok": True}

and submits them with the SDK, :class:`smartq.Client` or :class:`smartq.AsyncClient`::

    with smartq.Client() as client:  # SMARTQ_URL, SMARTQ_API_KEY
        print(client.submit(resize, {"path": "a.png"}).result(timeout=60))

A receiver of batch callbacks checks a delivery with ``smartq.callbacks.verify(secret,
headers["Smartq-Signature"], body)``.
"""

from typing import TYPE_CHECKING, Any

from smartq import callbacks
from smartq.errors import (
    APIError,
    Conflict,
    Forbidden,
    InvalidSignature,
    JobCancelled,
    JobFailed,
    NonRetryableError,
    NotFound,
    RateLimited,
    Retry,
    RetryableError,
    SmartqError,
    Unauthorized,
    Unavailable,
    Unreachable,
    WaitTimeout,
)
from smartq.flowspec import BreakerPolicy
from smartq.registry import JobType, job, registry

if TYPE_CHECKING:
    from smartq.client import AsyncClient, Client

#: Imported on first use: the SDK brings httpx and websockets (about a second of imports),
#: which the processes that only ``import smartq`` for ``@smartq.job`` do not need.
_CLIENT = frozenset({"AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from smartq import client

        return getattr(client, name)
    raise AttributeError(f"module 'smartq' has no attribute {name!r}")


__all__ = [
    "APIError",
    "AsyncClient",
    "BreakerPolicy",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidSignature",
    "JobCancelled",
    "JobFailed",
    "JobType",
    "NonRetryableError",
    "NotFound",
    "RateLimited",
    "Retry",
    "RetryableError",
    "SmartqError",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "WaitTimeout",
    "callbacks",
    "job",
    "registry",
]
