"""The RabbitMQ topology of smartq, in one place: exchange, routing keys and queues.

Everything goes through one durable topic exchange (``smartq`` unless a test isolates itself
with another name). Routing keys name the kind of message first, then who it is for:

=================================  ================  =================================
routing key                        published by      consumed from
=================================  ================  =================================
``job.submitted``                  api               ``smartq.scheduler``
``job.cancel_requested``           api               ``smartq.scheduler``
``job.dispatch.<worker>.<job>``    scheduler         ``smartq.worker.<worker>``
``job.cancel.<worker>.<job>``      scheduler         ``smartq.worker.<worker>``
``job.report.<job>``               worker            ``smartq.scheduler``
``worker.heartbeat.<worker>``      worker            ``smartq.scheduler``
``job.status.<job>``               scheduler         the api stream queues
``job.logs.<job>``                 worker            ``smartq.logger``, api stream queues
``job.progress.<job>``             worker            ``smartq.logger``, api stream queues
``job.stored.<worker>.batch``      logger            ``smartq.worker.<worker>``
``job.monitoring.queue``           scheduler         the api stream queues
``job.monitoring.resource``        scheduler         the api stream queues
``job.monitoring.breaker``         scheduler         the api stream queues
``job.monitoring.pause``           scheduler         the api stream queues
``job.monitoring.logger``          logger            the api stream queues
=================================  ================  =================================

Workers report attempts (:class:`~models.messages.AttemptStarted`, ``AttemptFinished``,
``ResourcesReleased``) on ``job.report.<job>`` rather than ``job.status.<job>``: a worker's
report is a claim the scheduler may still reject (a stale attempt is fenced off), so
``job.status.#`` carries only the scheduler's authoritative ``JobStatusEvent`` and the
WebSocket never shows a status the database does not hold.

Dispatches are published ``mandatory``: a per-worker queue is durable, so it keeps dispatches
while its worker restarts, and a dispatch with no queue to land in (the worker was removed)
comes back as :class:`~smartq.broker.Unroutable` instead of vanishing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

EXCHANGE = "smartq"

SCHEDULER_QUEUE = "smartq.scheduler"
LOGGER_QUEUE = "smartq.logger"
WORKER_QUEUE_PREFIX = "smartq.worker."
STREAM_QUEUE_PREFIX = "smartq.stream."

JOB_SUBMITTED = "job.submitted"
JOB_CANCEL_REQUESTED = "job.cancel_requested"
#: Routing keys of batch envelopes (models.messages.pack): they match the same bindings as the
#: per-job keys of their kind.
STATUS_BATCH = "job.status.batch"
LOGS_BATCH = "job.logs.batch"
REPORT_BATCH = "job.report.batch"
PROGRESS_BATCH = "job.progress.batch"
#: The scheduler's probe of its own inbox: it proves the broker path from workers is open.
SCHEDULER_PROBE = "scheduler.probe"
MONITORING_QUEUE = "job.monitoring.queue"
MONITORING_RESOURCE = "job.monitoring.resource"
MONITORING_BREAKER = "job.monitoring.breaker"
MONITORING_PAUSE = "job.monitoring.pause"
MONITORING_LOGGER = "job.monitoring.logger"

#: A stream queue drops its oldest events beyond this many, so a slow WebSocket fan-out can
#: never make RabbitMQ hold an unbounded backlog for one API process.
STREAM_MAX_LENGTH = 100_000

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True)
class QueueSpec:
    """A queue and the binding keys that route messages of the exchange into it."""

    name: str
    bindings: tuple[str, ...]
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict, hash=False)


def worker_key(worker_id: str) -> str:
    """``worker_id`` as one routing-key word: any character outside ``[A-Za-z0-9_-]`` (dots,
    ``*``, ``#``, spaces...) becomes ``_``. Idempotent, so callers may apply it twice."""
    if not worker_id:
        raise ValueError("worker id must not be empty")
    return _UNSAFE.sub("_", worker_id)


def dispatch_key(worker_id: str, job_id: uuid.UUID | str) -> str:
    return f"job.dispatch.{worker_key(worker_id)}.{job_id}"


def dispatch_batch_key(worker_id: str) -> str:
    """A batch of one pass's dispatches for one worker: it reaches that worker only."""
    return f"job.dispatch.{worker_key(worker_id)}.batch"


def cancel_key(worker_id: str, job_id: uuid.UUID | str) -> str:
    return f"job.cancel.{worker_key(worker_id)}.{job_id}"


def stored_key(worker_id: str) -> str:
    """Where the logger confirms to one worker that its attempts' lines are stored."""
    return f"job.stored.{worker_key(worker_id)}.batch"


def report_key(job_id: uuid.UUID | str) -> str:
    """Where a worker reports an attempt started, finished or released its resources."""
    return f"job.report.{job_id}"


def status_key(job_id: uuid.UUID | str) -> str:
    """Where the scheduler announces a job's new status (authoritative)."""
    return f"job.status.{job_id}"


def logs_key(job_id: uuid.UUID | str) -> str:
    return f"job.logs.{job_id}"


def progress_key(job_id: uuid.UUID | str) -> str:
    return f"job.progress.{job_id}"


def heartbeat_key(worker_id: str) -> str:
    return f"worker.heartbeat.{worker_key(worker_id)}"


def _named(exchange: str, default: str) -> str:
    """Queue names live under the exchange's name, so an isolated exchange (a test, a second
    deployment on one vhost) gets queues of its own: ``smartq.scheduler``, ``t1.scheduler``."""
    return default if exchange == EXCHANGE else exchange + default[len(EXCHANGE) :]


def scheduler_queue(exchange: str = EXCHANGE) -> QueueSpec:
    """The scheduler's inbox: hints from the api, reports and heartbeats from workers."""
    return QueueSpec(
        name=_named(exchange, SCHEDULER_QUEUE),
        bindings=(
            "job.report.#",
            "worker.heartbeat.#",
            JOB_SUBMITTED,
            JOB_CANCEL_REQUESTED,
            SCHEDULER_PROBE,
        ),
    )


def logger_queue(exchange: str = EXCHANGE) -> QueueSpec:
    """Every log line, stored in batches by the logger (acked after commit), and progress."""
    return QueueSpec(name=_named(exchange, LOGGER_QUEUE), bindings=("job.logs.#", "job.progress.#"))


def worker_queue(
    worker_id: str, exchange: str = EXCHANGE, expires_seconds: float = 0.0
) -> QueueSpec:
    """One worker's dispatches, cancels and the logger's confirmations. Durable and named
    after the worker so that what was sent while it restarted waits for it; prefetch it with
    the worker's job slots.

    With ``expires_seconds`` > 0, RabbitMQ deletes the queue once it has had no consumer for
    that long (``x-expires``): by then the worker's lease has long expired and everything in
    the queue has run elsewhere, and a worker that comes back declares a fresh one."""
    key = worker_key(worker_id)
    arguments = {"x-expires": int(expires_seconds * 1000)} if expires_seconds > 0 else {}
    return QueueSpec(
        name=_named(exchange, WORKER_QUEUE_PREFIX) + key,
        bindings=(f"job.dispatch.{key}.#", f"job.cancel.{key}.#", f"job.stored.{key}.#"),
        arguments=arguments,
    )


def stream_queue(process_id: str | None = None, exchange: str = EXCHANGE) -> QueueSpec:
    """One API process's live feed for WebSocket clients: statuses, logs, monitoring.

    Exclusive and auto-deleted: it lives as long as the process's connection and never keeps
    events nobody will read. Bounded (oldest dropped first) by :data:`STREAM_MAX_LENGTH`.
    """
    suffix = worker_key(process_id) if process_id else uuid.uuid4().hex
    return QueueSpec(
        name=_named(exchange, STREAM_QUEUE_PREFIX) + suffix,
        bindings=("job.status.#", "job.logs.#", "job.progress.#", "job.monitoring.#"),
        durable=False,
        exclusive=True,
        auto_delete=True,
        arguments={"x-max-length": STREAM_MAX_LENGTH},
    )


def batched(routing_key: str, messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Messages of one kind as one batch envelope on ``routing_key`` (two or more), else as
    they are."""
    if len(messages) < 2:
        return messages
    from models.messages import pack

    return [(routing_key, pack([body for _, body in messages]))]
