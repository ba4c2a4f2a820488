"""The three ways an attempt runs, chosen by its job type; each returns its :class:`Ending`.

* ``async def`` jobs run as a task on the event loop; a deadline or a stop cancels the task.
* plain ``def`` jobs run on a bounded thread pool. Python cannot kill a thread, so at the deadline
  the attempt ends ``TIMED_OUT`` with ``released=False`` and its cancel flag is set; the
  executor hears through :attr:`Setup.outlived` when the thread really returns.
* ``isolated=True`` plain jobs run in a child process, SIGTERMed then SIGKILLed at the deadline,
  and SIGKILLed by its memory watchdog above the attempt's ``memory_mb``.

Runners report nothing: they call :attr:`Setup.begin` when the job starts executing and return
how it ended; the executor turns both into reports (see :mod:`worker.executor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import BaseContext
from typing import Any

from models.enums import Outcome
from models.messages import AttemptFinished, Dispatch
from smartq.outbox import LoopHandoff
from smartq.registry import JobType
from worker.context import AttemptLog, JobContext
from worker.isolation import ChildRun, import_path
from worker.outcomes import Ending, call_async, call_sync, describe
from worker.verdict import Stop, Why, stopped, why_ended

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Attempt:
    """One attempt while it runs (and, for a thread that outlived it, until that returns)."""

    dispatch: Dispatch
    log: AttemptLog
    ctx: JobContext
    started: float | None = None  # time.monotonic() when the job began
    started_at: datetime | None = None
    stop: Stop | None = None  # the first stop request
    task: asyncio.Task[AttemptFinished] | None = None
    reported: bool = False  # AttemptFinished sent; listed until its thread returns
    returned: float | None = None  # time.monotonic() when the job's function returned

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.dispatch.job_id, self.dispatch.attempt)

    def mark_returned(self) -> None:
        if self.returned is None:
            self.returned = time.monotonic()

    def request_stop(self, outcome: Outcome, reason: str) -> None:
        if self.stop is None:
            self.stop = Stop(outcome, reason, time.monotonic())
        self.ctx.cancel_flag.set()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


@dataclass(frozen=True, slots=True)
class Setup:
    """What every runner is given by the executor."""

    worker_id: str
    #: Bound to the executor's loop: how a job's thread reaches it.
    handoff: LoopHandoff
    #: The attempt starts executing now; called on the loop or in the job's thread.
    begin: Callable[[Attempt], None]
    #: The thread of an attempt that ended with ``released=False`` returned; called in it.
    outlived: Callable[[Attempt], None]
    pool: ThreadPoolExecutor
    mp: BaseContext
    #: How long a stopped thread or task may take to return before the attempt ends anyway.
    cancel_grace: float
    #: Between SIGTERM and SIGKILL of an isolated job's child.
    kill_grace: float
    #: Between two samples of an isolated job's memory (0: not watched).
    memory_watch: float = 0.0


#: ``(attempt, job type, time limit in seconds or None, setup) -> ending``.
Runner = Callable[[Attempt, JobType, float | None, Setup], Awaitable[Ending]]


def runner_for(job_type: JobType) -> Runner:
    if job_type.is_async:
        return run_async
    if job_type.isolated:
        return run_isolated
    return run_thread


async def run_async(
    attempt: Attempt, job_type: JobType, limit: float | None, setup: Setup
) -> Ending:
    setup.begin(attempt)
    task = asyncio.create_task(call_async(job_type.func, attempt.ctx))
    task.add_done_callback(lambda _: attempt.mark_returned())
    why = await _wait(attempt, task, limit)
    if why == "done":
        if task.cancelled():
            return Ending(Outcome.FAILED, error="CancelledError: the job cancelled itself")
        return task.result()
    attempt.ctx.cancel_flag.set()
    task.cancel()
    await asyncio.wait({task}, timeout=setup.cancel_grace)
    if not task.done():
        logger.warning(
            "async job ignores cancellation; reporting it stopped anyway",
            extra={"action": "cancel_ignored", "job_id": str(attempt.dispatch.job_id)},
        )
    return stopped(why, attempt.stop, limit)


async def run_thread(
    attempt: Attempt, job_type: JobType, limit: float | None, setup: Setup
) -> Ending:
    began: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def body() -> Ending:
        try:
            setup.begin(attempt)
        finally:
            setup.handoff.resolve(began, None)
        try:
            return call_sync(job_type.func, attempt.ctx)
        finally:
            attempt.mark_returned()

    thread_future = setup.pool.submit(body)
    if await _wait(attempt, began, None) == "stop" and thread_future.cancel():
        return stopped("stop", attempt.stop, limit)  # never began: nothing to wait for
    done = asyncio.wrap_future(thread_future)
    why = await _wait(attempt, done, limit)
    if why == "done":
        return done.result()
    attempt.ctx.cancel_flag.set()
    if why == "stop":
        await asyncio.wait({done}, timeout=setup.cancel_grace)
    if done.done():
        return stopped(why, attempt.stop, limit)
    thread_future.add_done_callback(lambda _: setup.outlived(attempt))
    return stopped(why, attempt.stop, limit, released=False)


async def run_isolated(
    attempt: Attempt, job_type: JobType, limit: float | None, setup: Setup
) -> Ending:
    try:
        target = import_path(job_type.func)
    except Exception as exc:
        return Ending(Outcome.FAILED_PERMANENTLY, error=describe(exc))
    setup.begin(attempt)
    d = attempt.dispatch
    job = {
        "job_id": str(d.job_id),
        "attempt": d.attempt,
        "name": d.name,
        "job_type": d.job_type,
        "worker_id": setup.worker_id,
        "payload": d.payload,
    }
    child = ChildRun(setup.mp, attempt.log, target, job, d.memory_mb, setup.memory_watch)
    await asyncio.to_thread(child.start)
    why = await _wait(attempt, child.ended, limit)
    if why == "done":
        return child.ended.result()
    await child.stop(setup.kill_grace)
    ended = child.ended.result() if child.ended.done() else None
    if why == "timeout" and child.memory_killed and ended is not None:
        return ended  # killed for memory as the deadline came: the memory is what to fix
    peak = ended.peak_memory_mb if ended is not None else None
    return dataclasses.replace(stopped(why, attempt.stop, limit), peak_memory_mb=peak)


async def _wait(attempt: Attempt, job: asyncio.Future[Any], limit: float | None) -> Why:
    """Until ``job`` is done, a stop is requested, or ``limit`` seconds after the attempt
    began; :func:`worker.verdict.why_ended` says which counts when they race."""
    remaining = None
    if limit is not None and attempt.started is not None:
        remaining = max(0.0, attempt.started + limit - time.monotonic())
    stop = asyncio.ensure_future(attempt.ctx.cancel_flag.wait_async())
    try:
        done, _ = await asyncio.wait(
            {job, stop}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stop.cancel()
    return why_ended(
        job_done=job in done, returned=attempt.returned, stop=attempt.stop, stop_seen=stop in done
    )
