"""The logger process: consumes ``job.logs.#`` and stores lines in batches.

A message is acked only after the transaction holding its line committed, and the unique
(job, attempt, seq) key makes a redelivered line a no-op: killing the logger mid-batch loses no
line and duplicates none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from logger import store
from models.messages import LogLine
from models.types import utcnow
from smartq import topology
from smartq.broker import Broker, IncomingMessage
from smartq.settings import Settings

log = logging.getLogger(__name__)


class LogStore:
    def __init__(self, settings: Settings, engine: AsyncEngine, broker: Broker) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = broker
        self._pending: list[tuple[LogLine, IncomingMessage]] = []
        self._wake = asyncio.Event()
        self.stored = 0

    async def _on_message(self, message: IncomingMessage) -> None:
        try:
            line = LogLine.model_validate_json(message.body)
        except ValidationError:
            log.warning("dropping a malformed log message", extra={"action": "logger.malformed"})
            await message.ack()
            return
        self._pending.append((line, message))
        if len(self._pending) >= self.settings.log_batch_size:
            self._wake.set()

    async def flush(self) -> int:
        """Commit what is buffered, then ack it; on failure nack so RabbitMQ redelivers."""
        batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            async with self.engine.begin() as conn:
                new = await store.insert_lines(conn, [line for line, _ in batch])
        except Exception:
            log.exception(
                "could not store log lines; they will be redelivered",
                extra={"action": "logger.store_failed", "lines": len(batch)},
            )
            for _, message in batch:
                await message.nack(requeue=True)
            return 0
        for _, message in batch:
            await message.ack()
        self.stored += new
        return new

    async def _retention(self) -> None:
        cutoff = utcnow() - timedelta(days=self.settings.log_retention_days)
        async with self.engine.begin() as conn:
            deleted = await store.delete_older_than(conn, cutoff, 5_000)
        if deleted:
            log.info(
                "deleted old log lines", extra={"action": "logger.retention", "lines": deleted}
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and store until ``stop`` is set; then store what is buffered and return."""
        consumer = await self.broker.consume(
            topology.logger_queue(self.broker.exchange),
            self._on_message,
            prefetch=self.settings.log_batch_size * 4,
        )
        next_retention = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.log_batch_seconds)
                self._wake.clear()
                await self.flush()
                if loop.time() >= next_retention:
                    next_retention = loop.time() + 60
                    await self._retention()
        finally:
            await self.flush()
            await consumer.cancel()  # what arrived since is requeued, not lost
            self._pending.clear()
