"""A batch's report as ``GET /batches/{id}`` shows it and the ``batch.finished`` callback sends
it: totals by status, whether every job ended, the first start, the last end, the duration.
Here, below both the API and the scheduler, so the two cannot drift apart."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import FINAL_STATUSES, JobStatus
from models.inserts import jobs


async def batches_totals(
    conn: AsyncConnection, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[RowMapping]]:
    """Per batch, per status of its jobs: how many, the first start and the last end, in one
    grouped query (one range of the index on ``batch_id`` per batch)."""
    out: dict[uuid.UUID, list[RowMapping]] = {b: [] for b in batch_ids}
    if not batch_ids:
        return out
    rows = await conn.execute(
        select(
            jobs.c.batch_id,
            jobs.c.status,
            func.count().label("count"),
            func.min(jobs.c.started_at).label("started_at"),
            func.max(jobs.c.finished_at).label("finished_at"),
        )
        .where(jobs.c.batch_id.in_(batch_ids))
        .group_by(jobs.c.batch_id, jobs.c.status)
    )
    for r in rows.mappings():
        out[r["batch_id"]].append(r)
    return out


Row = Mapping[str, Any] | RowMapping


def summary_done(totals: Sequence[Row]) -> bool:
    """Whether every job of the batch has ended."""
    return all(t["status"] in FINAL_STATUSES for t in totals)


def summary(batch: Row, totals: Sequence[Row]) -> dict[str, Any]:
    """The report's head (``BatchSummary``'s fields) from the batch row and its totals."""
    done = summary_done(totals)
    starts = [t["started_at"] for t in totals if t["started_at"] is not None]
    ends = [t["finished_at"] for t in totals if t["finished_at"] is not None]
    started = min(starts) if starts else None
    finished = max(ends) if done and ends else None
    counts = {t["status"]: t["count"] for t in totals}
    return {
        "batch_id": batch["id"],
        "name": batch["name"],
        "created_at": batch["created_at"],
        "job_count": batch["job_count"],
        "totals": {s.value: counts.get(s.value, 0) for s in JobStatus},
        "done": done,
        "started_at": started,
        "finished_at": finished,
        "duration_seconds": (finished - started).total_seconds() if started and finished else None,
    }
