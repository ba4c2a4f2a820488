"""``POST /admin/purge``: an admin deletes finished jobs by filter, at once, under the same
guard as retention's sweep (:mod:`scheduler.retention`), in the sweep's short transactions.
``dry_run`` only counts. One request deletes at most ``SMARTQ_RETENTION_MAX_PER_SWEEP``
jobs and says ``more`` when some are left (the SDK and the CLI ask again)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import AUTH_ERRORS, AdminDep
from api.deps import ConnDep, ContextDep
from api.schemas import ErrorBody, no_nul
from models import deletes
from models.enums import JobStatus
from scheduler import retention
from smartq import chunked

router = APIRouter(prefix="/admin", tags=["admin"], responses=AUTH_ERRORS)
_ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody}}


class PurgeRequest(BaseModel):
    """Which finished jobs to delete: every field given narrows it; at least one is needed."""

    model_config = ConfigDict(extra="forbid")

    status: list[JobStatus] | None = Field(
        default=None, description="Final statuses only (completed, failed, cancelled); none: all."
    )
    type: Annotated[str, Field(max_length=200), AfterValidator(no_nul)] | None = None
    tenant: Annotated[str, Field(max_length=100), AfterValidator(no_nul)] | None = None
    batch_id: uuid.UUID | None = None
    finished_before: AwareDatetime | None = None
    dry_run: bool = Field(default=False, strict=True, description="Only count what would go.")


class PurgeResult(BaseModel):
    dry_run: bool
    matched: int = Field(description="Jobs the filter picks that may be deleted now.")
    deleted: int = Field(description="Jobs deleted (0 in a dry run).")
    kept: int = Field(
        description="Jobs the filter picks that the guard keeps: something unfinished depends "
        "on them, or jobs they spawned are active."
    )
    more: bool = Field(description="This request stopped at its cap; purge again for the rest.")


@router.post("/purge", response_model=PurgeResult, responses=_ERRORS)
async def purge(
    body: PurgeRequest, caller: AdminDep, ctx: ContextDep, conn: ConnDep
) -> PurgeResult:
    """Delete the finished jobs a filter picks, with their attempts, logs and edges, and the
    batches left empty (admin keys). 422 for an empty filter or a status that is not final."""
    try:
        sel = retention.purge_selection(
            [s.value for s in body.status or []],
            type=body.type,
            tenant=body.tenant,
            batch_id=body.batch_id,
            finished_before=body.finished_before,
        )
    except retention.PurgeFilterError as exc:
        raise HTTPException(
            422, {"error": str(exc), "detail": body.model_dump(mode="json")}
        ) from None
    async with conn.begin():
        matched, kept = await deletes.count(conn, sel)
    if body.dry_run or not matched:
        return PurgeResult(dry_run=body.dry_run, matched=matched, deleted=0, kept=kept, more=False)
    settings = ctx.settings
    budget = retention.Budget(settings.retention_batch_size, settings.retention_max_per_sweep)
    out = await deletes.delete_jobs(chunked.on(conn), sel, budget)
    return PurgeResult(dry_run=False, matched=matched, deleted=out.total, kept=kept, more=out.more)
