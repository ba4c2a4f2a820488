"""Request and response bodies of the REST API.

A job is shown with the field names it was submitted with (``retry`` as an object); named
priorities come back as names, other integers as integers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api.callback_schemas import MAX_CALLBACKS, CallbackCreate
from models.enums import MAX_PRIORITY, MIN_PRIORITY, PRIORITY_NAMES, PRIORITY_VALUES, Priority
from models.limits import (
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_CPU_UNITS,
    MAX_DELAY_SECONDS,
    MAX_MEMORY_MB,
    MAX_NAME_LENGTH,
    MAX_TIMEOUT_SECONDS,
)
from scheduler import resources

_PRIORITY_NAMES = ", ".join(PRIORITY_NAMES[v] for v in sorted(PRIORITY_NAMES, reverse=True))
#: What a priority may be; the one message of every error about one.
PRIORITY_RULE = f"must be one of {_PRIORITY_NAMES} or an integer {MIN_PRIORITY}–{MAX_PRIORITY}"
_NAMES = frozenset(p.value for p in Priority)
_LEVELS = range(MIN_PRIORITY, MAX_PRIORITY + 1)
_PriorityJson = Priority | Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]


def _priority(value: object) -> Priority | int:
    """A name or an integer in range; not a bool, not a number in a string. Checked before
    the union is: on its own, the union reported each member's complaint and the headline
    showed only the first (the names), hiding the range."""
    if isinstance(value, str) and value in _NAMES:
        return Priority(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in _LEVELS:
        return value
    raise PydanticCustomError("priority", PRIORITY_RULE)


def _priority_param(value: object) -> Priority | int:
    """In a query string every value is text: ``priority=8`` means the integer."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return _priority(int(value))
    return _priority(value)


PriorityIn = Annotated[_PriorityJson, BeforeValidator(_priority)]
PriorityParam = Annotated[_PriorityJson, BeforeValidator(_priority_param)]
PriorityOut = Priority | int


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it up front (on every backend alike)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(no_nul)]


def _counts(value: dict[str, Any]) -> dict[str, int]:
    try:
        return resources.check_counts(value)
    except resources.ResourceSpecError as error:
        raise PydanticCustomError("resources", "{why}", {"why": str(error)}) from None


def _labels(value: dict[str, Any]) -> dict[str, str]:
    try:
        return resources.check_labels(value)
    except resources.ResourceSpecError as error:
        raise PydanticCustomError("labels", "{why}", {"why": str(error)}) from None


#: Named resources a job asks for (``{"gpu": 1}``) or a worker offers.
ResourcesIn = Annotated[dict[str, Any], AfterValidator(_counts)]
#: Labels a job asks for (``{"zone": "eu"}``) or a worker has.
LabelsIn = Annotated[dict[str, Any], AfterValidator(_labels)]


def priority_value(priority: PriorityIn) -> int:
    return PRIORITY_VALUES[priority] if isinstance(priority, Priority) else priority


def priority_out(value: int) -> PriorityOut:
    return PRIORITY_NAMES.get(value, value)


class _Strict(BaseModel):
    """A request body: unknown fields are refused, and so are numbers given as strings or
    bools (each numeric field says ``strict=True``; timestamps and ids still come as text)."""

    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """``max_attempts`` counts every attempt, the first included. The wait before attempt n+1
    is ``initial_delay_seconds × backoff_multiplier^(n−1)``."""

    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS, strict=True)
    initial_delay_seconds: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_SECONDS, strict=True
    )
    backoff_multiplier: float | None = Field(default=None, ge=1, le=MAX_BACKOFF, strict=True)


class JobCreate(_Strict):
    name: Name | None = None
    type: Name
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: PriorityIn = Priority.NORMAL
    cpu_units: int | None = Field(default=None, ge=1, le=MAX_CPU_UNITS, strict=True)
    memory_mb: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MB, strict=True)
    resources: ResourcesIn | None = Field(
        default=None,
        description='Named resources it needs beyond cpu and memory, e.g. {"gpu": 1}: it '
        "runs only on a worker that offers them free (smartq worker --resource gpu=2).",
    )
    labels: LabelsIn | None = Field(
        default=None,
        description='Labels a worker must have, e.g. {"zone": "eu"} (smartq worker '
        "--label zone=eu).",
    )
    depends_on: list[uuid.UUID] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS, strict=True)
    run_at: AwareDatetime | None = None
    idempotency_key: Name | None = None
    created_by: Name | None = Field(
        default=None,
        description="Kept only when the API runs with auth off; with keys, a job's "
        "created_by is the id of the key that submitted it.",
    )


class BatchJobCreate(JobCreate):
    """A job inside a batch: ``key`` names it, ``depends_on`` may name keys or job ids."""

    key: Name | None = None
    depends_on: list[Name] = Field(default_factory=list)  # type: ignore[assignment]


class BatchCreate(_Strict):
    name: Name | None = None
    created_by: Name | None = None
    jobs: list[BatchJobCreate] = Field(min_length=1)
    callbacks: list[CallbackCreate] = Field(
        default_factory=list,
        max_length=MAX_CALLBACKS,
        description="URLs to POST the batch's events to (batch.started, batch.finished with "
        "its report, job.failed), signed with the tenant's callback secret.",
    )

    @field_validator("jobs")
    @classmethod
    def _unique_keys(cls, jobs: list[BatchJobCreate]) -> list[BatchJobCreate]:
        seen: set[str] = set()
        for job in jobs:
            if job.key is not None:
                if job.key in seen:
                    raise ValueError(f"duplicate key {job.key!r} in batch")
                seen.add(job.key)
        return jobs


class RetryOut(BaseModel):
    max_attempts: int
    initial_delay_seconds: float
    backoff_multiplier: float


class JobPublic(BaseModel):
    id: uuid.UUID
    key: str | None = None
    name: str
    type: str
    payload: dict[str, Any]
    priority: PriorityOut
    cpu_units: int
    memory_mb: int = Field(description="The memory it asked for.")
    resources: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    memory_escalated_mb: int | None = Field(
        default=None,
        description="What its attempts ask for instead, after a kill for memory raised it "
        "(null: never raised).",
    )
    memory_escalations: int = Field(
        default=0,
        description="How often a kill for memory raised it since it was (re)submitted; these "
        "retries are not counted in retry.max_attempts.",
    )
    depends_on: list[uuid.UUID] | None = None
    retry: RetryOut
    timeout_seconds: float | None
    run_at: datetime | None
    idempotency_key: str | None
    status: str
    status_reason: str | None
    attempts: int
    result: Any
    error: str | None
    batch_id: uuid.UUID | None
    worker_id: str | None
    tenant: str = Field(description="The tenant of the key that submitted it.")
    created_by: str | None = Field(description="The id of the key that submitted it.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    schedule_id: uuid.UUID | None = Field(
        default=None, description="The schedule whose tick submitted it (null: by hand)."
    )
    parent_id: uuid.UUID | None = Field(
        default=None,
        description="The job whose run submitted it (ctx.submit, ctx.batch, "
        "ctx.continue_with); null: submitted over the API or by a schedule.",
    )


class ProgressOut(BaseModel):
    """The latest ``ctx.progress`` of the job: how far (0-1), a note, of which attempt."""

    attempt: int
    fraction: float
    message: str | None
    updated_at: datetime


class JobDetail(JobPublic):
    dependents: list[uuid.UUID]
    waiting_reason: str | None = None
    progress: ProgressOut | None = None
    predicted_start_at: AwareDatetime | None = Field(
        default=None,
        description="A ready job among the next ones: when it is predicted to start, from "
        "learned run times (null: not predicted, e.g. further back in the queue or held).",
    )
    predicted_start_late_at: AwareDatetime | None = Field(
        default=None, description="The same with each type's 90th-percentile run time."
    )


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class BatchCreated(BaseModel):
    batch_id: uuid.UUID
    jobs: list[JobPublic]


class JobAccepted(BaseModel):
    """A job of a batch as ``Prefer: return=minimal`` answers it: what a client needs to find
    it again (``GET /jobs/{id}`` has the rest)."""

    id: uuid.UUID
    key: str | None
    status: str


class BatchAccepted(BaseModel):
    """A batch as ``Prefer: return=minimal`` answers it (RFC 7240), its jobs in submission
    order: a 10,000-job batch's full answer was a third of what the SDK spent on it."""

    batch_id: uuid.UUID
    jobs: list[JobAccepted]


class BatchFailure(BaseModel):
    """A failed job of a batch, in brief: what failed and why."""

    id: uuid.UUID
    key: str | None
    name: str
    type: str
    attempts: int
    error: str | None
    finished_at: datetime | None


class BatchSummary(BaseModel):
    """A batch in brief: its totals by status, whether all its jobs ended, start and end."""

    batch_id: uuid.UUID
    name: str | None
    created_at: datetime
    job_count: int
    totals: dict[str, int]
    done: bool
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


class BatchPage(BaseModel):
    items: list[BatchSummary]
    next_cursor: str | None


class BatchReport(BatchSummary):
    """A batch's totals (on every page), its failures (on the first) and a page of its jobs."""

    failures: list[BatchFailure] | None = Field(
        description="First page only (null on the others): its first `limit` failed jobs, "
        "oldest first; `totals.failed` counts them all."
    )
    jobs: list[JobPublic] = Field(description="This page of the jobs, in submission order.")
    next_cursor: str | None = Field(description="The cursor of the next page; null on the last.")
    predicted_finish_at: datetime | None = Field(
        default=None,
        description="While jobs are left: when the scheduler predicts the batch to finish, "
        "from the critical path of what is left, the queue before it and its work over the "
        "workers' capacity (an estimate; null when finished, or not predicted).",
    )
    predicted_finish_late_at: datetime | None = Field(
        default=None, description="The same at the 90th percentile of the run times drawn."
    )


class CancelResult(BaseModel):
    job: JobPublic
    cancelled: list[uuid.UUID] = Field(
        description="Jobs cancelled by this request, downstream included."
    )
    pending_worker_stop: bool = Field(
        description="True when a running job was asked to stop (202)."
    )


class AttemptOut(BaseModel):
    attempt: int
    worker_id: str | None
    cpu_units: int
    memory_mb: int = Field(description="The memory this attempt held (and was held to).")
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    outcome: str | None
    error: str | None
    result: Any
    failure_class: str | None = Field(
        default=None,
        description="How a failed attempt failed: timeout, memory, signal (killed by a signal "
        "its worker did not send) or error.",
    )
    peak_memory_mb: int | None = Field(
        default=None,
        description="The most memory its processes were seen to use (isolated jobs).",
    )


class LogLineOut(BaseModel):
    attempt: int
    seq: int
    ts: datetime
    level: str
    message: str


class LogsPage(BaseModel):
    job_id: uuid.UUID
    attempts: list[AttemptOut]
    lines: list[LogLineOut]
    next_after: str | None


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class ResubmitResult(BaseModel):
    job: JobPublic
    resubmitted: list[uuid.UUID] = Field(description="The job and the descendants run again.")
