"""Typed schemas of every message on the broker (and, for events, on the WebSocket).

Each body is a small JSON document with a ``type`` tag and a schema version ``v``; every dispatch
and every report carries ``(job_id, attempt)`` so a stale attempt can be fenced off.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from models import storable
from models.enums import MAX_PRIORITY, MIN_PRIORITY, FailureClass, JobStatus, Outcome
from models.envelope import Message
from models.limits import (
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_CPU_UNITS,
    MAX_DELAY_SECONDS,
    MAX_MEMORY_MB,
    MAX_NAME_LENGTH,
    MAX_TIMEOUT_SECONDS,
)
from models.monitoring import (
    BreakerChanged,
    LoggerMonitor,
    PauseChanged,
    QueueMonitor,
    ResourceMonitor,
)

#: Fields that carry what user code produced (see models.storable).
StorableJson = Annotated[Any, AfterValidator(storable.json_value)]
StorableText = Annotated[str, AfterValidator(storable.text)]
OptionalStorableText = Annotated[str | None, AfterValidator(storable.optional_text)]


class SchedulerProbe(Message):
    """scheduler → itself, through the broker: while probes come back, workers' silence means
    something; while they do not, no lease may expire."""

    type: Literal["scheduler.probe"] = "scheduler.probe"
    sent: float


class JobsSubmitted(Message):
    """api → scheduler: new jobs are in the database (a hint; the scheduler also polls)."""

    type: Literal["job.submitted"] = "job.submitted"
    job_ids: list[uuid.UUID]


class CancelRequested(Message):
    """api → scheduler: the user asked to cancel a running job."""

    type: Literal["job.cancel_requested"] = "job.cancel_requested"
    job_id: uuid.UUID


class Dispatch(Message):
    """scheduler → one worker: run this attempt of this job."""

    type: Literal["job.dispatch"] = "job.dispatch"
    job_id: uuid.UUID
    attempt: int
    worker_id: str
    job_type: str
    name: str
    payload: dict[str, Any]
    cpu_units: int
    memory_mb: int
    timeout_seconds: float | None = None
    dispatched_at: datetime
    #: The job's tenant, which the worker puts on its log lines (for the stream's filters).
    tenant: str | None = None
    #: The start of the worker process this attempt is meant for (see :func:`incarnation`):
    #: a worker restarted under the same id drops the dispatches of its earlier life. ``None``
    #: from a scheduler that does not know it yet.
    incarnation: str | None = None


def incarnation(started_at: datetime) -> str:
    """One start of a worker process, named by its ``started_at`` (UTC, to the microsecond)."""
    return started_at.astimezone(UTC).isoformat(timespec="microseconds")


class CancelJob(Message):
    """scheduler → the worker running it: stop this attempt."""

    type: Literal["job.cancel"] = "job.cancel"
    job_id: uuid.UUID
    attempt: int
    reason: str = "cancelled by user"


class AttemptStarted(Message):
    """worker → scheduler: the attempt began executing."""

    type: Literal["attempt.started"] = "attempt.started"
    job_id: uuid.UUID
    attempt: int
    worker_id: str
    ts: datetime


class AttemptFinished(Message):
    """worker → scheduler: how the attempt ended. ``retry_after`` is set when the job asked to be
    retried after a given delay. ``released`` is false while a timed-out thread still runs."""

    type: Literal["attempt.finished"] = "attempt.finished"
    job_id: uuid.UUID
    attempt: int
    worker_id: str
    outcome: Outcome
    started_at: datetime
    finished_at: datetime
    result: StorableJson = None
    error: OptionalStorableText = None
    retry_after: float | None = None
    released: bool = True
    #: The seq of the attempt's last log line when it ended (its end line). The worker sends
    #: this report only once the logger confirmed lines 1..log_seq stored (:class:`LogsStored`),
    #: or after ``worker_log_wait_seconds`` without a confirmation.
    log_seq: int = 0
    #: How a failed attempt failed (None: it did not fail, or an older worker sent it), and
    #: the most memory its process was seen to use, in MB (isolated jobs).
    failure_class: FailureClass | None = None
    peak_memory_mb: int | None = None


class SpawnedJob(BaseModel):
    """One job a running job asked for (``ctx.submit``, ``ctx.batch``, ``ctx.continue_with``),
    with every default already applied by the worker (the job type's, then smartq's): the
    scheduler inserts it as it is. ``id`` is derived from the parent and ``key``, so a retried
    parent that asks again names the same job. ``depends_on``: earlier jobs of the same
    parent."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    key: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
    job_type: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
    payload: dict[str, StorableJson] = Field(default_factory=dict)
    priority: int = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    cpu_units: int = Field(ge=1, le=MAX_CPU_UNITS)
    memory_mb: int = Field(ge=1, le=MAX_MEMORY_MB)
    max_attempts: int = Field(ge=1, le=MAX_ATTEMPTS)
    initial_delay_seconds: float = Field(ge=0, le=MAX_DELAY_SECONDS)
    backoff_multiplier: float = Field(ge=1, le=MAX_BACKOFF)
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS)
    run_at: datetime | None = None
    resources: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    depends_on: list[uuid.UUID] = Field(default_factory=list)


class JobsSpawned(Message):
    """worker → scheduler: jobs that an attempt submitted, to insert under its job as parent
    (same tenant, same batch). Sent on the attempt's report key ahead of its final report, so
    the scheduler sees them while the attempt still runs; jobs of an attempt that no longer
    runs are dropped."""

    type: Literal["jobs.spawned"] = "jobs.spawned"
    parent_id: uuid.UUID
    attempt: int
    worker_id: str
    jobs: list[SpawnedJob] = Field(min_length=1)


class ResourcesReleased(Message):
    """worker → scheduler: a timed-out plain-function thread finally returned."""

    type: Literal["attempt.released"] = "attempt.released"
    job_id: uuid.UUID
    attempt: int
    worker_id: str
    ts: datetime


class RunningAttempt(BaseModel):
    model_config = ConfigDict(frozen=True)
    job_id: uuid.UUID
    attempt: int
    cpu_units: int
    memory_mb: int


class TypeFlow(BaseModel):
    """A job type's flow control as its ``@smartq.job`` declares it (in heartbeats: the
    scheduler has no user code)."""

    model_config = ConfigDict(frozen=True)

    rate_limit: str | None = None
    max_running: int | None = None
    breaker_enabled: bool = True
    #: The breaker policy's fields (None: the settings').
    breaker: dict[str, float] | None = None


class Heartbeat(Message):
    """worker → scheduler: I am alive, this is my capacity and what I run."""

    type: Literal["worker.heartbeat"] = "worker.heartbeat"
    worker_id: str
    hostname: str
    cpu_units: int
    memory_mb: int
    job_types: list[str]
    running: list[RunningAttempt]
    draining: bool = False
    stopped: bool = False
    started_at: datetime
    ts: datetime
    cpu_percent: float | None = None
    rss_mb: float | None = None
    #: The types of ``job_types`` that declare limits or a breaker policy.
    type_flow: dict[str, TypeFlow] = {}
    #: Named resources it offers beyond cpu and memory (``--resource gpu=2``), and its labels.
    resources: dict[str, int] = {}
    labels: dict[str, str] = {}


class JobStatusEvent(Message):
    """scheduler → everyone (WebSocket): a job changed status."""

    type: Literal["job.status"] = "job.status"
    job_id: uuid.UUID
    status: JobStatus
    attempt: int
    ts: datetime
    batch_id: uuid.UUID | None = None
    worker_id: str | None = None
    reason: str | None = None
    error: str | None = None
    #: The job's type (for metrics by type).
    job_type: str | None = None
    #: The job's tenant: a stream client of another tenant never sees the event. ``None``
    #: (from an older sender) reaches only admin streams.
    tenant: str | None = None
    #: On the first ``running`` event: seconds from submission to this start.
    queued_seconds: float | None = None
    #: On an event leaving ``running`` after a worker's report: how long the attempt ran.
    run_seconds: float | None = None
    #: True when the API sent it from the database to a WebSocket client that just subscribed.
    snapshot: bool = False


class LogLine(Message):
    """worker → logger and WebSocket: one line a job logged."""

    type: Literal["job.log"] = "job.log"
    job_id: uuid.UUID
    attempt: int
    seq: int
    level: StorableText
    message: StorableText
    ts: datetime
    #: The job's tenant, as for :class:`JobStatusEvent`.
    tenant: str | None = None
    #: On an attempt's last line (the one that says how it ended): the worker waiting for the
    #: logger to confirm the attempt's lines are stored, before it reports the attempt.
    reply_to: str | None = None


class JobProgress(Message):
    """worker → WebSocket and logger: how far a running attempt says it is
    (``ctx.progress(0.4, "resized 40 of 100")``). The logger keeps the latest per job for
    ``GET /jobs/{id}``."""

    type: Literal["job.progress"] = "job.progress"
    job_id: uuid.UUID
    attempt: int
    fraction: float = Field(ge=0, le=1)
    message: OptionalStorableText = None
    ts: datetime
    tenant: str | None = None


class StoredUpTo(BaseModel):
    model_config = ConfigDict(frozen=True)
    job_id: uuid.UUID
    attempt: int
    seq: int


class LogsStored(Message):
    """logger → one worker: every line of these attempts, up to ``seq``, is committed. The
    worker holds an attempt's report until then, so an attempt's end is never visible (on the
    stream or in the database) before its logs are."""

    type: Literal["job.logs_stored"] = "job.logs_stored"
    attempts: list[StoredUpTo]


#: Messages the scheduler consumes, decoded by their ``type`` tag.
SchedulerInbound = Annotated[
    JobsSubmitted
    | CancelRequested
    | AttemptStarted
    | AttemptFinished
    | ResourcesReleased
    | JobsSpawned
    | Heartbeat
    | SchedulerProbe,
    Field(discriminator="type"),
]
#: Messages a worker consumes.
WorkerInbound = Annotated[Dispatch | CancelJob | LogsStored, Field(discriminator="type")]

#: Events on the API's stream queue (``job.status.#``, ``job.logs.#``, ``job.monitoring.#``).
StreamEvent = Annotated[
    JobStatusEvent
    | LogLine
    | JobProgress
    | QueueMonitor
    | ResourceMonitor
    | LoggerMonitor
    | BreakerChanged
    | PauseChanged,
    Field(discriminator="type"),
]
#: What the logger consumes: log lines, and progress to keep the latest of.
LoggerInbound = Annotated[LogLine | JobProgress, Field(discriminator="type")]

scheduler_inbound: TypeAdapter[SchedulerInbound] = TypeAdapter(SchedulerInbound)
worker_inbound: TypeAdapter[WorkerInbound] = TypeAdapter(WorkerInbound)
stream_event: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
logger_inbound: TypeAdapter[LoggerInbound] = TypeAdapter(LoggerInbound)


BATCH_TYPE = "batch"
_BATCH_HEAD = b'{"v":1,"type":"batch","items":['


def pack(bodies: list[bytes]) -> bytes:
    """Many messages of one kind as one broker message: ``{"type": "batch", "items": [...]}``.

    Published on a routing key of its kind (``job.status.batch``, ``job.logs.batch``,
    ``job.report.batch``), so bindings stay as they are; the broker's per-message cost (frames,
    confirms, acks, consumer wake-ups) is paid once per pass or flush instead of once per event.
    The items are already JSON, so packing is a concatenation.
    """
    return _BATCH_HEAD + b",".join(bodies) + b"]}"


def unpack(body: bytes) -> list[Any]:
    """The messages in a body: its items if it is a batch, else the body itself (decoded)."""
    doc = orjson.loads(body)
    if isinstance(doc, dict) and doc.get("type") == BATCH_TYPE:
        items = doc.get("items")
        return items if isinstance(items, list) else []
    return [doc]
