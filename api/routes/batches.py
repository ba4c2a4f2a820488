"""``GET /batches/{id}``: a DAG run's report."""

from __future__ import annotations

import uuid
from collections import Counter

from fastapi import APIRouter, HTTPException

from api import store
from api.deps import ConnDep
from api.routes.jobs import ERRORS
from api.schemas import BatchReport
from api.views import job_public
from models.enums import FINAL_STATUSES, JobStatus

router = APIRouter(prefix="/batches", tags=["batches"])


@router.get("/{batch_id}", response_model=BatchReport, responses=ERRORS)
async def get_batch(batch_id: uuid.UUID, conn: ConnDep) -> BatchReport:
    """Totals by status, when it started and ended, and its jobs."""
    batch = await store.get_batch(conn, batch_id)
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    rows = await store.batch_jobs(conn, batch_id)
    deps = await store.dependencies_of(conn, [r["id"] for r in rows])
    totals = Counter(r["status"] for r in rows)
    done = all(r["status"] in FINAL_STATUSES for r in rows)
    starts = [r["started_at"] for r in rows if r["started_at"] is not None]
    ends = [r["finished_at"] for r in rows if r["finished_at"] is not None]
    started = min(starts) if starts else None
    finished = max(ends) if done and ends else None
    return BatchReport(
        batch_id=batch_id,
        name=batch["name"],
        created_at=batch["created_at"],
        job_count=batch["job_count"],
        totals={s.value: totals.get(s.value, 0) for s in JobStatus},
        done=done,
        started_at=started,
        finished_at=finished,
        duration_seconds=(finished - started).total_seconds() if started and finished else None,
        jobs=[job_public(r, deps[r["id"]]) for r in rows],
    )
