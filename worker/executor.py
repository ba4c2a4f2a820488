"""Run dispatched attempts and report how they ended; independent of the broker.

The executor is the coordinator: it takes dispatches (:meth:`Executor.submit`), stops them
(:meth:`Executor.cancel`, :meth:`Executor.shutdown`), lists what holds resources
(:meth:`Executor.running`) and turns what the runners (:mod:`worker.runners`) return into reports,
worded by :mod:`worker.verdict`.

Reports (``AttemptStarted``, ``AttemptFinished``, ``ResourcesReleased``) are always delivered on
the event loop's thread, so the report callback may use ``asyncio.Queue.put_nowait``; a thread
that outlived its attempt is followed by a ``ResourcesReleased`` when it returns, and the
scheduler frees the attempt's cpu and memory only then. Log lines go to the log sink from
whichever thread logged (see :data:`worker.context.LogSink`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from models.enums import Outcome
from models.messages import (
    AttemptFinished,
    AttemptStarted,
    Dispatch,
    JobsSpawned,
    ResourcesReleased,
    RunningAttempt,
)
from smartq.errors import UnknownJobType
from smartq.outbox import LoopHandoff
from smartq.registry import Registry
from worker.context import (
    AttemptLog,
    JobContext,
    LogSink,
    ProgressSink,
    make_job_logger,
    utcnow,
)
from worker.isolation import mp_context
from worker.outcomes import Ending, describe, failure_class
from worker.runners import Attempt, Setup, runner_for
from worker.spawn import Spawner
from worker.verdict import end_line

logger = logging.getLogger(__name__)

Report = AttemptStarted | AttemptFinished | ResourcesReleased | JobsSpawned
#: Receives every report, on the event loop's thread. Must not block.
ReportSink = Callable[[Report], None]

SHUTDOWN_REASON = "handed back: worker shutting down"
_Key = tuple[uuid.UUID, int]


class Executor:
    """Runs dispatched attempts of the job types in ``registry`` and reports their ends.

    ``max_threads`` bounds the plain-function pool; ``cancel_grace`` is how long a cancelled
    thread or task may take to return before the attempt is reported anyway; ``kill_grace`` is
    the time between SIGTERM and SIGKILL for isolated jobs; ``memory_watch`` the time between
    two samples of an isolated job's memory (0: its ``memory_mb`` is not enforced);
    ``start_method`` picks the multiprocessing start method (default ``forkserver``, else
    ``spawn``).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        worker_id: str,
        report: ReportSink,
        log_sink: LogSink,
        max_threads: int,
        progress_sink: ProgressSink | None = None,
        cancel_grace: float = 1.0,
        kill_grace: float = 0.5,
        memory_watch: float = 0.05,
        start_method: str | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._registry = registry
        self._report = report
        self._log_sink = log_sink
        self._progress_sink = progress_sink
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix=f"smartq-{worker_id}")
        self._handoff = LoopHandoff()
        self._setup = Setup(
            worker_id=worker_id,
            handoff=self._handoff,
            begin=self._begin,
            outlived=self._outlived,
            pool=self._pool,
            mp=mp_context(start_method),
            cancel_grace=cancel_grace,
            kill_grace=kill_grace,
            memory_watch=memory_watch,
        )
        self._attempts: dict[_Key, Attempt] = {}
        self._closing = False

    # -- the public surface ------------------------------------------------------------------

    def submit(self, dispatch: Dispatch) -> asyncio.Task[AttemptFinished]:
        """Start the attempt in the background; a redelivered dispatch gets the same task."""
        existing = self._attempts.get((dispatch.job_id, dispatch.attempt))
        if existing is not None and existing.task is not None:
            return existing.task
        self._handoff.bind()
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

    def _new_attempt(self, dispatch: Dispatch) -> Attempt:
        log = AttemptLog(
            dispatch.job_id,
            dispatch.attempt,
            self._log_sink,
            dispatch.tenant,
            self.worker_id,
            self._progress_sink,
            self._emit,
        )
        ctx = JobContext(
            job_id=dispatch.job_id,
            attempt=dispatch.attempt,
            name=dispatch.name,
            job_type=dispatch.job_type,
            worker_id=self.worker_id,
            payload=dispatch.payload,
            log=make_job_logger(f"{dispatch.job_id}.{dispatch.attempt}", log.write),
            report_progress=log.progress,
            spawner=Spawner(
                dispatch.job_id, dispatch.attempt, self.worker_id, log.spawned, self._registry
            ),
        )
        return Attempt(dispatch=dispatch, log=log, ctx=ctx)

    async def _execute(self, attempt: Attempt) -> AttemptFinished:
        if self._closing:
            return self._finish(attempt, Ending(Outcome.HANDED_BACK, error=SHUTDOWN_REASON))
        try:
            ending = await self._run(attempt)
        except Exception as exc:  # a bug here must still end the attempt, not strand it
            logger.exception("executor error", extra={"action": "executor_error"})
            ending = Ending(Outcome.FAILED, error=f"executor error: {describe(exc)}")
        return self._finish(attempt, ending)

    async def _run(self, attempt: Attempt) -> Ending:
        try:
            job_type = self._registry.get(attempt.dispatch.job_type)
        except UnknownJobType as exc:
            return Ending(Outcome.FAILED_PERMANENTLY, error=describe(exc))
        timeout = attempt.dispatch.timeout_seconds
        if timeout is None:
            timeout = job_type.timeout_seconds
        return await runner_for(job_type)(attempt, job_type, timeout, self._setup)

    # -- reports and log lines ---------------------------------------------------------------

    def _begin(self, attempt: Attempt) -> None:
        """The attempt starts executing now (called on the loop or in the job's thread)."""
        attempt.started, attempt.started_at = time.monotonic(), utcnow()
        d = attempt.dispatch
        attempt.log.write("info", f"started attempt {d.attempt} on worker {self.worker_id}")
        self._emit(
            AttemptStarted(
                job_id=d.job_id, attempt=d.attempt, worker_id=self.worker_id, ts=attempt.started_at
            )
        )

    def _finish(self, attempt: Attempt, ending: Ending) -> AttemptFinished:
        level, text = end_line(ending, attempt.elapsed())
        last = attempt.log.write(level, text, final=True)
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
            log_seq=last,
            failure_class=failure_class(ending),
            peak_memory_mb=ending.peak_memory_mb,
        )
        attempt.reported = True
        if ending.released:
            self._attempts.pop(attempt.key, None)
        self._emit(finished)
        return finished

    def _outlived(self, attempt: Attempt) -> None:
        """In the thread of an attempt already reported unreleased, as it returns."""
        # Always queued, even on the loop's thread: ResourcesReleased must follow this attempt's
        # AttemptFinished, which the current callback may still be about to send.
        self._handoff.soon(self._released, attempt)

    def _released(self, attempt: Attempt) -> None:
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
        self._handoff.call(self._deliver, report)

    def _deliver(self, report: Report) -> None:
        try:
            self._report(report)
        except Exception:
            logger.exception("report callback failed", extra={"action": "report_failed"})
