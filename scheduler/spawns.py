"""Jobs that running jobs submitted (:class:`~models.messages.JobsSpawned`), inserted by the
leading scheduler before the pass that brought them decides anything.

One transaction for all of a pass's spawns, a savepoint for each message: the parent's row is
read there and must still be running the attempt that asked (else the jobs are dropped — that
attempt was cancelled, timed out or lost, and a retry asks again); each job is inserted
through the submit's own inserts (:mod:`models.inserts`) under the idempotency key
``spawn:<parent>:<key>`` in the parent's tenant, so a retried parent, or a message delivered
twice, inserts nothing new; the parent's batch counts the new jobs. The ids inserted go on to
the pass as a ``job.submitted`` hint would. A message whose jobs cannot be inserted (a
dependency that is not a sibling) is dropped with a warning rather than failing the pass
forever.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.enums import JobStatus
from models.inserts import batches, fresh_state, insert_job, jobs
from models.messages import JobsSpawned, SpawnedJob

log = logging.getLogger(__name__)


def spawn_key(parent_id: uuid.UUID, key: str) -> str:
    """The idempotency key of ``parent_id``'s child named ``key``."""
    return f"spawn:{parent_id}:{key}"


async def insert_spawned(
    engine: AsyncEngine, spawned: Iterable[JobsSpawned], now: datetime
) -> list[uuid.UUID]:
    """Insert what running attempts asked for; the ids of the jobs new to the database."""
    new: list[uuid.UUID] = []
    async with engine.connect() as conn, conn.begin():
        for doc in spawned:
            try:
                async with conn.begin_nested():
                    new += await _insert(conn, doc, now)
            except IntegrityError:
                log.warning(
                    "dropping jobs a job submitted: they cannot be inserted",
                    exc_info=True,
                    extra={"action": "spawn.refused", "job_id": str(doc.parent_id)},
                )
    return new


async def _insert(conn: AsyncConnection, doc: JobsSpawned, now: datetime) -> list[uuid.UUID]:
    parent = (
        await conn.execute(
            select(
                jobs.c.status, jobs.c.attempts, jobs.c.tenant, jobs.c.created_by, jobs.c.batch_id
            ).where(jobs.c.id == doc.parent_id)
        )
    ).first()
    if parent is None or parent.status != JobStatus.RUNNING.value or parent.attempts != doc.attempt:
        log.info(
            "dropping jobs submitted by an attempt that no longer runs",
            extra={
                "action": "spawn.stale",
                "job_id": str(doc.parent_id),
                "attempt": doc.attempt,
                "jobs": len(doc.jobs),
            },
        )
        return []
    new: list[uuid.UUID] = []
    for i, job in enumerate(doc.jobs):
        # A microsecond apart, as a batch's jobs are: listing order is the order asked.
        created = now + timedelta(microseconds=i)
        values = _row(
            job, doc.parent_id, parent.tenant, parent.created_by, parent.batch_id, created
        )
        if await insert_job(conn, values, job.depends_on):
            new.append(job.id)
    if new and parent.batch_id is not None:
        await conn.execute(
            update(batches)
            .where(batches.c.id == parent.batch_id)
            .values(job_count=batches.c.job_count + len(new))
        )
    return new


def _row(
    job: SpawnedJob,
    parent_id: uuid.UUID,
    tenant: str,
    created_by: str | None,
    batch_id: uuid.UUID | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "type": job.job_type,
        "payload": job.payload,
        "priority": job.priority,
        "cpu_units": job.cpu_units,
        "memory_mb": job.memory_mb,
        "resources": job.resources,
        "labels": job.labels,
        "max_attempts": job.max_attempts,
        "initial_delay_seconds": job.initial_delay_seconds,
        "backoff_multiplier": job.backoff_multiplier,
        "timeout_seconds": job.timeout_seconds,
        "run_at": job.run_at,
        "key": job.key,
        "request_hash": None,
        **fresh_state(
            tenant=tenant,
            created_by=created_by,
            batch_id=batch_id,
            idempotency_key=spawn_key(parent_id, job.key),
            now=now,
        ),
        "parent_id": parent_id,
    }
