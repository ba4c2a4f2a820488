"""``GET /jobs/{id}/logs``: execution history and log lines, paginated by (attempt, seq)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api import store
from api.auth import AUTH_ERRORS, Read
from api.deps import ConnDep
from api.routes.jobs import ERRORS
from api.schemas import AttemptOut, LogLineOut, LogsPage

router = APIRouter(prefix="/jobs", tags=["logs"], responses=AUTH_ERRORS)
LEVELS = ("debug", "info", "warning", "error", "critical")


def _parse_after(after: str | None, attempt: int | None) -> tuple[int, int] | None:
    """``after`` is the ``next_after`` of a previous page ("attempt:seq"), or a bare seq when
    the request names one attempt."""
    if after is None:
        return None
    try:
        if ":" in after:
            a, s = after.split(":", 1)
            return int(a), int(s)
        if attempt is not None:
            return attempt, int(after)
    except ValueError:
        pass
    raise HTTPException(
        422, "invalid 'after': use next_after of a previous page, or a seq with 'attempt'"
    )


@router.get("/{job_id}/logs", response_model=LogsPage, responses=ERRORS)
async def job_logs(
    job_id: uuid.UUID,
    access: Read,
    conn: ConnDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    level: Annotated[list[str] | None, Query()] = None,
) -> LogsPage:
    """Attempts (worker, start, end, duration, outcome, error) and log lines in order."""
    levels = [lv.lower() for lv in level or []]
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise HTTPException(422, f"unknown level {bad[0]!r}; use one of {', '.join(LEVELS)}")
    if await store.get_job(conn, job_id, access.tenant) is None:
        raise HTTPException(404, f"no job {job_id}")
    cursor = _parse_after(after, attempt)
    rows = await store.log_lines(
        conn, job_id, after=cursor, attempt=attempt, levels=levels, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    history = await store.job_attempts(conn, job_id)
    return LogsPage(
        job_id=job_id,
        attempts=[AttemptOut.model_validate(dict(a)) for a in history],
        lines=[LogLineOut.model_validate(dict(r)) for r in rows],
        next_after=f"{rows[-1]['attempt']}:{rows[-1]['seq']}" if more else None,
    )
