"""Built-in job types for demos, tests and benchmarks (documented in README)."""

from __future__ import annotations

import asyncio
import time

from smartq.errors import NonRetryableError, RetryableError
from smartq.registry import job
from worker.context import JobContext


@job("noop")
def noop(ctx: JobContext) -> None:
    """Does nothing; measures the scheduler's own overhead."""
    return None


@job("sleep")
async def sleep(ctx: JobContext) -> dict[str, float]:
    """``{"seconds": s}``: waits s seconds without holding a thread."""
    seconds = float(ctx.payload.get("seconds", 1.0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@job("steps")
async def steps(ctx: JobContext) -> dict[str, int]:
    """``{"steps": n, "every": s}``: n steps of s seconds, reporting progress after each."""
    count = int(ctx.payload.get("steps", 5))
    every = float(ctx.payload.get("every", 0.2))
    for i in range(1, count + 1):
        await asyncio.sleep(every)
        ctx.progress(i / count, f"step {i} of {count}")
    return {"steps": count}


@job("flaky")
def flaky(ctx: JobContext) -> dict[str, int]:
    """``{"fail_times": n, "retryable": bool}``: fails the first n attempts (n = -1: always)."""
    fail_times = int(ctx.payload.get("fail_times", 1))
    retryable = bool(ctx.payload.get("retryable", True))
    if fail_times < 0 or ctx.attempt <= fail_times:
        message = f"flaky: attempt {ctx.attempt} fails (fail_times={fail_times})"
        raise RetryableError(message) if retryable else NonRetryableError(message)
    return {"succeeded_on_attempt": ctx.attempt}


@job("log")
def log(ctx: JobContext) -> dict[str, int]:
    """``{"lines": n}``: emits n log lines."""
    lines = int(ctx.payload.get("lines", 10))
    for i in range(lines):
        ctx.log.info("line %d of %d", i + 1, lines)
    return {"lines": lines}


@job("cpu")
def cpu(ctx: JobContext) -> dict[str, int]:
    """``{"seconds": s}``: burns CPU in a plain function for s seconds."""
    seconds = float(ctx.payload.get("seconds", 1.0))
    deadline = time.monotonic() + seconds
    loops = 0
    while time.monotonic() < deadline:
        sum(i * i for i in range(1000))
        loops += 1
        if loops % 50 == 0 and ctx.cancelled():
            break
    return {"loops": loops}
