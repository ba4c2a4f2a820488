"""Monitoring messages (``job.monitoring.…``): the queue, the workers' resources, the logger
and breaker changes, published for the API, its stream and its metrics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.enums import WorkerState
from models.envelope import Message


class WorkerSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)
    worker_id: str
    state: WorkerState
    cpu_units: int
    memory_mb: int
    cpu_in_use: int
    memory_in_use: int
    running_jobs: int
    cpu_percent: float | None = None
    rss_mb: float | None = None
    last_heartbeat: datetime | None = None


class QueueMonitor(Message):
    """scheduler → everyone (``job.monitoring.queue``): the queue at a glance.

    Active statuses are exact (the scheduler's memory); finished ones are counted once at the
    scheduler's start and then incremented by the transitions it decides.
    """

    type: Literal["monitoring.queue"] = "monitoring.queue"
    ts: datetime
    jobs_by_status: dict[str, int]
    ready_by_priority: dict[int, int]
    oldest_ready_wait_seconds: float | None
    #: Breakers not closed and every limit, with the ready jobs each holds.
    gates: list[GateSnapshot] = []
    #: The next ready jobs' predicted starts (``SMARTQ_FORECAST_JOBS`` of them).
    forecasts: list[StartForecast] = []
    #: Every job type's learned run time.
    durations: list[TypeDuration] = []
    #: The predicted finish of the newest batches with unfinished jobs (at most 256).
    batch_forecasts: list[BatchFinishForecast] = Field(default_factory=list)


class StartForecast(BaseModel):
    """When a ready job is predicted to start, and by when at the 90th percentile."""

    model_config = ConfigDict(frozen=True)

    job_id: uuid.UUID
    start_at: datetime
    late_at: datetime


class BatchFinishForecast(BaseModel):
    """When a batch with unfinished jobs is predicted to finish, and by when at the 90th
    percentile (``scheduler.batchfinish``)."""

    model_config = ConfigDict(frozen=True)

    batch_id: uuid.UUID
    finish_at: datetime
    late_at: datetime
    jobs_left: int


class TypeDuration(BaseModel):
    """A job type's predicted run time, learned from its last successful runs."""

    model_config = ConfigDict(frozen=True)

    job_type: str
    seconds: float
    p90_seconds: float
    runs: int


class GateSnapshot(BaseModel):
    """One flow-control gate: a job type's breaker (when not closed), a type's limits or a
    tenant's, with what it holds and why (the words ``GET /jobs/{id}`` shows)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["breaker", "type", "tenant", "pause"]
    name: str
    limit: str | None = None
    running: int = 0
    held: int = 0
    next_at: datetime | None = None
    reason: str | None = None
    state: str | None = None


class BreakerChanged(Message):
    """scheduler → everyone (``job.monitoring.breaker``): a job type's breaker changed."""

    type: Literal["breaker.state"] = "breaker.state"
    job_type: str
    state: str
    before: str
    ts: datetime
    why: str
    forced: bool = False
    #: When an open breaker lets its probe through (None: forced, or not open).
    probe_at: datetime | None = None


class ResourceMonitor(Message):
    """scheduler → everyone (``job.monitoring.resource``): every worker's capacity and use,
    with the CPU and memory its last heartbeat measured (psutil)."""

    type: Literal["monitoring.resource"] = "monitoring.resource"
    ts: datetime
    workers: list[WorkerSnapshot]


class LoggerMonitor(Message):
    """logger → everyone (``job.monitoring.logger``): lines this logger process stored."""

    type: Literal["monitoring.logger"] = "monitoring.logger"
    ts: datetime
    logger_id: str
    started_at: datetime
    lines_stored: int


class PauseChanged(Message):
    """scheduler → everyone (``job.monitoring.pause``): a pause began or ended, as the
    scheduler applied it. ``kind``: all, type or batch; ``name``: ``*``, the type or the
    batch id."""

    type: Literal["pause.changed"] = "pause.changed"
    kind: str
    name: str
    paused: bool
    by: str | None = None
    ts: datetime
