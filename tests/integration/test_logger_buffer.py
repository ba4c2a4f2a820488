"""The logger's buffer when a commit fails: every message is settled, none is left behind.

Regression: a failed commit nacked the buffered messages one by one (each nack awaits) and then
cleared the buffer, dropping the messages that arrived during those awaits without settling
them; they stayed unacked until the logger restarted (the 30-minute soak found 3).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from logger import service as logger_service
from logger import store as logger_store
from logger.store import jobs_t, logs_t
from models.messages import LogLine
from smartq.broker import IncomingMessage
from smartq.brokers.memory import InMemoryBroker
from smartq.settings import Settings


class Delivery(IncomingMessage):
    """A delivery that records how it was settled; ``during_nack`` runs inside its nack, the
    way a new delivery's handler runs while the flush awaits."""

    def __init__(self, line: LogLine, during_nack: object = None) -> None:
        super().__init__(line.dumps(), "job.logs.x", False)
        self.outcome = ""
        self.during_nack = during_nack

    async def _ack(self) -> None:
        self.outcome = "ack"

    async def _nack(self, requeue: bool) -> None:
        self.outcome = "requeued" if requeue else "dropped"
        if callable(self.during_nack):
            await self.during_nack()


def line(job_id: uuid.UUID, seq: int) -> LogLine:
    return LogLine(
        job_id=job_id, attempt=1, seq=seq, level="info", message=f"l{seq}", ts=datetime.now(UTC)
    )


async def running_job(engine: AsyncEngine, job_id: uuid.UUID) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            jobs_t.insert().values(
                id=job_id, name="j", type="noop", payload={}, priority=5, cpu_units=1,
                memory_mb=1, max_attempts=1, initial_delay_seconds=0, backoff_multiplier=1,
                status="running", attempts=1, created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def test_messages_arriving_during_a_failed_flush_are_kept(
    settings: Settings,
    engine: AsyncEngine,
    memory_broker: InMemoryBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = uuid.uuid4()
    await running_job(engine, job_id)
    store = logger_service.LogStore(settings, engine, memory_broker)
    late = Delivery(line(job_id, 3))

    async def arrive() -> None:
        if late.outcome == "" and late not in [m for _, _, m in store._pending]:
            await store._on_message(late)

    first = [Delivery(line(job_id, 1), during_nack=arrive), Delivery(line(job_id, 2))]
    for message in first:
        await store._on_message(message)
    real_insert = logger_store.insert_lines
    calls = 0

    async def failing_once(conn: object, lines: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("INSERT", {}, Exception("connection lost"))
        return await real_insert(conn, lines)  # type: ignore[arg-type]

    monkeypatch.setattr(logger_store, "insert_lines", failing_once)
    assert await store.flush() == 1  # the first commit fails; the late line is stored next
    assert [m.outcome for m in first] == ["requeued", "requeued"]
    assert late.outcome == "ack"
    assert store._pending == [] and store._pending_lines == 0
    async with engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(logs_t))).scalar()
    assert stored == 1


async def test_lines_are_stored_once_and_lines_of_jobs_gone_are_left_out(
    engine: AsyncEngine,
) -> None:
    """One insert per batch (on PostgreSQL a single statement in autocommit): duplicates,
    within the batch or already stored, count once; a job that no longer exists has nothing
    stored and fails nothing."""
    job_id, gone = uuid.uuid4(), uuid.uuid4()
    await running_job(engine, job_id)
    batch = [line(job_id, 1), line(job_id, 2), line(job_id, 2), line(gone, 1)]
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        assert await logger_store.insert_lines(conn, batch) == 2
        assert await logger_store.insert_lines(conn, [line(job_id, 2), line(job_id, 3)]) == 1
        rows = (await conn.execute(select(logs_t.c.job_id, logs_t.c.seq))).all()
    assert sorted((r[0], r[1]) for r in rows) == [(job_id, 1), (job_id, 2), (job_id, 3)]
