"""Job types used only by the tests (imported by tests/conftest.py, so every process of a
test knows them)."""

from __future__ import annotations

import os
import signal
import time

import smartq
from worker.context import JobContext


@smartq.job("stubborn")
def stubborn(ctx: JobContext) -> dict[str, float]:
    """A plain function that ignores its timeout and cancellation for ``seconds``."""
    seconds = float(ctx.payload.get("seconds", 3))
    time.sleep(seconds)
    return {"slept": seconds}


@smartq.job("hold")
def hold(ctx: JobContext) -> dict[str, float]:
    """Holds its resources for ``seconds`` while honouring cancellation."""
    seconds = float(ctx.payload.get("seconds", 0.2))
    ctx.sleep(seconds)
    return {"held": seconds}


@smartq.job("ask_retry")
def ask_retry(ctx: JobContext) -> dict[str, int]:
    """Asks to be retried after ``delay`` seconds on its first attempt."""
    if ctx.attempt == 1:
        raise smartq.Retry(float(ctx.payload.get("delay", 0.5)))
    return {"attempt": ctx.attempt}


@smartq.job("drip")
def drip(ctx: JobContext) -> dict[str, int]:
    """Logs ``lines`` lines, ``every`` seconds apart (to watch logs arrive while it runs)."""
    lines = int(ctx.payload.get("lines", 5))
    for i in range(lines):
        ctx.log.info("drip %d of %d", i + 1, lines)
        ctx.sleep(float(ctx.payload.get("every", 0.1)))
    return {"lines": lines}


@smartq.job("unstorable")
def unstorable(ctx: JobContext) -> dict[str, object]:
    """Logs and returns what PostgreSQL or orjson cannot hold as such (NUL, a 70-bit integer,
    NaN); fails with a NUL in its error on its first attempt."""
    ctx.log.info("a\x00b")
    if ctx.attempt == 1:
        raise ValueError("bad\x00error")
    return {"k\x00": "v\x00", "big": 2**70, "nan": float("nan")}


@smartq.job("greet")
def greet(ctx: JobContext) -> dict[str, str]:
    """A type that only some test workers register (placement by job type)."""
    return {"hello": str(ctx.payload.get("name", "world"))}


@smartq.job("self_kill", isolated=True)
def self_kill(ctx: JobContext) -> None:
    """An isolated job that kills itself with SIGKILL (a signal its worker did not send)."""
    os.kill(os.getpid(), signal.SIGKILL)


@smartq.job("fan_out")
def fan_out(ctx: JobContext) -> dict[str, object]:
    """Submits ``n`` ``hold`` children and a ``fan_in`` continuation after them; with
    ``fail_first``, its first attempt fails after submitting them all (the retry must not make
    them twice)."""
    n = int(ctx.payload.get("n", 3))
    children = [ctx.submit("hold", {"seconds": 0.05, "i": i}) for i in range(n)]
    then = ctx.continue_with("fan_in", {"n": n})
    if ctx.payload.get("fail_first") and ctx.attempt == 1:
        raise RuntimeError("failing after submitting the children, to be retried")
    return {"children": len(children), "continuation": str(then.id)}


@smartq.job("fan_in")
def fan_in(ctx: JobContext) -> dict[str, object]:
    return {"gathered": ctx.payload.get("n")}


@smartq.job("spawn_dag")
def spawn_dag(ctx: JobContext) -> dict[str, str]:
    """Submits a two-job DAG with ``ctx.batch()``: ``second`` after ``first``."""
    with ctx.batch() as b:
        first = b.add("hold", {"seconds": 0.2}, key="first", priority="high")
        second = b.add("noop", key="second", after=[first])
    return {"first": str(first.id), "second": str(second.id)}


@smartq.job("spawn_isolated", isolated=True)
def spawn_isolated(ctx: JobContext) -> dict[str, str]:
    """An isolated job (a child process) submitting a job and its continuation."""
    child = ctx.submit("noop", key="only")
    then = ctx.continue_with("fan_in", {"n": 1})
    return {"child": str(child.id), "continuation": str(then.id)}
