"""The dead-letter view's action: ``POST /jobs/{id}/retry`` resubmits a job that failed for good
(list them with ``GET /jobs?status=failed``: each shows its last ``error``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException

from api import store
from api.auth import AUTH_ERRORS, Submit
from api.deps import ConnDep, ContextDep
from api.routes.jobs import ERRORS
from api.schemas import ResubmitResult
from api.views import job_public
from models.enums import JobStatus
from models.types import utcnow
from smartq.db import is_retryable

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_ERRORS)


@router.post("/{job_id}/retry", response_model=ResubmitResult, responses=ERRORS)
async def retry_job(
    job_id: uuid.UUID,
    access: Submit,
    ctx: ContextDep,
    conn: ConnDep,
    with_descendants: bool = False,
) -> ResubmitResult:
    """Run a failed job again with a fresh retry budget; with ``with_descendants=true`` the jobs
    that were cancelled because of it run again too. Only ``failed`` jobs: others are 409.
    It runs work again, so it needs the ``submit`` scope, and it is held to the tenant's
    quotas like a submit (a 429 leaves the job failed)."""
    owner = access.tenant
    if owner is None:  # an admin acting on every tenant: the job's own tenant's quotas
        async with conn.begin():
            found = await store.get_job(conn, job_id, None)
        owner = found["tenant"] if found is not None else access.home
    quotas = await ctx.admission.admit(conn, owner)
    for attempt in range(1, 4):
        try:
            async with conn.begin():
                row = await store.get_job(conn, job_id, access.tenant)
                if row is None:
                    raise HTTPException(404, f"no job {job_id}")
                if row["status"] != JobStatus.FAILED.value:
                    raise HTTPException(
                        409,
                        {
                            "error": f"only failed jobs can be retried; it is {row['status']}",
                            "detail": {"status": row["status"]},
                        },
                    )
                ids = await store.resubmit(conn, row, utcnow(), with_descendants)
                # Counted with the jobs it made active again (this transaction sees them).
                await ctx.admission.hold_room(conn, owner, quotas, 0)
            break
        except HTTPException:
            raise
        except Exception as exc:
            if attempt == 3 or not is_retryable(exc):
                raise
    if not ids:
        raise HTTPException(409, "the job changed state meanwhile; try again")
    ctx.hints.add(ids)
    fresh = await store.get_job(conn, job_id, access.tenant)
    assert fresh is not None
    deps = await store.dependencies_of(conn, [job_id])
    return ResubmitResult(job=job_public(fresh, deps[job_id]), resubmitted=ids)
