"""Rows of jobs as retention finds them: finished (or not) at a chosen age, with attempts,
log lines, progress, edges, a batch, a parent — written straight to the tables."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from models import deletes
from models.enums import FINAL_STATUSES
from models.tables import Batch, JobAttempt, JobProgressRow
from models.types import utcnow

FINAL = {s.value for s in FINAL_STATUSES}
attempts_t = JobAttempt.__table__  # type: ignore[attr-defined]
progress_t = JobProgressRow.__table__  # type: ignore[attr-defined]
batches_t = Batch.__table__  # type: ignore[attr-defined]


async def add_batch(
    conn: AsyncConnection, days_ago: float = 0, tenant: str = "default"
) -> uuid.UUID:
    batch_id = uuid.uuid4()
    made = utcnow() - timedelta(days=days_ago)
    await conn.execute(
        insert(batches_t).values(id=batch_id, job_count=0, created_at=made, tenant=tenant)
    )
    return batch_id


async def add_job(
    conn: AsyncConnection,
    status: str = "completed",
    days_ago: float = 0,
    *,
    depends_on: list[uuid.UUID] = (),  # type: ignore[assignment]
    lines: int = 2,
    **fields: Any,
) -> uuid.UUID:
    """A job that finished ``days_ago`` (an active one was made then), with one attempt,
    ``lines`` log lines and its progress."""
    job_id = uuid.uuid4()
    when: datetime = utcnow() - timedelta(days=days_ago)
    values: dict[str, Any] = {
        "id": job_id,
        "name": f"j-{job_id.hex[:6]}",
        "type": "noop",
        "payload": {},
        "priority": 5,
        "cpu_units": 1,
        "memory_mb": 256,
        "max_attempts": 1,
        "initial_delay_seconds": 1.0,
        "backoff_multiplier": 2.0,
        "status": status,
        "attempts": 1,
        "attempts_base": 0,
        "created_at": when - timedelta(seconds=1),
        "updated_at": when,
        "finished_at": when if status in FINAL else None,
        **fields,
    }
    await conn.execute(insert(deletes.jobs).values(**values))
    for dep in depends_on:
        await conn.execute(insert(deletes.edges).values(job_id=job_id, depends_on_id=dep))
    await conn.execute(
        insert(attempts_t).values(job_id=job_id, attempt=1, cpu_units=1, memory_mb=256)
    )
    if lines:
        rows = [
            {"job_id": job_id, "attempt": 1, "seq": n, "ts": when, "level": "info", "message": "x"}
            for n in range(1, lines + 1)
        ]
        await conn.execute(insert(deletes.logs), rows)
    await conn.execute(
        insert(progress_t).values(job_id=job_id, attempt=1, fraction=1.0, updated_at=when)
    )
    return job_id


async def left(conn: AsyncConnection, job_ids: list[uuid.UUID]) -> dict[str, int]:
    """How many rows of these jobs each table still holds."""
    out: dict[str, int] = {}
    for name, table, column in (
        ("jobs", deletes.jobs, deletes.jobs.c.id),
        ("attempts", attempts_t, attempts_t.c.job_id),
        ("logs", deletes.logs, deletes.logs.c.job_id),
        ("progress", progress_t, progress_t.c.job_id),
        ("edges", deletes.edges, deletes.edges.c.job_id),
    ):
        stmt = select(func.count()).select_from(table).where(column.in_(job_ids))
        out[name] = int((await conn.execute(stmt)).scalar_one())
    return out


async def exists(conn: AsyncConnection, job_id: uuid.UUID) -> bool:
    stmt = select(deletes.jobs.c.id).where(deletes.jobs.c.id == job_id)
    return (await conn.execute(stmt)).first() is not None
