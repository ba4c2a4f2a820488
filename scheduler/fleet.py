"""The workers in the core's state: what a heartbeat, a rebuild or a lost queue changes about
them (pure). The decisions about the attempts they held (lost, handed back) stay in
:class:`scheduler.core.Scheduler`, which calls these."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from models.enums import JobStatus
from scheduler import dag
from scheduler.resources import NO_OFFER, Offer
from scheduler.state import JobRecord, SchedulerState
from scheduler.values import Transition
from scheduler.workers import NO_CONTROL, Control, Hold, WorkerRecord


def heard(
    state: SchedulerState,
    worker_id: str,
    cpu_units: int,
    memory_mb: int,
    draining: bool,
    job_types: Iterable[str] | None,
    offer: Offer = NO_OFFER,
) -> WorkerRecord:
    """The worker is online with this capacity, these types and this offer; placement is told
    when that changes what could be placed."""
    worker = state.workers.get(worker_id)
    if worker is None:
        worker = state.worker(worker_id)
        worker.online = False
    types = frozenset(job_types) if job_types is not None else worker.types
    before = (
        worker.cpu_total,
        worker.mem_total,
        worker.accepting,
        worker.types,
        worker.res_total,
        worker.labels,
    )
    worker.declared_cpu, worker.declared_mem = cpu_units, memory_mb
    worker.self_draining, worker.online, worker.types = draining, True, types
    worker.res_total, worker.labels = offer.resources, offer.labels
    worker.settle()
    after = (
        worker.cpu_total,
        worker.mem_total,
        worker.accepting,
        types,
        offer.resources,
        offer.labels,
    )
    if before != after:
        state.capacity_changed = True
        state.dirty = True
    return worker


def remember(
    state: SchedulerState,
    worker_id: str,
    cpu_units: int,
    memory_mb: int,
    job_types: Iterable[str] | None,
    incarnation: str | None,
    offer: Offer = NO_OFFER,
) -> None:
    """A worker known from the database: offline until it heartbeats."""
    worker = state.worker(worker_id)
    worker.declared_cpu, worker.declared_mem = cpu_units, memory_mb
    worker.types = frozenset(job_types) if job_types is not None else None
    worker.res_total, worker.labels = offer.resources, offer.labels
    worker.incarnation = incarnation
    worker.online = False
    worker.settle()


def control(state: SchedulerState, controls: Mapping[str, Control]) -> None:
    """What admins set on workers, all of it (a worker not named has no control); placement
    is told when that changes what could be placed."""
    named = set(controls) | {w.id for w in state.workers.values() if w.control != NO_CONTROL}
    for worker_id in sorted(named):
        worker = state.worker(worker_id)  # one not heard yet starts with its control
        wanted = controls.get(worker_id, NO_CONTROL)
        if worker.control == wanted:
            continue
        worker.control = wanted
        worker.settle()
        state.capacity_changed = True
        state.dirty = True


def unreachable(state: SchedulerState, worker_id: str) -> WorkerRecord | None:
    """Place nothing more on the worker (until it heartbeats again)."""
    worker = state.workers.get(worker_id)
    if worker is not None and worker.online:
        worker.online = False
        state.capacity_changed = True
    return worker


def hold_lingering(
    state: SchedulerState,
    job_id: uuid.UUID,
    attempt: int,
    worker_id: str,
    cpu_units: int,
    memory_mb: int,
    resources: Mapping[str, int] | None = None,
) -> None:
    """An ended attempt whose code still runs holds this capacity."""
    key = (job_id, attempt)
    if key in state.holds:
        return
    worker = state.worker(worker_id)
    held = dict(resources) if resources else None
    state.holds[key] = Hold(worker_id, cpu_units, memory_mb, lingering=True, resources=held)
    worker.holds.add(key)
    worker.cpu_used += cpu_units
    worker.mem_used += memory_mb
    for name, n in (held or {}).items():
        worker.res_used[name] = worker.res_used.get(name, 0) + n


def give_back(state: SchedulerState, job: JobRecord, worker_id: str) -> Transition:
    """The job's current attempt reached no worker: ready again, its attempt number back."""
    attempt = job.attempts
    state.stopped_running(job)
    job.worker_id = None
    job.attempts -= 1
    dag.make_ready(state, job)
    return Transition(
        job.id,
        JobStatus.RUNNING,
        JobStatus.READY,
        attempt,
        reason=f"worker {worker_id} has no queue; the dispatch goes to another worker",
        worker_id=worker_id,
        to_attempts=attempt - 1,
    )
