"""Job functions for the isolated-process tests: a child process imports them by module path."""

from __future__ import annotations

import os
import signal
import time

from smartq.errors import NonRetryableError
from smartq.registry import Registry, job
from worker import builtin_jobs
from worker.context import JobContext

reg = Registry()


@job("iso_add", isolated=True, into=reg)
def iso_add(ctx: JobContext) -> dict[str, int]:
    ctx.log.info("child pid %d", os.getpid())
    ctx.log.warning("adding %s", ctx.payload)
    return {"sum": int(ctx.payload["a"]) + int(ctx.payload["b"])}


@job("iso_sleep_forever", isolated=True, into=reg)
def iso_sleep_forever(ctx: JobContext) -> None:
    """Ignores SIGTERM (the flag) on purpose: only SIGKILL stops it."""
    ctx.log.info("child pid %d", os.getpid())
    while True:
        time.sleep(1)


@job("iso_cooperative", isolated=True, into=reg)
def iso_cooperative(ctx: JobContext) -> None:
    ctx.log.info("child pid %d", os.getpid())
    while not ctx.cancelled():
        time.sleep(0.01)
    ctx.log.info("saw the cancel flag")


@job("iso_fatal", isolated=True, into=reg)
def iso_fatal(ctx: JobContext) -> None:
    raise NonRetryableError("bad input")


@job("iso_crash", isolated=True, into=reg)
def iso_crash(ctx: JobContext) -> None:
    os._exit(3)


@job("iso_self_kill", isolated=True, into=reg)
def iso_self_kill(ctx: JobContext) -> None:
    """Dies of a signal nobody else sent."""
    os.kill(os.getpid(), signal.SIGKILL)


@job("iso_memory_error", isolated=True, into=reg)
def iso_memory_error(ctx: JobContext) -> None:
    raise MemoryError("cannot allocate")


#: The built-in ``memory`` type (N MB held s seconds), in this registry too.
iso_memory = job("iso_memory", isolated=True, into=reg)(builtin_jobs.memory)
