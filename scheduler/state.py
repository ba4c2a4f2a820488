"""The scheduler's in-memory state: active jobs, dependency adjacency, heaps, workers, holds.

Only *active* jobs live here; a job that ends is dropped at once, so nothing grows with history.
Heaps use lazy deletion: an entry carries the job's ``ticket`` at push time and is ignored if the
job has since moved (every push takes a new ticket), so removing a job is O(1).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from models.enums import JobStatus
from scheduler.durations import Durations, predicted_end
from scheduler.fairshare import ReadyEntry, ReadyQueue
from scheduler.flow import Flow
from scheduler.retry import RetryPolicy
from scheduler.values import JobSpec, Lingering
from scheduler.workers import NONE, NONE_LABELS, Hold, HoldKey, WorkerRecord

#: Statuses of a job that waits (no worker holds it).
WAITING = frozenset({JobStatus.PENDING, JobStatus.BLOCKED, JobStatus.READY, JobStatus.RETRYING})

#: Waits from ready to running kept (:attr:`SchedulerState.waits`).
WAITS_KEPT = 200

#: (due, ticket, job_id)
TimerEntry = tuple[float, int, uuid.UUID]


#: Rebuild a heap once it holds this many more entries than could be valid.
_COMPACT_SLACK = 4096


@dataclass(slots=True, eq=False)
class JobRecord:
    """One active job. Mutable; owned by :class:`SchedulerState`."""

    id: uuid.UUID
    name: str
    type: str
    priority: int
    cpu: int
    mem: int
    max_attempts: int
    initial_delay: float
    multiplier: float
    run_at: float | None
    created_at: float
    seq: int
    status: JobStatus
    tenant: str = "default"
    batch_id: uuid.UUID | None = None
    attempts: int = 0
    attempts_base: int = 0
    not_before: float | None = None
    worker_id: str | None = None
    remaining: int = 0
    ticket: int = 0
    overtaken_since: float | None = None
    cancel_requested: bool = False
    reserved_on: str | None = None
    parked: bool = False
    timeout: float | None = None
    #: The running attempt's start and its predicted run time then (:mod:`scheduler.durations`).
    started_at: float | None = None
    predicted: float = 0.0
    #: Upward rank: the predicted run time from this job's start to the end of its DAG
    #: (:mod:`scheduler.rank`); the ready queue takes it off the job's age.
    rank: float = 0.0
    #: An EASY reservation's first promised start: past it by ``reserve_after``, the worker
    #: takes no more backfill (bad predictions must not starve the job).
    shadow_first: float | None = None
    #: When its last parent's end made it ready (its wait for a worker is then learned).
    ready_at: float | None = None
    #: Named resources (``{"gpu": 1}``) and labels (``{"zone": "eu"}``) it asks for.
    resources: Mapping[str, int] = NONE
    labels: Mapping[str, str] = NONE_LABELS
    #: How often a kill for memory raised ``mem`` (:mod:`scheduler.escalation`).
    memory_escalations: int = 0

    @classmethod
    def from_spec(cls, spec: JobSpec, seq: int) -> JobRecord:
        return cls(
            id=spec.id,
            name=spec.name,
            type=spec.type,
            priority=spec.priority,
            cpu=spec.cpu_units,
            mem=spec.memory_mb,
            max_attempts=spec.max_attempts,
            initial_delay=spec.initial_delay_seconds,
            multiplier=spec.backoff_multiplier,
            run_at=spec.run_at,
            created_at=spec.created_at,
            seq=seq,
            status=spec.status,
            tenant=spec.tenant,
            batch_id=spec.batch_id,
            attempts=spec.attempts,
            attempts_base=spec.attempts_base,
            not_before=spec.not_before,
            worker_id=spec.worker_id,
            timeout=spec.timeout_seconds,
            started_at=spec.started_at,
            resources=dict(spec.resources) if spec.resources else NONE,
            labels=dict(spec.labels) if spec.labels else NONE_LABELS,
            memory_escalations=spec.memory_escalations,
        )

    def policy(self, jitter: float, max_delay: float | None) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, self.initial_delay, self.multiplier, jitter, max_delay
        )

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})"


class SchedulerState:
    """Containers and the low-level moves on them; policy lives in the modules that use it."""

    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, JobRecord] = {}
        #: parent id → ids of jobs waiting on it (the parent may not be known yet).
        self.dependents: dict[uuid.UUID, list[uuid.UUID]] = {}
        #: Ready jobs by priority, then fair share between tenants (:mod:`scheduler.fairshare`).
        self.ready = ReadyQueue()
        self.timers: list[TimerEntry] = []
        #: Breakers and limits, and the ready jobs they hold (:mod:`scheduler.flow`).
        self.flow = Flow()
        #: Learned run times (:mod:`scheduler.durations`).
        self.durations = Durations()
        #: The last waits from ready to running of jobs their parents' ends made ready (a
        #: batch's predicted finish draws from them for the jobs not ready yet:
        #: :mod:`scheduler.batchfinish`).
        self.waits: deque[float] = deque(maxlen=WAITS_KEPT)
        #: Order a priority's jobs by upward rank off their age (:mod:`scheduler.rank`).
        self.rank_by_path = True
        self.workers: dict[str, WorkerRecord] = {}
        self.holds: dict[HoldKey, Hold] = {}
        #: Ready jobs no accepting worker could ever fit; re-examined when capacity changes.
        self.parked: dict[uuid.UUID, JobRecord] = {}
        #: Something happened that could let ``plan`` place a job.
        self.dirty = True
        #: Worker capacity or acceptance changed since parked jobs were last checked.
        self.capacity_changed = False
        #: Lingering holds freed since the shell last took them (it records their release).
        self.freed_lingering: list[HoldKey] = []
        self._seq = itertools.count()
        self._ticket = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq)

    # -- heaps ------------------------------------------------------------------------------
    def push_ready(self, job: JobRecord) -> None:
        """Put ``job`` (status READY) in the ready heap."""
        job.ticket = next(self._ticket)
        job.parked = False
        self.ready.push(
            (-job.priority, job.created_at - job.rank, job.seq, job.ticket, job.id), job.tenant
        )
        self.dirty = True

    def push_back(self, entry: ReadyEntry) -> None:
        """Put an entry taken from the ready queue back (a job passed over, or released by a
        limit: the caller says whether that is news for the next pass)."""
        job = self.live_ready(entry)
        if job is not None:
            self.ready.push(entry, job.tenant)

    def push_timer(self, job: JobRecord, due: float) -> None:
        job.ticket = next(self._ticket)
        heapq.heappush(self.timers, (due, job.ticket, job.id))

    def live_ready(self, entry: ReadyEntry) -> JobRecord | None:
        """The job behind a ready-heap entry, or ``None`` if the entry is stale."""
        job = self.jobs.get(entry[4])
        if job is None or job.ticket != entry[3] or job.status is not JobStatus.READY:
            return None
        return job

    def live_timer(self, entry: TimerEntry) -> JobRecord | None:
        job = self.jobs.get(entry[2])
        if job is None or job.ticket != entry[1]:
            return None
        return job

    def next_timer(self) -> float | None:
        """When the earliest live timer is due (stale heads are dropped on the way)."""
        while self.timers and self.live_timer(self.timers[0]) is None:
            heapq.heappop(self.timers)
        return self.timers[0][0] if self.timers else None

    def compact(self) -> None:
        """Drop stale entries once they outnumber what could be live (amortised O(1))."""
        limit = len(self.jobs) + _COMPACT_SLACK
        if len(self.ready) > 2 * limit:
            self.ready.compact(lambda e: self.live_ready(e) is not None)
        if len(self.timers) > 2 * limit:
            self.timers = [e for e in self.timers if self.live_timer(e) is not None]
            heapq.heapify(self.timers)

    # -- jobs -------------------------------------------------------------------------------
    def drop(self, job: JobRecord) -> None:
        """Forget a job that ended (its heap entries go stale by themselves)."""
        self.jobs.pop(job.id, None)
        self.parked.pop(job.id, None)
        self.unreserve(job)
        job.ticket = 0

    def unreserve(self, job: JobRecord) -> None:
        job.shadow_first = None
        if job.reserved_on is not None:
            worker = self.workers.get(job.reserved_on)
            if worker is not None and worker.reserved_for == job.id:
                worker.reserved_for = None
            job.reserved_on = None
            self.dirty = True

    # -- running jobs: what limits and fair share count ---------------------------------
    def started_running(self, job: JobRecord, now: float) -> None:
        job.started_at = now
        job.predicted = self.predict(job)
        self.flow.started(job.id, job.type, job.tenant, now)
        self.ready.running(job.tenant, job.cpu, job.mem)

    def was_running(self, job: JobRecord, now: float) -> None:
        """At a rebuild: ``job`` runs (it holds its slots and its share)."""
        if job.started_at is None:
            job.started_at = now
        job.predicted = self.predict(job)
        self.flow.was_running(job.type, job.tenant)
        self.ready.running(job.tenant, job.cpu, job.mem)

    def stopped_running(self, job: JobRecord) -> None:
        """``job`` left ``running`` (it ended, or its dispatch reached no worker)."""
        job.started_at = None
        self.flow.stopped_running(job.type, job.tenant)
        self.ready.running(job.tenant, -job.cpu, -job.mem)
        self.dirty = True

    # -- predictions ------------------------------------------------------------------------
    def predict(self, job: JobRecord) -> float:
        """``job``'s predicted run time (:mod:`scheduler.durations`)."""
        return self.durations.predict(job.type, job.tenant, job.timeout)

    def ends_at(
        self, job: JobRecord, now: float, seconds: Callable[[JobRecord], float] | None = None
    ) -> float:
        """When running ``job`` is predicted to end (later than ``now``), by its prediction
        at its start or by ``seconds`` (e.g. a percentile)."""
        started = job.started_at if job.started_at is not None else now
        run = job.predicted if seconds is None else seconds(job)
        return predicted_end(started, run, now, job.timeout)

    def releases(
        self,
        worker: WorkerRecord,
        now: float,
        seconds: Callable[[JobRecord], float] | None = None,
    ) -> list[tuple[float, int, int]]:
        """What ``worker``'s holds give back and when, soonest first: (time, cpu, mem). A
        lingering hold (a timed-out thread) has no predicted end: it is left out (it frees
        nothing the pass can count on)."""
        out = []
        for key in worker.holds:
            hold = self.holds[key]
            job = self.jobs.get(key[0])
            if hold.lingering or job is None or job.attempts != key[1]:
                continue
            out.append((self.ends_at(job, now, seconds), hold.cpu, hold.mem))
        out.sort()
        return out

    # -- workers and holds ------------------------------------------------------------------
    def worker(self, worker_id: str) -> WorkerRecord:
        """The worker's record; an unknown one gets an offline placeholder with no capacity."""
        record = self.workers.get(worker_id)
        if record is None:
            record = WorkerRecord(worker_id, 0, 0, online=False)
            self.workers[worker_id] = record
        return record

    def hold(self, job: JobRecord, worker_id: str, attempt: int) -> None:
        worker = self.worker(worker_id)
        key = (job.id, attempt)
        self.holds[key] = Hold(worker_id, job.cpu, job.mem, resources=job.resources or None)
        worker.holds.add(key)
        worker.cpu_used += job.cpu
        worker.mem_used += job.mem
        for name, n in job.resources.items():
            worker.res_used[name] = worker.res_used.get(name, 0) + n

    def lingering(self, worker: WorkerRecord) -> tuple[Lingering, ...]:
        """What ended attempts still hold on ``worker``, in (job, attempt) order."""
        out = []
        for key in sorted(worker.holds):
            hold = self.holds[key]
            if hold.lingering:
                out.append(Lingering(key[0], key[1], hold.cpu, hold.mem))
        return tuple(out)

    def free(self, key: HoldKey) -> bool:
        """Give back what attempt ``key`` held; ``False`` if it held nothing."""
        hold = self.holds.pop(key, None)
        if hold is None:
            return False
        if hold.lingering:
            self.freed_lingering.append(key)
        worker = self.workers.get(hold.worker_id)
        if worker is not None:
            worker.holds.discard(key)
            worker.cpu_used -= hold.cpu
            worker.mem_used -= hold.mem
            for name, n in (hold.resources or {}).items():
                left = worker.res_used.get(name, 0) - n
                if left:
                    worker.res_used[name] = left
                else:
                    worker.res_used.pop(name, None)
        self.dirty = True
        return True
