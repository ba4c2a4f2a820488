"""What a job function receives: :class:`JobContext`, its per-attempt logger and cancel flag.

``ctx.log`` is a real :class:`logging.Logger` (not registered with the logging manager, not
propagating) whose records become :class:`~models.messages.LogLine` messages numbered 1, 2, 3...
per attempt, so a job can hand it to any library that expects a logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.messages import JobProgress, JobsSpawned, LogLine
from worker.spawn import ChildBatch, ChildJob, ChildRef, Spawner, SpawnSink, Target

logger = logging.getLogger(__name__)

#: Receives every log line of every attempt. Called from whichever thread logged (job threads,
#: the event loop, a child process's reader thread), so it must be thread-safe and must not block.
LogSink = Callable[[LogLine], None]
#: Receives an attempt's progress reports, under the same rules as :data:`LogSink`.
ProgressSink = Callable[[JobProgress], None]
#: What ``ctx.progress`` calls: ``(fraction, message)``.
ProgressWriter = Callable[[float, str | None], None]
#: ``(level, message, ts)``: where a job logger's handler writes a formatted record.
LineWriter = Callable[[str, str, datetime], object]


def utcnow() -> datetime:
    return datetime.now(UTC)


class AttemptLog:
    """Numbers the log lines of one attempt and hands them to the sink, in order."""

    def __init__(
        self,
        job_id: uuid.UUID,
        attempt: int,
        sink: LogSink,
        tenant: str | None = None,
        worker_id: str | None = None,
        progress_sink: ProgressSink | None = None,
        spawn_sink: SpawnSink | None = None,
    ) -> None:
        self.job_id = job_id
        self._spawn_sink = spawn_sink
        self.attempt = attempt
        self.tenant = tenant
        self.worker_id = worker_id
        self._progress_sink = progress_sink
        self._sink = sink
        self._seq = 0
        # Held while calling the sink so lines reach it in seq order whatever thread logs.
        self._lock = threading.Lock()

    def write(
        self, level: str, message: str, ts: datetime | None = None, *, final: bool = False
    ) -> int:
        """Number and hand on one line; returns its seq. ``final`` marks the attempt's last
        line, whose storing the logger confirms to this worker."""
        with self._lock:
            self._seq += 1
            line = LogLine(
                job_id=self.job_id,
                attempt=self.attempt,
                seq=self._seq,
                level=level,
                message=message,
                ts=ts or utcnow(),
                tenant=self.tenant,
                reply_to=self.worker_id if final else None,
            )
            try:
                self._sink(line)
            except Exception:
                logger.exception(
                    "log sink failed; line dropped",
                    extra={"action": "log_sink_failed", "job_id": str(self.job_id)},
                )
            return self._seq

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Hand on how far the attempt is (checked by :meth:`JobContext.progress`)."""
        if self._progress_sink is None:
            return
        report = JobProgress(
            job_id=self.job_id,
            attempt=self.attempt,
            fraction=fraction,
            message=message,
            ts=utcnow(),
            tenant=self.tenant,
        )
        try:
            self._progress_sink(report)
        except Exception:
            logger.exception("progress sink failed", extra={"action": "progress_sink_failed"})

    def spawned(self, jobs: JobsSpawned) -> None:
        """Hand on jobs the attempt submitted (an isolated child's, read from its pipe)."""
        if self._spawn_sink is None:
            raise RuntimeError("this worker cannot take jobs submitted by a job")
        self._spawn_sink(jobs)

    @property
    def lines_written(self) -> int:
        return self._seq


class _LineHandler(logging.Handler):
    """Turns records into ``(level, message, ts)``; the message carries any traceback."""

    def __init__(self, write: LineWriter) -> None:
        super().__init__(logging.DEBUG)
        self._write = write
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            ts = datetime.fromtimestamp(record.created, UTC)
            self._write(record.levelname.lower(), message, ts)
        except Exception:  # a job's bad format string must not kill the job
            self.handleError(record)


def make_job_logger(name: str, write: LineWriter) -> logging.Logger:
    """A logger private to one attempt; not registered, so it is freed with the attempt."""
    job_logger = logging.Logger(f"smartq.job.{name}", logging.DEBUG)
    job_logger.propagate = False
    job_logger.addHandler(_LineHandler(write))
    return job_logger


class CancelFlag:
    """Set once when the attempt should stop; readable from threads and awaitable on any loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop closed; nobody waits any more
                loop.call_soon_threadsafe(_resolve, waiter)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout``; true if the flag is set."""
        return self._event.wait(timeout)

    async def wait_async(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return
            self._waiters.append((loop, waiter))
        try:
            await waiter
        finally:
            with self._lock:
                if (loop, waiter) in self._waiters:
                    self._waiters.remove((loop, waiter))


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True, slots=True, eq=False)
class JobContext:
    """Passed to every job function: what to run, where to log, whether to stop."""

    job_id: uuid.UUID
    attempt: int
    name: str
    job_type: str
    worker_id: str
    payload: dict[str, Any]
    log: logging.Logger
    cancel_flag: CancelFlag = field(default_factory=CancelFlag, repr=False)
    report_progress: ProgressWriter | None = field(default=None, repr=False)
    spawner: Spawner | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the job is, from 0.0 to 1.0, with an optional note ("resized 40 of
        100"). It reaches ``WS /jobs/stream`` as a ``job.progress`` event and ``GET /jobs/{id}``
        as ``progress``; calls close together are sent as the latest one (about 4 a second),
        and the last before the attempt ends always arrives first."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress is a number from 0 to 1, not {fraction!r}")
        if not 0.0 <= fraction <= 1.0:  # NaN fails this too
            raise ValueError(f"progress is a number from 0 to 1, not {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError("a progress message is text")
        if self.report_progress is not None:
            self.report_progress(float(fraction), None if message is None else message[:500])

    def submit(
        self,
        target: Target,
        payload: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        depends_on: list[ChildRef] | tuple[ChildRef, ...] = (),
        **options: Any,
    ) -> ChildJob:
        """Submit a job from this one: in the same tenant and batch, with this job as its
        ``parent_id``. ``target`` is a type name or a ``@smartq.job`` function; ``options`` as
        for ``Client.submit`` (priority, cpu_units, memory_mb, resources, labels, retry,
        timeout_seconds, run_at, name). ``depends_on``: jobs this attempt submitted before.
        It starts while this job still runs. A retry of this job that submits the same jobs
        (same keys: given, or ``<type>-<n>`` in call order) does not make them again."""
        return self._spawner().submit(target, payload, key=key, depends_on=depends_on, **options)

    def batch(self) -> ChildBatch:
        """Several jobs at once, with dependencies between them (``b.add(..., after=[a])``),
        sent together when the ``with`` block ends."""
        return self._spawner().batch()

    def continue_with(
        self,
        target: Target,
        payload: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        after: list[ChildRef] | None = None,
        **options: Any,
    ) -> ChildJob:
        """Submit the job that carries on once this job's children (all so far, or ``after``)
        completed, so this job can return and free its worker instead of waiting; if a child
        fails, the continuation is cancelled with the reason."""
        return self._spawner().continue_with(target, payload, key=key, after=after, **options)

    def _spawner(self) -> Spawner:
        if self.spawner is None:
            raise RuntimeError("this job context cannot submit jobs")
        return self.spawner

    def cancelled(self) -> bool:
        """True once the attempt was cancelled, timed out or handed back: stop soon."""
        return self.cancel_flag.is_set()

    async def wait_cancelled(self) -> None:
        """Return when :meth:`cancelled` becomes true (for async jobs that race work with it)."""
        await self.cancel_flag.wait_async()

    def sleep(self, seconds: float) -> bool:
        """Sleep in a plain function, waking early on cancellation; true if cancelled."""
        return self.cancel_flag.wait(seconds)
