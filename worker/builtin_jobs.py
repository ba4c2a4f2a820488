"""Built-in job types for demos, tests and benchmarks (documented in README)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

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


#: Pages of the ``memory`` job are filled this much at a time, so the watchdog sees it grow.
_CHUNK_MB = 8


def _memory_payload(payload: dict[str, Any]) -> tuple[int, float]:
    mb, seconds = payload.get("mb"), payload.get("seconds", 0.0)
    if isinstance(mb, bool) or not isinstance(mb, int) or not 0 <= mb <= 1_048_576:
        raise NonRetryableError(f"memory: 'mb' must be a whole number of MB, 0-1048576, not {mb!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise NonRetryableError(
            f"memory: 'seconds' must be a number of seconds, 0 or more, not {seconds!r}"
        )
    return mb, float(seconds)


@job("memory", isolated=True)
def memory(ctx: JobContext) -> dict[str, float]:
    """``{"mb": N, "seconds": s}``: takes N MB (every page written, so its RSS grows by N MB
    on top of the interpreter's own) and holds it s seconds. Isolated: its worker holds it to
    its ``memory_mb``, which is how memory escalation is shown and tested."""
    mb, seconds = _memory_payload(ctx.payload)
    held = [b"\x01" * (min(_CHUNK_MB, mb - at) << 20) for at in range(0, mb, _CHUNK_MB)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled():
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return {"mb": sum(len(b) for b in held) >> 20, "seconds": seconds}
