"""The database tables (SQLModel). PostgreSQL first; the same schema runs on SQLite.

Indexes follow the two hot readers: the scheduler (only *active* jobs, through partial indexes,
so its queries never touch the millions of finished rows) and the API's filtered, keyset-paginated
listing ``ORDER BY created_at DESC, id DESC``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from models.enums import ACTIVE_STATUSES, FINAL_STATUSES, JobStatus
from models.types import JsonType, UtcDateTime

_ACTIVE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES)))
_FINISHED_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(FINAL_STATUSES)))
_STATUS_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in JobStatus))


def _partial(sql: str) -> dict[str, Any]:
    clause = text(sql)
    return {"postgresql_where": clause, "sqlite_where": clause}


def _tenant_column() -> Column[str]:
    """Whose a job or batch is: the tenant of the key that submitted it (``created_by`` holds
    the key's id). Rows from before keys existed belong to ``default``."""
    return Column(String(100), nullable=False, server_default=text("'default'"))


def _schedule_column() -> Column[uuid.UUID]:
    """The schedule whose tick made a job or batch (NULL: submitted by hand, or the schedule
    was deleted since)."""
    return Column(Uuid, ForeignKey("schedules.id", ondelete="SET NULL"))


class Batch(SQLModel, table=True):
    """A group of jobs submitted together (a DAG run)."""

    __tablename__ = "batches"
    __table_args__ = (
        # GET /batches: a tenant's batches, newest first.
        Index("ix_batches_tenant_created", "tenant", "created_at", "id"),
        Index(
            "ux_batches_idempotency_key",
            "tenant",
            "idempotency_key",
            unique=True,
            **_partial("idempotency_key IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    name: str | None = Field(default=None, sa_column=Column(String(200)))
    tenant: str = Field(sa_column=_tenant_column())
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    job_count: int = Field(sa_column=Column(Integer, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200)))
    request_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    schedule_id: uuid.UUID | None = Field(default=None, sa_column=_schedule_column())


class Job(SQLModel, table=True):
    """One unit of work and its current state. Its history lives in ``job_attempts``."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_STATUS_SQL, name="ck_jobs_status"),
        CheckConstraint("priority BETWEEN 0 AND 10", name="ck_jobs_priority"),
        CheckConstraint("cpu_units >= 1 AND memory_mb >= 1", name="ck_jobs_resources"),
        CheckConstraint("max_attempts >= 1", name="ck_jobs_max_attempts"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at", "id"),
        Index("ix_jobs_type_created", "type", "created_at", "id"),
        Index("ix_jobs_priority_created", "priority", "created_at", "id"),
        Index("ix_jobs_batch", "batch_id", "created_at", "id", **_partial("batch_id IS NOT NULL")),
        # GET /jobs?schedule_id=: a schedule's runs, newest first.
        Index(
            "ix_jobs_schedule",
            "schedule_id",
            "created_at",
            "id",
            **_partial("schedule_id IS NOT NULL"),
        ),
        # GET /jobs?parent_id=: the jobs a job's run spawned, newest first.
        Index(
            "ix_jobs_parent", "parent_id", "created_at", "id", **_partial("parent_id IS NOT NULL")
        ),
        # Retention's sweep: the oldest finished jobs first, active ones never read.
        Index("ix_jobs_finished", "finished_at", "id", **_partial(_FINISHED_SQL)),
        # The scheduler rebuilds its state from active jobs only; finished rows stay out.
        Index("ix_jobs_active", "status", **_partial(_ACTIVE_SQL)),
        # A tenant's own listing, newest first (all, and by status).
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_tenant_status_created", "tenant", "status", "created_at", "id"),
        Index(
            "ux_jobs_idempotency_key",
            "tenant",
            "idempotency_key",
            unique=True,
            **_partial("idempotency_key IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    type: str = Field(sa_column=Column(String(200), nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    priority: int = Field(sa_column=Column(SmallInteger, nullable=False))
    cpu_units: int = Field(sa_column=Column(Integer, nullable=False))
    memory_mb: int = Field(sa_column=Column(Integer, nullable=False))
    max_attempts: int = Field(sa_column=Column(Integer, nullable=False))
    initial_delay_seconds: float = Field(sa_column=Column(Float, nullable=False))
    backoff_multiplier: float = Field(sa_column=Column(Float, nullable=False))
    timeout_seconds: float | None = Field(default=None, sa_column=Column(Float))
    run_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200)))
    #: Hash of the normalised submission, to tell a replay from a conflicting reuse of a key.
    request_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    key: str | None = Field(default=None, sa_column=Column(String(200)))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    status_reason: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    #: Attempts made before the last resubmission (``POST /jobs/{id}/retry``): the retry budget
    #: counts from here, while attempt numbers keep growing so late reports stay fenced off.
    attempts_base: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    #: End of the current backoff (status ``retrying``).
    not_before: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    worker_id: str | None = Field(default=None, sa_column=Column(String(200)))
    cancel_requested_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    result: Any | None = Field(default=None, sa_column=Column(JsonType))
    error: str | None = Field(default=None, sa_column=Column(Text))
    batch_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, ForeignKey("batches.id", ondelete="SET NULL"))
    )
    tenant: str = Field(sa_column=_tenant_column())
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    #: Named resources (``{"gpu": 1}``) and labels (``{"zone": "eu"}``) it needs; NULL: none.
    resources: dict[str, int] | None = Field(default=None, sa_column=Column(JsonType))
    labels: dict[str, str] | None = Field(default=None, sa_column=Column(JsonType))
    #: After a kill for memory: what later attempts ask for instead of ``memory_mb`` (the
    #: user's request, kept), and how many times it was raised.
    memory_escalated_mb: int | None = Field(default=None, sa_column=Column(Integer))
    memory_escalations: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    schedule_id: uuid.UUID | None = Field(default=None, sa_column=_schedule_column())
    #: The job whose run submitted this one (``ctx.submit``, ``ctx.batch``, a continuation).
    parent_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="SET NULL"))
    )


class JobDependency(SQLModel, table=True):
    """Edge ``job_id`` → ``depends_on_id``: the job may start once that one has completed."""

    __tablename__ = "job_dependencies"
    __table_args__ = (
        CheckConstraint("job_id <> depends_on_id", name="ck_job_dependencies_no_self"),
        Index("ix_job_dependencies_depends_on", "depends_on_id", "job_id"),
    )

    job_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    depends_on_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )


class JobAttempt(SQLModel, table=True):
    """Execution history: one row per attempt of a job."""

    __tablename__ = "job_attempts"
    __table_args__ = (
        Index("ix_job_attempts_worker", "worker_id", "started_at"),
        # What holds capacity now: read by GET /workers and waiting reasons, kept tiny.
        Index(
            "ix_job_attempts_holding",
            "worker_id",
            postgresql_where=text("released_at IS NULL"),
            sqlite_where=text("released_at IS NULL"),
        ),
        # The last successful runs, which a starting scheduler learns run times from.
        Index(
            "ix_job_attempts_succeeded",
            "finished_at",
            postgresql_where=text("outcome = 'succeeded'"),
            sqlite_where=text("outcome = 'succeeded'"),
        ),
    )

    job_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    attempt: int = Field(sa_column=Column(Integer, primary_key=True))
    worker_id: str | None = Field(default=None, sa_column=Column(String(200)))
    cpu_units: int = Field(sa_column=Column(Integer, nullable=False))
    memory_mb: int = Field(sa_column=Column(Integer, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    duration_seconds: float | None = Field(default=None, sa_column=Column(Float))
    outcome: str | None = Field(default=None, sa_column=Column(String(32)))
    error: str | None = Field(default=None, sa_column=Column(Text))
    result: Any | None = Field(default=None, sa_column=Column(JsonType))
    #: When its cpu and memory became free again. NULL while the attempt runs, and after it
    #: ended while its code still runs (a timed-out plain-function thread): capacity in use
    #: is the sum over the rows where this is NULL, everywhere it is shown.
    released_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    #: How a failed attempt failed: timeout, memory, signal or error (scheduler.escalation).
    failure_class: str | None = Field(default=None, sa_column=Column(String(16)))
    #: The most memory its process was seen to use (isolated jobs only).
    peak_memory_mb: int | None = Field(default=None, sa_column=Column(Integer))


class JobLog(SQLModel, table=True):
    """One log line of one attempt. (job, attempt, seq) is unique so redelivery cannot duplicate."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_ts", "ts"),)

    job_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    attempt: int = Field(sa_column=Column(Integer, primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    ts: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    level: str = Field(sa_column=Column(String(16), nullable=False))
    message: str = Field(sa_column=Column(Text, nullable=False))


class JobProgressRow(SQLModel, table=True):
    """The latest progress a job reported (``ctx.progress``), kept by the logger: one row per
    job, replaced by newer reports only (a later attempt, or a later time in the same one)."""

    __tablename__ = "job_progress"

    job_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    fraction: float = Field(sa_column=Column(Float, nullable=False))
    message: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class Worker(SQLModel, table=True):
    """A worker process as last seen by the scheduler."""

    __tablename__ = "workers"

    id: str = Field(sa_column=Column(String(200), primary_key=True))
    hostname: str = Field(sa_column=Column(String(255), nullable=False))
    cpu_units: int = Field(sa_column=Column(Integer, nullable=False))
    memory_mb: int = Field(sa_column=Column(Integer, nullable=False))
    state: str = Field(sa_column=Column(String(16), nullable=False))
    job_types: list[str] = Field(sa_column=Column(JsonType, nullable=False))
    started_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    last_heartbeat: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    jobs_succeeded: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    jobs_failed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    draining: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    #: Named resources it declared (``--resource gpu=2``) and its labels (``--label zone=eu``).
    resources: dict[str, int] | None = Field(default=None, sa_column=Column(JsonType))
    labels: dict[str, str] | None = Field(default=None, sa_column=Column(JsonType))


class WorkerControl(SQLModel, table=True):
    """What an admin set on a worker (``POST /workers/{id}/drain``, ``PATCH /workers/{id}``):
    the leading scheduler polls it like tenants' quotas, so it outlives a failover and a
    restart of the worker."""

    __tablename__ = "worker_controls"

    worker_id: str = Field(sa_column=Column(String(200), primary_key=True))
    drain: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    #: A size that replaces the one the worker declares (NULL: its own).
    cpu_units: int | None = Field(default=None, sa_column=Column(Integer))
    memory_mb: int | None = Field(default=None, sa_column=Column(Integer))
    updated_by: str | None = Field(default=None, sa_column=Column(String(200)))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class Pause(SQLModel, table=True):
    """A pause in force: of everything (``kind`` ``all``, ``name`` ``*``), of a job type, or
    of a batch (its id). Its ready jobs wait; what runs finishes. Deleted on resume."""

    __tablename__ = "pauses"

    kind: str = Field(sa_column=Column(String(16), primary_key=True))
    name: str = Field(sa_column=Column(String(200), primary_key=True))
    paused_by: str | None = Field(default=None, sa_column=Column(String(200)))
    paused_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class ApiKey(SQLModel, table=True):
    """An API key. Only a hash of its secret is kept: the key itself is shown once, at
    creation (see :mod:`smartq.keys`)."""

    __tablename__ = "api_keys"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    tenant: str = Field(sa_column=Column(String(200), nullable=False))
    scopes: list[str] = Field(sa_column=Column(JsonType, nullable=False))
    admin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    label: str | None = Field(default=None, sa_column=Column(String(200)))
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    #: Refreshed at most once a minute per key, so verifying a key is not a write per request.
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class Tenant(SQLModel, table=True):
    """What an admin set for a tenant (``PUT /admin/tenants/{name}``). No row, or a NULL
    column: the settings' default (unset = unlimited; weight 1). Written by the API only."""

    __tablename__ = "tenants"

    name: str = Field(sa_column=Column(String(100), primary_key=True))
    #: Waiting + running jobs at most; a submit over it is answered 429.
    max_active_jobs: int | None = Field(default=None, sa_column=Column(Integer))
    #: Submit requests per second (a token bucket per API process).
    submit_rate: float | None = Field(default=None, sa_column=Column(Float))
    #: Running jobs at most (held ready by the scheduler's pass).
    max_running: int | None = Field(default=None, sa_column=Column(Integer))
    #: Share of capacity within a priority level, against other tenants' weights.
    weight: float | None = Field(default=None, sa_column=Column(Float))
    #: The key batch callbacks are signed with (``PUT /admin/tenants/{name}/callback-secret``;
    #: NULL: ``SMARTQ_CALLBACK_SECRET``). Never shown: the API says only whether it is set.
    callback_secret: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class JobTypeLimits(SQLModel, table=True):
    """An admin's override of a job type's limits (``PATCH /types/{name}``); NULL: the
    ``@smartq.job`` decorator's value. ``breaker_force`` holds its breaker open or closed.
    Written by the API only."""

    __tablename__ = "job_type_limits"
    __table_args__ = (
        CheckConstraint(
            "breaker_force IS NULL OR breaker_force IN ('open', 'closed')",
            name="ck_job_type_limits_breaker_force",
        ),
    )

    name: str = Field(sa_column=Column(String(200), primary_key=True))
    rate_limit: str | None = Field(default=None, sa_column=Column(String(40)))
    max_running: int | None = Field(default=None, sa_column=Column(Integer))
    breaker_force: str | None = Field(default=None, sa_column=Column(String(8)))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class BreakerRow(SQLModel, table=True):
    """A job type's circuit breaker as the leading scheduler last left it: a standby taking
    over keeps an open breaker open. Written by the scheduler only."""

    __tablename__ = "breakers"

    job_type: str = Field(sa_column=Column(String(200), primary_key=True))
    state: str = Field(sa_column=Column(String(16), nullable=False))
    opened_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    cooldown_seconds: float = Field(sa_column=Column(Float, nullable=False))
    forced: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class Schedule(SQLModel, table=True):
    """A cron schedule (``POST /schedules``): what it submits at each tick, and how far the
    leading scheduler got. The API writes what users set; the scheduler advances ``last_tick``
    in the transaction that inserts the tick's run, under the row's lock."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("kind IN ('job', 'batch')", name="ck_schedules_kind"),
        CheckConstraint(
            "overlap IN ('skip', 'allow', 'cancel_previous')", name="ck_schedules_overlap"
        ),
        CheckConstraint("catchup IN ('none', 'latest', 'all')", name="ck_schedules_catchup"),
        # What the leading scheduler looks at: the running schedules by their next tick.
        Index(
            "ix_schedules_due",
            "next_fire_at",
            **_partial("paused = false AND next_fire_at IS NOT NULL"),
        ),
        Index("ix_schedules_tenant_created", "tenant", "created_at", "id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    tenant: str = Field(sa_column=_tenant_column())
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    name: str | None = Field(default=None, sa_column=Column(String(200)))
    cron: str = Field(sa_column=Column(String(200), nullable=False))
    timezone: str = Field(sa_column=Column(String(64), nullable=False))
    #: ``job`` (``body`` as for ``POST /jobs``) or ``batch`` (as for ``POST /jobs/batch``).
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    #: What the user sent, shown back as sent.
    body: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    #: The rows the body resolves to (type defaults filled in by the API at create/update):
    #: the scheduler stamps a copy per tick without needing the job types' code.
    template: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    overlap: str = Field(sa_column=Column(String(16), nullable=False))
    catchup: str = Field(sa_column=Column(String(16), nullable=False))
    max_catchup: int = Field(sa_column=Column(Integer, nullable=False))
    paused: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    #: The newest tick handled (fired or skipped); at creation and resume, that moment.
    last_tick: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    #: The first tick after ``last_tick``; NULL: it never fires again.
    next_fire_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    #: The run of the newest fired tick (its job, or its batch), for the overlap rule.
    last_fired_tick: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    last_job_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    last_batch_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    #: Ticks fired, and ticks the overlap rule skipped (missed ones are told in ``last_skip``).
    runs: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    skipped: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    #: Why the newest tick that did not fire did not, and when that was decided.
    last_skip: str | None = Field(default=None, sa_column=Column(Text))
    last_skip_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


# The callbacks' tables and the leader's token live in their own modules; imported here so
# this metadata has them.
import models.callback_tables  # noqa: E402
import models.leadership_table  # noqa: E402,F401

metadata = SQLModel.metadata
