"""The logger process: consumes ``job.logs.#`` and stores lines in batches.

A message is acked only after the transaction holding its line committed, and the unique
(job, attempt, seq) key makes a redelivered line a no-op: killing the logger mid-batch loses no
line and duplicates none.

Retention deletes lines older than ``log_retention_days`` in batches of
:data:`RETENTION_BATCH` (one short transaction each), at most :data:`RETENTION_BATCHES` per
minute, so it never holds long locks. Every ``monitor_seconds`` the logger publishes how many
lines it stored (``job.monitoring.logger``) for the API's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from logger import store
from models.messages import JobProgress, LogLine, LogsStored, StoredUpTo, logger_inbound, unpack
from models.monitoring import LoggerMonitor
from models.types import utcnow
from smartq import chunked, topology
from smartq.broker import Broker, IncomingMessage
from smartq.settings import Settings

log = logging.getLogger(__name__)
RETENTION_BATCH = 5_000
LOGGER_PREFETCH = 32
RETENTION_BATCHES = 200


class LogStore:
    def __init__(self, settings: Settings, engine: AsyncEngine, broker: Broker) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = broker
        #: Messages (a line, or a batch of lines, or progress) waiting for the next commit.
        self._pending: list[tuple[list[LogLine], list[JobProgress], IncomingMessage]] = []
        self._pending_lines = 0
        self._wake = asyncio.Event()
        self.stored = 0
        #: Attempts' last lines whose worker waits for a confirmation: (worker, line) with
        #: the time to give up (lines of the attempt may still be with another logger).
        self._finals: list[tuple[LogLine, float]] = []
        self.logger_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = utcnow()

    async def _on_message(self, message: IncomingMessage) -> None:
        try:
            items = [logger_inbound.validate_python(item) for item in unpack(message.body)]
        except (ValidationError, ValueError):
            log.warning("dropping a malformed log message", extra={"action": "logger.malformed"})
            await message.ack()
            return
        lines = [i for i in items if isinstance(i, LogLine)]
        progress = [i for i in items if isinstance(i, JobProgress)]
        self._pending.append((lines, progress, message))
        self._pending_lines += len(lines) + len(progress)
        # An attempt's last line: its worker holds the report until this is stored, so the
        # flush does not wait for the batch window (jobs finish later by only a commit).
        if self._pending_lines >= self.settings.log_batch_size or any(
            ln.reply_to is not None for ln in lines
        ):
            self._wake.set()

    async def flush(self) -> int:
        """Commit everything buffered, a transaction of about ``log_batch_size`` lines at a
        time (whole messages), acking each message after its lines are committed; then
        confirm the attempts that became complete."""
        new = 0
        if not self._pending and self._finals:
            new += await self._flush_some()  # only the check of last lines still waiting
        while self._pending:
            new += await self._flush_some()
        return new

    async def _flush_some(self) -> int:
        take, lines = 0, 0
        while take < len(self._pending) and (take == 0 or lines < self.settings.log_batch_size):
            lines += len(self._pending[take][0]) + len(self._pending[take][1])
            take += 1
        batch, self._pending = self._pending[:take], self._pending[take:]
        self._pending_lines -= lines
        batch_lines = [ln for lines, _, _ in batch for ln in lines]
        batch_progress = [p for _, progress, _ in batch for p in progress]
        deadline = asyncio.get_running_loop().time() + self.settings.worker_log_wait_seconds
        finals = self._finals + [(ln, deadline) for ln in batch_lines if ln.reply_to is not None]
        try:
            async with self._writing() as conn:
                new = await store.insert_lines(conn, batch_lines)
                await store.keep_progress(conn, batch_progress)
                confirmed, self._finals = await self._complete(conn, finals, batch_lines)
        except Exception:
            # Give back everything buffered. Take it all first: messages that arrive while the
            # nacks below await belong to the next flush. (Clearing the buffer after the loop
            # dropped them unsettled, so they sat unacked until the logger restarted: found by
            # the 30-minute soak, 3 messages after 20 rounds of pg_terminate_backend.)
            failed, self._pending, self._pending_lines = batch + self._pending, [], 0
            log.exception(
                "could not store log lines; they will be redelivered",
                extra={"action": "logger.store_failed", "messages": len(failed)},
            )
            for _, _, message in failed:
                await message.nack(requeue=True)
            return 0
        for _, _, message in batch:
            await message.ack()
        self.stored += new
        await self._confirm(confirmed)
        return new

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A connection to store a batch on: in autocommit on PostgreSQL, where each write is
        one statement (lines, progress; redelivery makes a retry after a partial failure
        harmless), else in a transaction."""
        if self.engine.dialect.name == "postgresql":
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def _complete(
        self, conn: Any, finals: list[tuple[LogLine, float]], batch: list[LogLine]
    ) -> tuple[list[LogLine], list[tuple[LogLine, float]]]:
        """Which last lines have all their attempt's lines stored (1..seq), and which are still
        waiting (another logger may hold the rest). Lines of a job that no longer exists are
        confirmed: nothing will store them, and its worker's report is fenced off anyway.

        Attempts complete in ``batch`` itself need no count (:func:`complete_in_batch`)."""
        done, finals = complete_in_batch(finals, batch)
        if not finals:
            return done, []
        keys = [(ln.job_id, ln.attempt) for ln, _ in finals]
        counts = await store.stored_counts(conn, keys)
        missing = {k[0] for k in keys if k not in counts}
        gone = missing - await store.existing_jobs(conn, list(missing)) if missing else set()
        now = asyncio.get_running_loop().time()
        waiting = []
        for ln, deadline in finals:
            if ln.job_id in gone or counts.get((ln.job_id, ln.attempt), 0) >= ln.seq:
                done.append(ln)
            elif now < deadline:
                waiting.append((ln, deadline))
        return done, waiting

    async def _confirm(self, finals: list[LogLine]) -> None:
        """Tell each worker which of its attempts have every line stored."""
        by_worker: dict[str, list[StoredUpTo]] = {}
        for ln in finals:
            assert ln.reply_to is not None
            item = StoredUpTo(job_id=ln.job_id, attempt=ln.attempt, seq=ln.seq)
            by_worker.setdefault(ln.reply_to, []).append(item)
        for worker, attempts in by_worker.items():
            try:
                body = LogsStored(attempts=attempts).dumps()
                await self.broker.publish(topology.stored_key(worker), body)
            except Exception:  # the worker reports anyway at the end of its wait
                log.warning(
                    "could not confirm stored lines to a worker",
                    exc_info=True,
                    extra={"action": "logger.confirm_failed", "worker": worker},
                )

    async def retention(self) -> int:
        """Delete lines older than the retention age, batch by batch; returns how many."""
        if self.settings.log_retention_days <= 0:
            return 0
        cutoff = utcnow() - timedelta(days=self.settings.log_retention_days)
        deleted = 0

        async def step(conn: AsyncConnection) -> bool:
            nonlocal deleted
            n = await store.delete_older_than(conn, cutoff, RETENTION_BATCH)
            deleted += n
            return n >= RETENTION_BATCH

        # Flushes of new lines interleave between the steps.
        await chunked.run_steps(self.engine.begin, step, RETENTION_BATCHES)
        if deleted:
            log.info(
                "deleted old log lines", extra={"action": "logger.retention", "lines": deleted}
            )
        return deleted

    async def _publish_monitoring(self) -> None:
        event = LoggerMonitor(
            ts=utcnow(),
            logger_id=self.logger_id,
            started_at=self.started_at,
            lines_stored=self.stored,
        )
        try:
            await self.broker.publish(topology.MONITORING_LOGGER, event.dumps())
        except Exception:
            log.warning("could not publish monitoring", extra={"action": "logger.monitoring"})

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and store until ``stop`` is set; then store what is buffered and return."""
        consumer = await self.broker.consume(
            topology.logger_queue(self.broker.exchange),
            self._on_message,
            # Messages may be batches of up to a few hundred lines each: a few dozen in flight
            # keeps the buffer bounded.
            prefetch=LOGGER_PREFETCH,
        )
        next_retention = next_monitor = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.log_batch_seconds)
                self._wake.clear()
                await self.flush()
                if loop.time() >= next_monitor:
                    next_monitor = loop.time() + self.settings.monitor_seconds
                    await self._publish_monitoring()
                if loop.time() >= next_retention:
                    next_retention = loop.time() + 60
                    try:
                        await self.retention()
                    except Exception:
                        log.exception("retention failed", extra={"action": "logger.retention"})
        finally:
            await self.flush()
            await consumer.cancel()  # what arrived since is requeued, not lost
            self._pending.clear()
            self._pending_lines = 0


def complete_in_batch(
    finals: list[tuple[LogLine, float]], batch: list[LogLine]
) -> tuple[list[LogLine], list[tuple[LogLine, float]]]:
    """The last lines whose attempt has lines 1..seq all in ``batch`` (complete once the batch
    commits: each line is inserted, or was stored already), and the others. A short job's lines
    travel together, so most attempts need no count: it was a query on the path of every job
    in a chain."""
    seqs: dict[tuple[uuid.UUID, int], set[int]] = {}
    for ln in batch:
        seqs.setdefault((ln.job_id, ln.attempt), set()).add(ln.seq)
    done: list[LogLine] = []
    rest: list[tuple[LogLine, float]] = []
    for ln, deadline in finals:
        have = seqs.get((ln.job_id, ln.attempt), set())
        if len(have) >= ln.seq and all(s in have for s in range(1, ln.seq + 1)):
            done.append(ln)
        else:
            rest.append((ln, deadline))
    return done, rest
