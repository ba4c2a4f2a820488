"""The worker process: consumes its own dispatches, runs them through the executor, reports
outcomes and log lines, and heartbeats its capacity and what it runs.

Needs no database. A dispatch is acked once the attempt is accepted: the scheduler's lease on
the worker (heartbeats), not an unacked message, covers a worker that dies, so a job may run
longer than RabbitMQ's consumer timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections import OrderedDict
from datetime import UTC, datetime

import psutil
from pydantic import ValidationError

from models.messages import (
    AttemptFinished,
    AttemptStarted,
    CancelJob,
    Dispatch,
    Heartbeat,
    JobProgress,
    JobsSpawned,
    LogLine,
    LogsStored,
    TypeFlow,
    incarnation,
    unpack,
    worker_inbound,
)
from scheduler.resources import Offer
from smartq import topology
from smartq.broker import Broker, BrokerError, Consumer, IncomingMessage, QueueMismatch
from smartq.outbox import Outbox
from smartq.registry import Registry
from smartq.settings import Settings
from worker.executor import Executor, Report
from worker.logwait import ReportHold

log = logging.getLogger(__name__)
_SEEN = 20_000
#: Outgoing lanes, each an outbox publishing on its own: reports and heartbeats never wait
#: behind log lines, so a job that logs a flood cannot delay its worker's heartbeats past the
#: lease (found by the fault suite, tests/faults/test_logger.py), and a report does not wait for
#: the confirms of the log lines its job wrote just before (a few ms on every job). Within a
#: lane, order is kept.
_URGENT, _BULK = 0, 1
#: How long a stopping worker waits for the logger to confirm its last attempts' lines.
DRAIN_LOG_WAIT = 2.0
#: Progress of an attempt goes out at most this often: its latest value then.
PROGRESS_EVERY = 0.25


def default_capacity() -> tuple[int, int]:
    """CPU count and available memory (MB), from psutil."""
    return psutil.cpu_count() or 1, int(psutil.virtual_memory().available / (1024 * 1024))


def default_worker_id() -> str:
    return topology.worker_key(f"{socket.gethostname()}-{os.getpid()}")


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        registry: Registry,
        *,
        worker_id: str | None = None,
        cpu_units: int | None = None,
        memory_mb: int | None = None,
        max_threads: int | None = None,
        offer: Offer | None = None,
    ) -> None:
        cpu, mem = default_capacity()
        self.settings = settings
        self.broker = broker
        self.registry = registry
        self.worker_id = topology.worker_key(worker_id or settings.worker_id or default_worker_id())
        self.cpu_units = cpu_units or cpu
        self.memory_mb = memory_mb or mem
        #: Named resources and labels it offers (``--resource``/``--label``, else settings).
        self.offer = offer or Offer(dict(settings.worker_resources), dict(settings.worker_labels))
        self.started_at = datetime.now(UTC)
        #: This start of the process; dispatches name the start they are meant for.
        self.incarnation = incarnation(self.started_at)
        self.draining = False
        # Log lines wait worker_log_flush_seconds for more: lines of jobs that end within
        # milliseconds of each other then travel as one message (in a 1,000-long chain that
        # took log messages per job from 2 to ~0.3, and with them the broker's, the logger's and
        # the API's work per job). Reports and heartbeats never wait.
        self._lanes: tuple[Outbox[tuple[str, bytes]], ...] = tuple(
            Outbox(self._publish, linger=linger, retry_on=(BrokerError,), name="worker")
            for linger in (0.0, settings.worker_log_flush_seconds)
        )
        self._seen: OrderedDict[tuple[uuid.UUID, int], None] = OrderedDict()
        self._process = psutil.Process()
        self.executor = Executor(
            registry,
            worker_id=self.worker_id,
            report=self._report,
            log_sink=self._log_line,
            progress_sink=self._progress,
            max_threads=max_threads or max(4, self.cpu_units * 2),
            memory_watch=settings.worker_memory_watch_seconds,
        )
        self._hold = ReportHold(
            lambda r: self._send(topology.report_key(r.job_id), r.dumps()),
            self._lanes[_BULK].hurry,
            lambda: self.settings.worker_log_wait_seconds,
        )
        self._type_flow = type_flow(registry)
        #: The latest progress of each attempt not sent yet (put from job threads).
        self._latest: dict[tuple[uuid.UUID, int], JobProgress] = {}
        self._latest_lock = threading.Lock()

    # -- outgoing -------------------------------------------------------------------------
    def _send(self, routing_key: str, body: bytes, lane: int = _URGENT) -> None:
        """Queue a message on its lane, from any thread."""
        self._lanes[lane].put((routing_key, body))

    def _report(self, report: Report) -> None:
        if isinstance(report, AttemptStarted):
            return  # the scheduler marks a job running when it dispatches; spare the message
        if isinstance(report, JobsSpawned):
            # On the report key, so it travels in order ahead of this attempt's final report.
            self._send(topology.report_key(report.parent_id), report.dumps())
            return
        if isinstance(report, AttemptFinished):
            # Its last progress goes with its lines, ahead of the report.
            self._send_progress((report.job_id, report.attempt))
            log.info(
                "attempt finished: %s",
                report.outcome.value,
                extra={
                    "action": "worker.attempt_finished",
                    "job_id": str(report.job_id),
                    "attempt": report.attempt,
                    "worker": self.worker_id,
                    "outcome": report.outcome.value,
                    "seconds": round((report.finished_at - report.started_at).total_seconds(), 3),
                },
            )
            self._hold.report(report)
            return
        self._send(topology.report_key(report.job_id), report.dumps())

    def _log_line(self, line: LogLine) -> None:
        self._send(topology.logs_key(line.job_id), line.dumps(), _BULK)

    def _progress(self, report: JobProgress) -> None:
        """Keep the latest; :meth:`_send_progress` sends it (any thread)."""
        with self._latest_lock:
            self._latest[(report.job_id, report.attempt)] = report

    def _send_progress(self, key: tuple[uuid.UUID, int] | None = None) -> None:
        """Send the latest progress of every attempt (or of one, before its report)."""
        with self._latest_lock:
            if key is None:
                reports, self._latest = list(self._latest.values()), {}
            else:
                one = self._latest.pop(key, None)
                reports = [one] if one is not None else []
        for report in reports:
            self._send(topology.progress_key(report.job_id), report.dumps(), _BULK)

    async def _progress_sender(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            self._send_progress()

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        """One lane's batch as few confirmed broker messages; the outbox retries a failure."""
        await self.broker.publish_many(_envelopes(batch))

    def heartbeat(self, *, stopped: bool = False) -> Heartbeat:
        running = self.executor.running()
        with self._process.oneshot():
            cpu = self._process.cpu_percent()
            rss = self._process.memory_info().rss / (1024 * 1024)
        return Heartbeat(
            worker_id=self.worker_id,
            hostname=socket.gethostname(),
            cpu_units=self.cpu_units,
            memory_mb=self.memory_mb,
            job_types=self.registry.names(),
            running=running + self._hold.attempts({(a.job_id, a.attempt) for a in running}),
            draining=self.draining,
            stopped=stopped,
            started_at=self.started_at,
            ts=datetime.now(UTC),
            cpu_percent=cpu,
            rss_mb=rss,
            type_flow=self._type_flow,
            resources=self.offer.resources,
            labels=self.offer.labels,
        )

    async def _heartbeats(self) -> None:
        while True:
            self._send(topology.heartbeat_key(self.worker_id), self.heartbeat().dumps())
            await asyncio.sleep(self.settings.heartbeat_seconds)

    # -- incoming -------------------------------------------------------------------------
    async def _on_message(self, message: IncomingMessage) -> None:
        try:
            docs = [worker_inbound.validate_python(item) for item in unpack(message.body)]
        except (ValidationError, ValueError):
            log.warning("dropping a malformed message", extra={"action": "worker.malformed"})
            await message.ack()
            return
        for doc in docs:  # one dispatch, or a pass's batch of them for this worker
            if isinstance(doc, LogsStored):
                self._hold.stored(doc)
            elif isinstance(doc, CancelJob):
                self.executor.cancel(doc.job_id, doc.attempt, doc.reason)
            elif isinstance(doc, Dispatch):
                self._accept(doc)
        await message.ack()

    def _accept(self, dispatch: Dispatch) -> None:
        key = (dispatch.job_id, dispatch.attempt)
        if key in self._seen:
            return  # a re-published dispatch of an attempt this worker already took
        if dispatch.incarnation is not None and dispatch.incarnation != self.incarnation:
            # Meant for an earlier start of this worker id: the scheduler settled that attempt
            # when it heard this start's first heartbeat. Running it would run it twice.
            log.warning(
                "dropping a dispatch meant for an earlier start of this worker",
                extra={
                    "action": "worker.stale_dispatch",
                    "job_id": str(dispatch.job_id),
                    "attempt": dispatch.attempt,
                    "worker": self.worker_id,
                },
            )
            return
        self._seen[key] = None
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        ids = {
            "job_id": str(dispatch.job_id),
            "attempt": dispatch.attempt,
            "worker": self.worker_id,
        }
        if dispatch.job_type not in self.registry:
            known = ", ".join(self.registry.names())
            log.error(
                "dispatch of an unknown job type",
                extra={
                    "action": "worker.unknown_type",
                    "job_type": dispatch.job_type,
                    "known": known,
                    **ids,
                },
            )
        log.info(
            "attempt accepted",
            extra={"action": "worker.attempt_accepted", "job_type": dispatch.job_type, **ids},
        )
        self.executor.submit(dispatch)

    # -- life cycle -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then stop gracefully (see :meth:`_drain`)."""
        for lane in self._lanes:
            lane.start()
        prefetch = max(64, self.cpu_units * 4)
        # The queue exists before the first heartbeat: the scheduler may dispatch at once.
        consumer = await self._consume(prefetch)
        beats = asyncio.create_task(self._heartbeats(), name="worker-heartbeats")
        progress = asyncio.create_task(self._progress_sender(), name="worker-progress")
        log.info(
            "worker started",
            extra={
                "action": "worker.start",
                "worker": self.worker_id,
                "cpu_units": self.cpu_units,
                "memory_mb": self.memory_mb,
            },
        )
        try:
            await stop.wait()
        finally:
            progress.cancel()
            await self._drain(consumer, beats)
            for lane in self._lanes:
                lane.cancel()

    async def _consume(self, prefetch: int) -> Consumer:
        queue = topology.worker_queue(
            self.worker_id, self.broker.exchange, self.settings.worker_queue_expires_seconds
        )
        try:
            return await self.broker.consume(queue, self._on_message, prefetch=prefetch)
        except QueueMismatch:
            # Declared by an older version (no expiry) or other settings. What it holds was
            # meant for an earlier start: the scheduler's tracker settles those dispatches.
            log.warning(
                "worker queue exists with other properties; replacing it",
                extra={"action": "worker.queue_replaced", "queue": queue.name},
            )
            await self.broker.delete_queue(queue.name)
            return await self.broker.consume(queue, self._on_message, prefetch=prefetch)

    async def _drain(self, consumer: Consumer, beats: asyncio.Task[None]) -> None:
        """Say at once that it drains (the scheduler stops placing here), let running jobs
        finish within the grace period, hand back the rest and whatever still arrives (they
        run again elsewhere, at once), say goodbye, and flush every report. Consuming goes on
        until the goodbye: a dispatch left in the queue would wait out the whole lease."""
        self.draining = True
        for lane in self._lanes:
            lane.flush()  # what the lanes hold goes out now, not after their windows
        self._send(topology.heartbeat_key(self.worker_id), self.heartbeat().dumps())
        await self.executor.shutdown(self.settings.shutdown_grace_seconds)
        # Held reports wait for their confirmations while the queue they come on is still
        # consumed, for a moment at most: a stopping worker does not wait out a lost logger.
        await self._hold.settle(min(self.settings.worker_log_wait_seconds, DRAIN_LOG_WAIT))
        await consumer.cancel()
        self._hold.stop_holding()  # no confirmation can reach it now: report at once
        await self.executor.shutdown(0)  # hand-backs of what arrived meanwhile are reported
        self._send_progress()
        beats.cancel()  # the goodbye below is the last heartbeat
        self._send(topology.heartbeat_key(self.worker_id), self.heartbeat(stopped=True).dumps())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(lane.join() for lane in self._lanes)), 10)
        log.info("worker stopped", extra={"action": "worker.stop", "worker": self.worker_id})


def _envelopes(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A flush as few broker messages: its reports in one batch, its log lines in another
    (each keeps its order), heartbeats as they are. Reports go first: a stopping worker's
    hand-backs must not trail its goodbye."""
    reports = [m for m in messages if m[0].startswith("job.report.")]
    lines = [m for m in messages if m[0].startswith("job.logs.")]
    progress = [m for m in messages if m[0].startswith("job.progress.")]
    kinds = ("job.report.", "job.logs.", "job.progress.")
    others = [m for m in messages if not m[0].startswith(kinds)]
    return (
        topology.batched(topology.REPORT_BATCH, reports)
        + others
        + topology.batched(topology.LOGS_BATCH, lines)
        + topology.batched(topology.PROGRESS_BATCH, progress)
    )


def type_flow(registry: Registry) -> dict[str, TypeFlow]:
    """What the registered types declare for flow control (``@smartq.job(rate_limit=...,
    max_running=..., breaker=...)``), for the heartbeats: the scheduler runs no user code."""
    out: dict[str, TypeFlow] = {}
    for name in registry.names():
        t = registry.get(name)
        if (t.rate_limit, t.max_running, t.breaker, t.breaker_enabled) == (None, None, None, True):
            continue
        out[name] = TypeFlow(
            rate_limit=t.rate_limit,
            max_running=t.max_running,
            breaker_enabled=t.breaker_enabled,
            breaker=dataclasses.asdict(t.breaker) if t.breaker is not None else None,
        )
    return out
