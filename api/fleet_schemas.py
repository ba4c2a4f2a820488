"""Response bodies about the fleet and its job types: ``GET /types`` and ``GET /workers``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class TypeLimitsOut(BaseModel):
    """An admin's override of a type's limits (``PATCH /types/{name}``); null: the
    ``@smartq.job`` decorator's value, and ``breaker_force`` null lets the breaker decide."""

    rate_limit: str | None = Field(description="e.g. 5/s, 30/min, 100/h.")
    max_running: int | None
    breaker_force: Literal["open", "closed"] | None
    updated_at: datetime | None = Field(description="When an admin last patched it.")


class BreakerOut(BaseModel):
    """A type's circuit breaker as the scheduler last left it."""

    state: str = Field(description="closed, open or half_open.")
    opened_at: datetime | None
    forced: bool = Field(description="Held open or closed by an admin (breaker_force).")


class TypeOut(BaseModel):
    """A job type: its defaults where this API knows it, the live workers that run it, an
    admin's override of its limits and its breaker."""

    name: str
    known_to_api: bool = Field(description="Registered in this API process (it can be submitted).")
    cpu_units: int | None
    memory_mb: int | None
    max_attempts: int | None
    timeout_seconds: float | None
    workers: int = Field(description="Live workers that run it.")
    limits: TypeLimitsOut | None = Field(description="An admin's override; null: none.")
    breaker: BreakerOut | None = Field(description="Null: the scheduler stored none yet.")
    predicted_seconds: float | None = Field(
        default=None,
        description="The scheduler's predicted run time, learned from the type's last "
        "successful runs (null: none seen yet; a job then counts as "
        "SMARTQ_PREDICTION_DEFAULT_SECONDS).",
    )
    p90_seconds: float | None = Field(default=None, description="The 90th percentile of those.")
    runs_seen: int = Field(default=0, description="How many runs the prediction is made of.")


class LingeringOut(BaseModel):
    """An attempt that ended (timed out) while its code still runs, holding its resources."""

    job_id: uuid.UUID
    attempt: int
    cpu_units: int
    memory_mb: int


class WorkerControlOut(BaseModel):
    """What an admin set on the worker, and what it declares itself."""

    drain: bool
    cpu_units: int | None = Field(description="The size set (null: the worker's own).")
    memory_mb: int | None
    declared_cpu_units: int
    declared_memory_mb: int
    updated_by: str | None = Field(description="The id of the admin key that set it.")
    updated_at: datetime


class WorkerOut(BaseModel):
    """A worker as the scheduler last recorded it, with what runs on it now."""

    id: str
    hostname: str
    state: str = Field(
        description="idle, busy, draining (still running jobs), drained (nothing runs) or "
        "offline (also when its heartbeat is older than the lease, whatever was recorded)."
    )
    cpu_units: int
    memory_mb: int
    cpu_in_use: int = Field(
        description="cpu_units held by its attempts: running ones and lingering ones."
    )
    memory_in_use: int = Field(description="MB held by its attempts, lingering ones included.")
    running_jobs: int = Field(description="Attempts holding resources there (as in /metrics).")
    lingering: list[LingeringOut] = Field(
        default_factory=list,
        description="Ended attempts whose code still runs (timed-out threads) and holds "
        "capacity until it returns.",
    )
    resources: dict[str, int] = Field(
        default_factory=dict, description="Named resources it offers (--resource gpu=2)."
    )
    resources_in_use: dict[str, int] = Field(
        default_factory=dict, description="Of those, what its attempts hold now."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Its labels (--label).")
    job_types: list[str]
    started_at: datetime
    last_heartbeat: datetime
    uptime_seconds: float = Field(description="Since it started, until now or until it went away.")
    jobs_succeeded: int
    jobs_failed: int
    draining: bool
    control: WorkerControlOut | None = Field(
        default=None,
        description="What an admin set (drain, size); cpu_units and memory_mb above are what "
        "placement uses.",
    )
    cpu_percent: float | None = Field(
        default=None, description="Process CPU % from its last heartbeat (psutil), if known."
    )
    rss_mb: float | None = Field(default=None, description="Resident memory (MB), if known.")
