"""Jobs that running jobs submitted (:class:`~models.messages.JobsSpawned`), inserted by the
leading scheduler before the pass that brought them decides anything.

One transaction for all of a pass's spawns: the parents' rows are read there and each must still
be running the attempt that asked (else its jobs are dropped — that attempt was cancelled, timed
out or lost, and a retry asks again); the jobs go in with multi-row inserts that skip any id or
idempotency key (``spawn:<parent>:<key>``, in the parent's tenant) already taken, so a retried
parent, or a message delivered twice, inserts nothing new; the parent's batch counts the new
jobs. The ids inserted go on to the pass as a ``job.submitted`` hint would. A message whose jobs
cannot be inserted (a dependency that is not a sibling) is dropped with a warning rather than
failing the pass forever."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.enums import JobStatus
from models.inserts import batches, fresh_state, insert_job, insert_rows, jobs
from models.inserts import edges as edges_t
from models.messages import JobsSpawned, SpawnedJob

log = logging.getLogger(__name__)


_Parent = Row[Any, Any, Any, Any, Any, Any]
_Parents = dict[uuid.UUID, _Parent]


def spawn_key(parent_id: uuid.UUID, key: str) -> str:
    """The idempotency key of ``parent_id``'s child named ``key``."""
    return f"spawn:{parent_id}:{key}"


async def insert_spawned(
    engine: AsyncEngine, spawned: Iterable[JobsSpawned], now: datetime
) -> list[uuid.UUID]:
    """Insert what running attempts asked for; the ids of the jobs new to the database.

    The pass's messages go in together: one read of their parents, one of which of their ids
    exist already, then the new jobs and edges in bulk (``COPY`` on PostgreSQL; a savepoint and
    three statements per job cost ~3.5 ms a job, and 5,000 jobs submitted one by one stalled a
    pass for 15 s). If the bulk insert fails on a constraint (a dependency that is not there, a
    key a user took), each message is tried alone, a job at a time, and what still fails is
    dropped."""
    docs = list(spawned)
    async with engine.connect() as conn, conn.begin():
        parents = await _parents(conn, {d.parent_id for d in docs})
        live = [d for d in docs if _runs(parents.get(d.parent_id), d)]
        try:
            async with conn.begin_nested():
                return await _bulk(conn, live, parents, now)
        except IntegrityError:
            pass
        new: list[uuid.UUID] = []
        for doc in live:
            try:
                async with conn.begin_nested():
                    new += await _one_by_one(conn, doc, parents, now)
            except IntegrityError:
                log.warning(
                    "dropping jobs a job submitted: they cannot be inserted",
                    exc_info=True,
                    extra={"action": "spawn.refused", "job_id": str(doc.parent_id)},
                )
        return new


async def _parents(conn: AsyncConnection, ids: set[uuid.UUID]) -> _Parents:
    cols = (jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.tenant, jobs.c.created_by)
    rows = await conn.execute(select(*cols, jobs.c.batch_id).where(jobs.c.id.in_(sorted(ids))))
    return {r.id: r for r in rows}


def _runs(parent: _Parent | None, doc: JobsSpawned) -> bool:
    """The parent's row still runs the attempt that asked (a durable fence, as reports have)."""
    running = parent is not None and parent.status == JobStatus.RUNNING.value
    if running and parent is not None and parent.attempts == doc.attempt:
        return True
    log.info(
        "dropping jobs submitted by an attempt that no longer runs",
        extra={
            "action": "spawn.stale",
            "job_id": str(doc.parent_id),
            "attempt": doc.attempt,
            "jobs": len(doc.jobs),
        },
    )
    return False


def _rows(doc: JobsSpawned, parents: _Parents, now: datetime) -> list[dict[str, Any]]:
    p = parents[doc.parent_id]
    # A microsecond apart, as a batch's jobs are: listing order is the order asked.
    return [
        _row(
            job, doc.parent_id, p.tenant, p.created_by, p.batch_id, now + timedelta(microseconds=i)
        )
        for i, job in enumerate(doc.jobs)
    ]


async def _bulk(
    conn: AsyncConnection, docs: list[JobsSpawned], parents: _Parents, now: datetime
) -> list[uuid.UUID]:
    """Every job not in the database yet (by id: a retried parent's are), in bulk."""
    wanted = {job.id: job for doc in docs for job in doc.jobs}
    if not wanted:
        return []
    there = await conn.execute(select(jobs.c.id).where(jobs.c.id.in_(list(wanted))))
    have = {r[0] for r in there}
    rows = [r for doc in docs for r in _rows(doc, parents, now) if r["id"] not in have]
    await insert_rows(conn, jobs, rows)
    edges = [
        {"job_id": r["id"], "depends_on_id": d} for r in rows for d in wanted[r["id"]].depends_on
    ]
    await insert_rows(conn, edges_t, edges)
    await _count(conn, rows)
    return [r["id"] for r in rows]


async def _one_by_one(
    conn: AsyncConnection, doc: JobsSpawned, parents: _Parents, now: datetime
) -> list[uuid.UUID]:
    """One message's jobs, each skipped if its id or key is taken (the slow, safe path)."""
    rows = []
    for job, row in zip(doc.jobs, _rows(doc, parents, now), strict=True):
        there = await conn.execute(select(jobs.c.id).where(jobs.c.id == job.id))
        if there.first() is None and await insert_job(conn, row, job.depends_on):
            rows.append(row)
    await _count(conn, rows)
    return [r["id"] for r in rows]


async def _count(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """The parents' batches count the jobs new to them."""
    for batch_id, n in Counter(r["batch_id"] for r in rows if r["batch_id"]).items():
        count = batches.c.job_count + n
        await conn.execute(update(batches).where(batches.c.id == batch_id).values(job_count=count))


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
