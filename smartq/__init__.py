"""smartq: a dependency- and resource-aware job scheduler.

User code registers job types with :func:`smartq.job`::

    import smartq

    @smartq.job(timeout=30, max_attempts=5, cpu_units=2)
    async def resize(ctx):
        ctx.log.info("resizing %s", ctx.payload["path"])
        return {"ok": True}
"""

from smartq.errors import NonRetryableError, Retry, RetryableError, SmartqError
from smartq.registry import JobType, job, registry

__all__ = [
    "JobType",
    "NonRetryableError",
    "Retry",
    "RetryableError",
    "SmartqError",
    "job",
    "registry",
]
