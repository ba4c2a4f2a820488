"""Request and response bodies of ``/schedules`` (issue 19): a cron expression in a time zone,
what each tick submits (a body as for ``POST /jobs`` or ``POST /jobs/batch``), and the rules
for overlapping runs and for ticks missed while no scheduler led."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import BatchCreate, JobCreate, Name
from scheduler.cron import MAX_CATCHUP, Catchup, Overlap

#: How many coming fire times a schedule is shown with.
NEXT_SHOWN = 5
DEFAULT_MAX_CATCHUP = 100

_CRON = (
    "5 fields (minute hour day-of-month month day-of-week), or 6 with a leading seconds "
    "field; croniter's syntax (lists, ranges, steps, names, L) and @hourly-style aliases."
)
_ZONE = "An IANA time zone the cron is read in (default UTC), e.g. Europe/Paris."
_OVERLAP = (
    "While the previous tick's run is still active: skip (this tick, recorded), allow, or "
    "cancel_previous (its waiting jobs are cancelled, its running ones asked to stop)."
)
_CATCHUP = (
    "Ticks missed while no scheduler led: none (skipped), latest (the newest of them fires "
    "once), all (each fires, the newest max_catchup at most)."
)


class ScheduleCreate(BaseModel):
    """A new schedule; exactly one of ``job`` and ``batch``."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    cron: str = Field(min_length=1, max_length=200, description=_CRON)
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description=_ZONE)
    job: JobCreate | None = Field(default=None, description="A body as for POST /jobs.")
    batch: BatchCreate | None = Field(default=None, description="A body as for POST /jobs/batch.")
    overlap: Overlap = Field(default=Overlap.SKIP, description=_OVERLAP)
    catchup: Catchup = Field(default=Catchup.NONE, description=_CATCHUP)
    max_catchup: int = Field(default=DEFAULT_MAX_CATCHUP, ge=1, le=MAX_CATCHUP, strict=True)
    paused: bool = Field(default=False, strict=True, description="Made paused: fires nothing.")


class SchedulePatch(BaseModel):
    """Only the fields sent change. A new cron or time zone counts from now (no tick between
    the last one and now fires); ``job`` or ``batch`` replaces what it submits."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=_CRON)
    timezone: str | None = Field(default=None, min_length=1, max_length=64, description=_ZONE)
    job: JobCreate | None = None
    batch: BatchCreate | None = None
    overlap: Overlap | None = None
    catchup: Catchup | None = None
    max_catchup: int | None = Field(default=None, ge=1, le=MAX_CATCHUP, strict=True)


class ScheduleOut(BaseModel):
    """A schedule, its next fire times, and what its ticks did so far."""

    id: uuid.UUID
    name: str | None
    tenant: str
    created_by: str | None
    cron: str
    timezone: str
    job: dict[str, Any] | None = Field(description="What each tick submits (as sent), or null.")
    batch: dict[str, Any] | None = Field(description="The batch each tick submits, or null.")
    overlap: Overlap
    catchup: Catchup
    max_catchup: int
    paused: bool
    next_fire_at: datetime | None = Field(description="Null while paused, or if never again.")
    next_fire_times: list[datetime] = Field(description=f"The next {NEXT_SHOWN} (none paused).")
    last_tick: datetime = Field(
        description="The newest tick handled, fired or skipped (at creation, resume or a new "
        "cron: that moment)."
    )
    last_fired_tick: datetime | None
    last_job_id: uuid.UUID | None = Field(description="The job the newest fired tick made.")
    last_batch_id: uuid.UUID | None = Field(description="Or the batch it made.")
    runs: int = Field(description="Ticks fired.")
    skipped: int = Field(description="Ticks the overlap rule skipped.")
    last_skip: str | None = Field(
        description="Why the newest tick (or stretch of missed ticks) that did not fire did not."
    )
    last_skip_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None
