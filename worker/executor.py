"""Run one dispatched attempt and report how it ended; independent of the broker.

Three ways to run, chosen by the job type:

* ``async def`` jobs run as a task on the event loop; a deadline or a cancel cancels the task.
* plain ``def`` jobs run on a bounded thread pool. Python cannot kill a thread, so at the deadline
  the attempt is reported ``TIMED_OUT`` with ``released=False`` and its cancel flag is set; a
  ``ResourcesReleased`` follows when the thread really returns, and the scheduler frees the
  attempt's cpu and memory only then. Until that moment the attempt stays in :meth:`running`.
* ``isolated=True`` plain jobs run in a child process, SIGTERMed then SIGKILLed at the deadline.

Reports (``AttemptStarted``, ``AttemptFinished``, ``ResourcesReleased``) are always delivered on
the event loop's thread, so the report callback may use ``asyncio.Queue.put_nowait``. Log lines go
to the log sink from whichever thread logged (see :data:`worker.context.LogSink`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from models.enums import Outcome
from models.messages import (
    AttemptFinished,
    AttemptStarted,
    Dispatch,
    ResourcesReleased,
    RunningAttempt,
)
from smartq.errors import UnknownJobType
from smartq.registry import JobType, Registry
from worker.context import AttemptLog, JobContext, LogSink, make_job_logger, utcnow
from worker.isolation import ChildRun, import_path, mp_context
from worker.outcomes import Ending, call_async, call_sync, describe

logger = logging.getLogger(__name__)

Report = AttemptStarted | AttemptFinished | ResourcesReleased
#: Receives every report, on the event loop's thread. Must not block.
ReportSink = Callable[[Report], None]

SHUTDOWN_REASON = "handed back: worker shutting down"
_Why = Literal["done", "stop", "timeout"]
_Key = tuple[uuid.UUID, int]

_END_LEVELS = {
    Outcome.SUCCEEDED: "info",
    Outcome.FAILED: "warning",
    Outcome.FAILED_PERMANENTLY: "error",
    Outcome.RETRY_REQUESTED: "warning",
    Outcome.TIMED_OUT: "error",
    Outcome.CANCELLED: "warning",
    Outcome.LOST: "warning",
    Outcome.HANDED_BACK: "warning",
}


@dataclass(eq=False)
class _Attempt:
    dispatch: Dispatch
    log: AttemptLog
    ctx: JobContext
    started: float | None = None  # time.monotonic() when the job began
    started_at: datetime | None = None
    stop_outcome: Outcome | None = None  # CANCELLED or LOST once a stop was requested
    stop_reason: str = ""
    task: asyncio.Task[AttemptFinished] | None = None
    reported: bool = False  # AttemptFinished sent; listed until its thread returns
    stop_asked: float | None = None  # time.monotonic() of the first stop request
    returned: float | None = None  # time.monotonic() when the job's function returned

    def mark_returned(self) -> None:
        if self.returned is None:
            self.returned = time.monotonic()

    @property
    def key(self) -> _Key:
        return (self.dispatch.job_id, self.dispatch.attempt)

    def request_stop(self, outcome: Outcome, reason: str) -> None:
        if self.stop_outcome is None:
            self.stop_outcome, self.stop_reason = outcome, reason
            self.stop_asked = time.monotonic()
        self.ctx.cancel_flag.set()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


class Executor:
    """Runs dispatched attempts of the job types in ``registry`` and reports their ends.

    ``max_threads`` bounds the plain-function pool; ``cancel_grace`` is how long a cancelled
    thread or task may take to return before the attempt is reported anyway; ``kill_grace`` is
    the time between SIGTERM and SIGKILL for isolated jobs; ``start_method`` picks the
    multiprocessing start method (default ``forkserver``, else ``spawn``).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        worker_id: str,
        report: ReportSink,
        log_sink: LogSink,
        max_threads: int,
        cancel_grace: float = 1.0,
        kill_grace: float = 0.5,
        start_method: str | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._registry = registry
        self._report = report
        self._log_sink = log_sink
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix=f"smartq-{worker_id}")
        self._cancel_grace = cancel_grace
        self._kill_grace = kill_grace
        self._mp = mp_context(start_method)
        self._attempts: dict[_Key, _Attempt] = {}
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- the public surface ------------------------------------------------------------------

    def submit(self, dispatch: Dispatch) -> asyncio.Task[AttemptFinished]:
        """Start the attempt in the background; a redelivered dispatch gets the same task."""
        existing = self._attempts.get((dispatch.job_id, dispatch.attempt))
        if existing is not None and existing.task is not None:
            return existing.task
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        attempt = self._new_attempt(dispatch)
        self._attempts[attempt.key] = attempt
        attempt.task = asyncio.create_task(
            self._execute(attempt), name=f"smartq-attempt-{dispatch.job_id}-{dispatch.attempt}"
        )
        return attempt.task

    async def run(self, dispatch: Dispatch) -> AttemptFinished:
        """Run the attempt to its end (which is also reported) and return the report."""
        return await asyncio.shield(self.submit(dispatch))

    def cancel(self, job_id: uuid.UUID, attempt: int, reason: str = "cancelled by user") -> bool:
        """Stop that attempt (a ``CancelJob``); false, and nothing done, if it is not running."""
        found = self._attempts.get((job_id, attempt))
        if found is None or found.reported:
            return False
        found.request_stop(Outcome.CANCELLED, reason)
        return True

    def running(self) -> list[RunningAttempt]:
        """What holds resources here, for heartbeats: running attempts and timed-out or
        cancelled threads that have not returned yet."""
        return [
            RunningAttempt(
                job_id=a.dispatch.job_id,
                attempt=a.dispatch.attempt,
                cpu_units=a.dispatch.cpu_units,
                memory_mb=a.dispatch.memory_mb,
            )
            for a in self._attempts.values()
        ]

    @property
    def closing(self) -> bool:
        return self._closing

    async def shutdown(self, grace: float) -> None:
        """Take no more attempts, let running ones finish within ``grace``, then stop the rest
        and report them ``HANDED_BACK`` so the scheduler runs them again elsewhere."""
        self._closing = True
        tasks = {a.task for a in self._attempts.values() if a.task is not None and not a.reported}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for attempt in list(self._attempts.values()):
                if attempt.task in pending:
                    attempt.request_stop(Outcome.HANDED_BACK, SHUTDOWN_REASON)
            if pending:
                await asyncio.wait(pending)
        # Threads that outlived their attempt keep running; the pool cannot stop them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one attempt -------------------------------------------------------------------------

    def _new_attempt(self, dispatch: Dispatch) -> _Attempt:
        log = AttemptLog(dispatch.job_id, dispatch.attempt, self._log_sink)
        ctx = JobContext(
            job_id=dispatch.job_id,
            attempt=dispatch.attempt,
            name=dispatch.name,
            job_type=dispatch.job_type,
            worker_id=self.worker_id,
            payload=dispatch.payload,
            log=make_job_logger(f"{dispatch.job_id}.{dispatch.attempt}", log.write),
        )
        return _Attempt(dispatch=dispatch, log=log, ctx=ctx)

    async def _execute(self, attempt: _Attempt) -> AttemptFinished:
        if self._closing:
            return self._finish(attempt, Ending(Outcome.HANDED_BACK, error=SHUTDOWN_REASON))
        try:
            ending = await self._run(attempt)
        except Exception as exc:  # a bug here must still end the attempt, not strand it
            logger.exception("executor error", extra={"action": "executor_error"})
            ending = Ending(Outcome.FAILED, error=f"executor error: {describe(exc)}")
        return self._finish(attempt, ending)

    async def _run(self, attempt: _Attempt) -> Ending:
        try:
            job_type = self._registry.get(attempt.dispatch.job_type)
        except UnknownJobType as exc:
            return Ending(Outcome.FAILED_PERMANENTLY, error=describe(exc))
        timeout = attempt.dispatch.timeout_seconds
        if timeout is None:
            timeout = job_type.timeout_seconds
        if job_type.is_async:
            return await self._run_async(attempt, job_type, timeout)
        if job_type.isolated:
            return await self._run_isolated(attempt, job_type, timeout)
        return await self._run_thread(attempt, job_type, timeout)

    async def _run_async(self, attempt: _Attempt, job_type: JobType, limit: float | None) -> Ending:
        self._begin(attempt)
        task = asyncio.create_task(call_async(job_type.func, attempt.ctx))
        task.add_done_callback(lambda _: attempt.mark_returned())
        why = await self._wait(attempt, task, limit)
        if why == "done":
            if task.cancelled():
                return Ending(Outcome.FAILED, error="CancelledError: the job cancelled itself")
            return task.result()
        attempt.ctx.cancel_flag.set()
        task.cancel()
        await asyncio.wait({task}, timeout=self._cancel_grace)
        if not task.done():
            logger.warning(
                "async job ignores cancellation; reporting it stopped anyway",
                extra={"action": "cancel_ignored", "job_id": str(attempt.dispatch.job_id)},
            )
        return self._stopped(attempt, why, limit)

    async def _run_thread(
        self, attempt: _Attempt, job_type: JobType, limit: float | None
    ) -> Ending:
        loop = asyncio.get_running_loop()
        began: asyncio.Future[None] = loop.create_future()

        def body() -> Ending:
            try:
                self._begin(attempt)
            finally:
                loop.call_soon_threadsafe(_settle, began)
            try:
                return call_sync(job_type.func, attempt.ctx)
            finally:
                attempt.mark_returned()

        thread_future = self._pool.submit(body)
        if await self._wait(attempt, began, None) == "stop" and thread_future.cancel():
            return self._stopped(attempt, "stop", limit)  # never began: nothing to wait for
        done = asyncio.wrap_future(thread_future)
        why = await self._wait(attempt, done, limit)
        if why == "done":
            return done.result()
        attempt.ctx.cancel_flag.set()
        if why == "stop":
            await asyncio.wait({done}, timeout=self._cancel_grace)
        if done.done():
            return self._stopped(attempt, why, limit)
        # Always through call_soon: ResourcesReleased must follow this attempt's AttemptFinished.
        thread_future.add_done_callback(lambda _: self._soon(self._released, attempt))
        return self._stopped(attempt, why, limit, released=False)

    async def _run_isolated(
        self, attempt: _Attempt, job_type: JobType, limit: float | None
    ) -> Ending:
        try:
            target = import_path(job_type.func)
        except Exception as exc:
            return Ending(Outcome.FAILED_PERMANENTLY, error=describe(exc))
        self._begin(attempt)
        d = attempt.dispatch
        job = {
            "job_id": str(d.job_id),
            "attempt": d.attempt,
            "name": d.name,
            "job_type": d.job_type,
            "worker_id": self.worker_id,
            "payload": d.payload,
        }
        child = ChildRun(self._mp, attempt.log, target, job)
        await asyncio.to_thread(child.start)
        why = await self._wait(attempt, child.ended, limit)
        if why == "done":
            return child.ended.result()
        await child.stop(self._kill_grace)
        return self._stopped(attempt, why, limit)

    async def _wait(self, attempt: _Attempt, job: asyncio.Future[Any], limit: float | None) -> _Why:
        """Until ``job`` is done, a stop is requested, or ``limit`` seconds after the attempt
        began."""
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
        # A job that returned before any stop was asked is done, even if the stop arrived while
        # we were waking up: its work happened. One that returned after the stop is CANCELLED
        # (it most likely returned because it saw ctx.cancelled()).
        if (
            job in done
            and attempt.returned is not None
            and (attempt.stop_asked is None or attempt.returned <= attempt.stop_asked)
        ):
            return "done"
        if stop in done or attempt.stop_outcome is not None:
            return "stop"
        return "done" if job in done else "timeout"

    def _stopped(
        self, attempt: _Attempt, why: _Why, limit: float | None, *, released: bool = True
    ) -> Ending:
        if why == "timeout":
            error = f"timed out after {limit:g}s"
            return Ending(Outcome.TIMED_OUT, error=error, released=released)
        outcome = attempt.stop_outcome or Outcome.CANCELLED
        return Ending(outcome, error=attempt.stop_reason or "cancelled", released=released)

    # -- reports and log lines ---------------------------------------------------------------

    def _begin(self, attempt: _Attempt) -> None:
        """The attempt starts executing now (called on the loop or in the job's thread)."""
        attempt.started, attempt.started_at = time.monotonic(), utcnow()
        d = attempt.dispatch
        attempt.log.write("info", f"started attempt {d.attempt} on worker {self.worker_id}")
        self._emit(
            AttemptStarted(
                job_id=d.job_id, attempt=d.attempt, worker_id=self.worker_id, ts=attempt.started_at
            )
        )

    def _finish(self, attempt: _Attempt, ending: Ending) -> AttemptFinished:
        self._log_end(attempt, ending)
        d = attempt.dispatch
        now = utcnow()
        finished = AttemptFinished(
            job_id=d.job_id,
            attempt=d.attempt,
            worker_id=self.worker_id,
            outcome=ending.outcome,
            started_at=attempt.started_at or now,
            finished_at=now,
            result=ending.result,
            error=ending.error,
            retry_after=ending.retry_after,
            released=ending.released,
        )
        attempt.reported = True
        if ending.released:
            self._attempts.pop(attempt.key, None)
        self._emit(finished)
        return finished

    def _log_end(self, attempt: _Attempt, ending: Ending) -> None:
        took = f"{attempt.elapsed():.2f}s"
        match ending.outcome:
            case Outcome.SUCCEEDED:
                text = f"succeeded in {took}"
            case Outcome.FAILED:
                text = f"failed after {took}: {ending.error}"
            case Outcome.FAILED_PERMANENTLY:
                text = f"failed permanently after {took}: {ending.error}"
            case Outcome.RETRY_REQUESTED:
                text = f"retry requested in {ending.retry_after:g}s after {took}: {ending.error}"
            case Outcome.CANCELLED:
                text = f"cancelled after {took}: {ending.error}"
            case _:  # TIMED_OUT carries its own wording; LOST is the hand-back reason
                text = ending.error or ending.outcome.value
        if not ending.released:
            text += "; its thread is still running and holds its resources until it returns"
        level = "error" if ending.traceback else _END_LEVELS[ending.outcome]
        if ending.traceback:
            text = f"{text}\n{ending.traceback}"
        attempt.log.write(level, text)

    def _released(self, attempt: _Attempt) -> None:
        """A thread that outlived its attempt returned: its resources are free now."""
        d = attempt.dispatch
        took = f"{attempt.elapsed():.2f}s"
        attempt.log.write("info", f"thread returned after {took}; resources released")
        self._attempts.pop(attempt.key, None)
        self._emit(
            ResourcesReleased(
                job_id=d.job_id, attempt=d.attempt, worker_id=self.worker_id, ts=utcnow()
            )
        )

    def _emit(self, report: Report) -> None:
        self._in_loop(self._deliver, report)

    def _in_loop(self, func: Callable[..., None], *args: Any) -> None:
        """Call ``func`` now if on the loop's thread, else soon on the loop."""
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._soon(func, *args)

    def _soon(self, func: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop is closed: the worker is gone, nobody to tell
            logger.debug("report dropped after the loop closed", extra={"action": "report_dropped"})

    def _deliver(self, report: Report) -> None:
        try:
            self._report(report)
        except Exception:
            logger.exception("report callback failed", extra={"action": "report_failed"})


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
