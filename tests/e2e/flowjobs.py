"""Job types of the flow-control tests (issue 17), imported by every process of those tests
(``SMARTQ_IMPORTS``)."""

from __future__ import annotations

import os

import smartq
from smartq.errors import NonRetryableError, RetryableError
from worker.context import JobContext

#: Small enough to trip within a test, a cool-down short enough to wait for.
QUICK = smartq.BreakerPolicy(
    min_attempts=4, window_seconds=60, failure_ratio=0.5, cooldown_seconds=3
)


@smartq.job("paced", rate_limit="5/s")
def paced(ctx: JobContext) -> None:
    """Does nothing, at most 5 a second across the cluster."""


@smartq.job("fragile", breaker=QUICK)
def fragile(ctx: JobContext) -> None:
    """Fails with a retryable error while the file ``payload["broken"]`` exists: the
    environment it needs is down."""
    if os.path.exists(ctx.payload["broken"]):
        raise RetryableError("the service fragile needs is down")


@smartq.job("fragile_slow", breaker=smartq.BreakerPolicy(min_attempts=4, cooldown_seconds=600))
def fragile_slow(ctx: JobContext) -> None:
    """``fragile`` with a cool-down longer than any test: its breaker stays open."""
    if os.path.exists(ctx.payload["broken"]):
        raise RetryableError("the service fragile_slow needs is down")


@smartq.job("picky", breaker=QUICK)
def picky(ctx: JobContext) -> None:
    """Refuses its input: the job's own fault, which says nothing of the environment."""
    raise NonRetryableError(f"bad input: {ctx.payload!r}")
