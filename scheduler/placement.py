"""Placement: which ready jobs start now, and on which worker.

Order: priority (higher first), then age (``created_at``, then arrival), like the ready heap.

**Fit rule — best fit** (:mod:`scheduler.pool`): among the workers where the job fits now, the
one left with the least room afterwards.

**Reservation — no starvation.** A ready job that fits some accepting worker's *total* capacity
but not any worker's free room is passed over, and smaller jobs behind it backfill. Once it has
been *overtaken* (a job behind it in the order started while it could not) for ``reserve_after``
seconds it reserves one worker: the one where it would fit
soonest (least missing room, same normalisation; ties: most capacity in use, i.e. most work that
will finish). Nothing else starts on a reserved worker until the job is placed (on it or anywhere
else); other workers keep backfilling. Several starving jobs reserve in queue order, at most one
per worker. Why a delay and not at once: with no job durations known, an immediate reservation
degenerates into head-of-line blocking, which on one worker wastes ~20 % of capacity; a short
delay keeps packing tight and still bounds the wait of a big job to ``reserve_after`` plus the
time its reserved worker takes to drain. ``reserve_after=0`` gives immediate reservations.
The clock starts at the first overtaking, not when the job was first examined: a job that
merely waits its turn behind older ones is not starving. (Counting from the first look made
every job of a large batch "starving" ``reserve_after`` seconds after the batch arrived, and the
packing benchmark lost ~3 % to reservations that protected nobody.)

**Never fits.** A job that no accepting worker could hold even when empty is *parked*: it stays
``ready``, leaves the heap (so it blocks and costs nothing) and is re-examined when worker
capacity changes.

**Job types.** A worker runs only the types it registered (its heartbeat lists them). When every
accepting worker offers a job's type (the usual case) the index above serves it; otherwise
best fit walks the open workers that offer it (O(workers) per such job), and a job whose type
no accepting worker offers is parked like one that never fits, until the workers change.

**Bounded pass.** A pass stops when no unreserved accepting worker has a free cpu unit and a free
megabyte (the smallest job possible), or after ``lookahead`` jobs (default 256) that could not be
placed — so with every worker full a pass touches nothing, and otherwise it costs
O((placed + lookahead) * log n + placed * workers). ``plan`` also returns at once when nothing
happened since the last pass that could let a job start (no capacity freed, no job became ready,
no worker changed).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.enums import JobStatus
from scheduler import backfill
from scheduler.fairshare import ReadyEntry
from scheduler.pool import Pool
from scheduler.state import JobRecord, SchedulerState
from scheduler.values import Placement
from scheduler.workers import WorkerRecord


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    lookahead: int = 256
    reserve_after: float = 10.0
    #: EASY backfilling (:mod:`scheduler.backfill`): the first job of a pass that does not fit
    #: reserves at once, and its worker takes only work predicted not to delay it.
    backfill: bool = True


def plan(state: SchedulerState, now: float, config: PlacementConfig) -> list[Placement]:
    """Decide which ready jobs start now and where; the state records them as running."""
    released = state.flow.release(now, lambda entry: state.live_ready(entry) is not None)
    for entry in released:
        state.push_back(entry)
    if released:
        state.dirty = True
    if not state.dirty and not state.capacity_changed:
        return []
    _drop_stale_reservations(state)
    pool = Pool(state)
    out: list[Placement] = []
    if pool.accepting:
        state.ready.set_capacity(
            sum(w.cpu_total for w in pool.accepting), sum(w.mem_total for w in pool.accepting)
        )
        if state.capacity_changed:
            _unpark(state, pool)
            state.capacity_changed = False
        state.compact()
        _place_reserved(state, pool, now, out)
        if config.backfill:
            _promise_all(state, pool, now, config)
        _scan(state, pool, now, config, out)
    state.dirty = False
    return out


def _drop_stale_reservations(state: SchedulerState) -> None:
    """Reservations whose job left, no longer fits, or whose tenant fair share does not serve
    next: a reservation blocks the worker for everyone else, so it is kept only for the
    tenant that would get the capacity anyway (else a tenant arriving beside old reserved
    jobs got a fifth of its share)."""
    first = state.ready.first_tenant()
    for worker in state.workers.values():
        job_id = worker.reserved_for
        if job_id is None:
            continue
        job = state.jobs.get(job_id)
        if job is None or job.status is not JobStatus.READY or job.reserved_on != worker.id:
            worker.reserved_for = None
        elif (first is not None and job.tenant != first) or (
            not worker.accepting or not worker.could_hold(job)
        ):
            state.unreserve(job)


def _unpark(state: SchedulerState, pool: Pool) -> None:
    for job in list(state.parked.values()):
        if pool.fits_total(job):
            del state.parked[job.id]
            state.push_ready(job)


def _place_reserved(state: SchedulerState, pool: Pool, now: float, out: list[Placement]) -> None:
    """Start each job whose reserved worker has room for it now (a limit that holds it gives
    the worker back: its entry in the ready queue then meets the limit)."""
    for worker in pool.accepting:
        job = state.jobs.get(worker.reserved_for) if worker.reserved_for else None
        if job is None:
            continue
        if state.flow.blocked(job.type, job.tenant, now, job.batch_id) is not None:
            state.unreserve(job)
            pool.reopen(worker)
        elif worker.fits_now(job):
            _start(state, job, worker, now, out)
            pool.reopen(worker)


def _promise_all(state: SchedulerState, pool: Pool, now: float, config: PlacementConfig) -> None:
    """Each reservation's shadow, so its worker can take backfill that does not delay it."""
    for worker in pool.accepting:
        job = state.jobs.get(worker.reserved_for) if worker.reserved_for else None
        if job is not None:
            _promise(state, pool, worker, job, now, config)


def _promise(
    state: SchedulerState,
    pool: Pool,
    worker: WorkerRecord,
    job: JobRecord,
    now: float,
    config: PlacementConfig,
) -> None:
    shadow = backfill.promise(state, worker, job, now, config.reserve_after)
    if shadow is not None:
        pool.shadows[worker.id] = shadow


def _place_now(
    state: SchedulerState, pool: Pool, job: JobRecord, now: float, out: list[Placement]
) -> bool:
    """Start ``job`` where it fits best now, or on a reserved worker it does not delay."""
    worker = pool.best_fit(job)
    if worker is not None:
        _start(state, job, worker, now, out)
        pool.taken(worker, job)
        return True
    for shadow in pool.shadows.values():
        if shadow.job is not job and backfill.admits(state, shadow, job, now):
            _start(state, job, shadow.worker, now, out)  # a reserved worker: not in the index
            return True
    return False


def _scan(
    state: SchedulerState,
    pool: Pool,
    now: float,
    config: PlacementConfig,
    out: list[Placement],
) -> None:
    """Walk the ready heap in order, placing what fits, within the look-ahead bound."""
    passed_over: list[ReadyEntry] = []
    #: Passed over in this pass and not yet overtaken by a job behind them.
    overtaken_now: list[JobRecord] = []
    flow = state.flow
    #: The tenant fair share served first in this pass: only its jobs may reserve a worker
    #: (a reservation blocks other work, so it goes where fair share would send capacity).
    first_tenant: str | None = None
    #: The first job of the pass that did not fit: with backfill it reserves at once.
    head_seen = False
    while state.ready and len(passed_over) < config.lookahead and pool.has_room():
        entry = state.ready.pop()
        if entry is None:
            break
        job = state.live_ready(entry)
        if job is None:
            continue
        gate = flow.blocked(job.type, job.tenant, now, job.batch_id)
        if gate is not None:
            flow.hold(gate, entry)  # stays ready, out of the queue until the gate has room
            continue
        if first_tenant is None:
            first_tenant = job.tenant
        if not pool.fits_total(job):
            _park(state, job)
            continue
        if _place_now(state, pool, job, now, out):
            for ahead in overtaken_now:
                if ahead.overtaken_since is None:
                    ahead.overtaken_since = now
            overtaken_now.clear()
            continue
        passed_over.append(entry)
        overtaken_now.append(job)
        if job.tenant == first_tenant:
            _maybe_reserve(state, pool, job, now, config, head=not head_seen)
        head_seen = True
    for entry in passed_over:
        state.push_back(entry)


def _park(state: SchedulerState, job: JobRecord) -> None:
    state.unreserve(job)
    job.parked = True
    job.overtaken_since = None
    state.parked[job.id] = job


def _maybe_reserve(
    state: SchedulerState,
    pool: Pool,
    job: JobRecord,
    now: float,
    config: PlacementConfig,
    *,
    head: bool,
) -> None:
    if job.reserved_on is not None:
        return
    if (
        not (config.backfill and head)
        and config.reserve_after > 0
        and (job.overtaken_since is None or now - job.overtaken_since < config.reserve_after)
    ):
        return  # (reserve_after=0: first come, first served; reserve at the first pass-over)
    worker = pool.soonest(state, job, now, config.backfill)
    if worker is not None:
        worker.reserved_for = job.id
        job.reserved_on = worker.id
        pool.close(worker)
        if config.backfill:
            _promise(state, pool, worker, job, now, config)


def _start(
    state: SchedulerState, job: JobRecord, worker: WorkerRecord, now: float, out: list[Placement]
) -> None:
    state.unreserve(job)
    job.attempts += 1
    job.status = JobStatus.RUNNING
    job.worker_id = worker.id
    job.overtaken_since = None
    if job.ready_at is not None:
        state.waits.append(now - job.ready_at)
    state.hold(job, worker.id, job.attempts)
    state.started_running(job, now)
    out.append(Placement(job.id, worker.id, job.attempts, job.cpu, job.mem))
