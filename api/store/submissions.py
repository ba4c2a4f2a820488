"""What users submit: jobs, batches and their edges, each once under an idempotency key (the
inserts themselves are :mod:`models.inserts`, shared with the scheduler's cron ticks)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.tables import batches, jobs
from models.enums import CANCELLABLE_AT_ONCE
from models.inserts import insert_batch, insert_job, insert_rows

__all__ = [
    "HASHED",
    "WAITING",
    "batch_by_idempotency_key",
    "existing_ids",
    "insert_batch",
    "insert_job",
    "insert_rows",
    "job_by_idempotency_key",
    "request_hash",
]

HASHED = (
    "name",
    "type",
    "payload",
    "priority",
    "cpu_units",
    "memory_mb",
    "resources",
    "labels",
    "max_attempts",
    "initial_delay_seconds",
    "backoff_multiplier",
    "timeout_seconds",
    "run_at",
    "key",
)
WAITING = tuple(s.value for s in CANCELLABLE_AT_ONCE)


def request_hash(values: dict[str, Any], depends_on: Iterable[Any]) -> str:
    doc = {k: values[k] for k in HASHED}
    doc["depends_on"] = sorted(str(d) for d in depends_on)
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def existing_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], tenant: str
) -> set[uuid.UUID]:
    """Which of ``ids`` are jobs of ``tenant`` (a dependency may name only those), held until
    the submit's transaction ends (``FOR KEY SHARE``): retention's sweep skips a locked job and
    a ``DELETE /jobs/{id}`` waits, so a job checked here is still there for the edge to it
    (between the two, a deleted job failed the insert on its foreign key)."""
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = await conn.execute(
            select(jobs.c.id)
            .where(jobs.c.id.in_(chunk), jobs.c.tenant == tenant)
            .with_for_update(key_share=True)
        )
        found.update(r[0] for r in rows)
    return found


async def job_by_idempotency_key(conn: AsyncConnection, key: str, tenant: str) -> RowMapping | None:
    row = await conn.execute(
        select(jobs).where(jobs.c.idempotency_key == key, jobs.c.tenant == tenant)
    )
    return row.mappings().first()


async def batch_by_idempotency_key(
    conn: AsyncConnection, key: str, tenant: str
) -> RowMapping | None:
    row = await conn.execute(
        select(batches).where(batches.c.idempotency_key == key, batches.c.tenant == tenant)
    )
    return row.mappings().first()
