"""The workers' half of the :class:`~scheduler.core.Scheduler` facade (pure): heartbeats,
workers remembered at a rebuild, admins' controls, a worker lost, stopped or unreachable, and
the holds of attempts whose code outlived them. The rules are :mod:`scheduler.fleet`; ending
the attempts a worker held is the core's own ``_finish``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping

from models.enums import JobStatus, Outcome
from scheduler import fleet
from scheduler.resources import Offer
from scheduler.state import JobRecord, SchedulerState
from scheduler.values import Transition, WorkerView
from scheduler.workers import Control, WorkerRecord


def is_current(job: JobRecord, attempt: int) -> bool:
    """``attempt`` is the one ``job`` runs now (a report of any other is stale)."""
    return job.status is JobStatus.RUNNING and job.attempts == attempt


class FleetControls:
    """Mixed into the scheduler, which owns ``state`` and ends attempts (``_finish``)."""

    state: SchedulerState

    #: The scheduler's: how an attempt of ``job`` ended ``(job, outcome, now, retry_after,
    #: error)``, and what follows.
    _finish: Callable[[JobRecord, Outcome, float, float | None, str | None], list[Transition]]

    def upsert_worker(
        self,
        worker_id: str,
        cpu_units: int,
        memory_mb: int,
        *,
        draining: bool = False,
        job_types: Iterable[str] | None = None,
        incarnation: str | None = None,
        now: float = 0.0,
        resources: Mapping[str, int] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Transition]:
        """A heartbeat: the worker is online with this capacity and these job types (and maybe
        draining). A new ``incarnation`` (the process restarted under the same id) loses what
        the earlier one held: its attempts end ``lost`` and run again."""
        known = self.state.workers.get(worker_id)
        out: list[Transition] = []
        if known is not None and incarnation and known.incarnation not in (None, incarnation):
            out = self._lose_holds(known, now, f"worker {worker_id} restarted")
        worker = fleet.heard(
            self.state,
            worker_id,
            cpu_units,
            memory_mb,
            draining,
            job_types,
            Offer.of(resources, labels),
        )
        worker.incarnation = incarnation or worker.incarnation
        return out

    def remember_worker(
        self,
        worker_id: str,
        cpu_units: int,
        memory_mb: int,
        *,
        job_types: Iterable[str] | None = None,
        incarnation: str | None = None,
        resources: Mapping[str, int] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """A worker known from the database at a rebuild. Nothing is placed on it until it
        heartbeats: a lease this scheduler has not seen renewed proves nothing."""
        fleet.remember(
            self.state,
            worker_id,
            cpu_units,
            memory_mb,
            job_types,
            incarnation,
            Offer.of(resources, labels),
        )

    def control_workers(self, controls: Mapping[str, Control]) -> None:
        """What admins set on workers, all of it: drained ones take nothing new, resized ones
        are placed on by their new size (what runs is never stopped)."""
        fleet.control(self.state, controls)

    def worker_offline(self, worker_id: str, now: float) -> list[Transition]:
        """The worker's lease expired: free what it held; its running attempts are LOST."""
        worker = self.state.workers.get(worker_id)
        if worker is None:
            return []
        worker.online = False
        self.state.capacity_changed = True
        return self._lose_holds(worker, now, f"worker {worker_id} went offline")

    def worker_stopped(self, worker_id: str, now: float) -> list[Transition]:
        """The worker said goodbye. Its reports came before it (they travel in order), so an
        attempt it still holds here never started there: it is handed back (no attempt of the
        budget) and runs elsewhere at once; what lingered there is freed with the process."""
        worker = self.state.workers.get(worker_id)
        if worker is None:
            return []
        worker.online = False
        self.state.capacity_changed = True
        why = f"worker {worker_id} stopped before running it"
        return self._lose_holds(worker, now, why, Outcome.HANDED_BACK)

    def undelivered(
        self, job_id: uuid.UUID, attempt: int, worker_id: str, now: float
    ) -> list[Transition]:
        """The dispatch of ``attempt`` provably reached no queue (the worker's queue is gone).
        The worker takes nothing more until it heartbeats again, and the job is ready again
        with its attempt number given back: no worker started it, so it was no attempt."""
        self.state.free((job_id, attempt))
        fleet.unreachable(self.state, worker_id)
        job = self.state.jobs.get(job_id)
        if job is None or not is_current(job, attempt) or job.worker_id != worker_id:
            return []
        if job.cancel_requested:
            return self._finish(job, Outcome.CANCELLED, now, None, None)
        return [fleet.give_back(self.state, job, worker_id)]

    def hold_lingering(
        self,
        job_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        cpu_units: int,
        memory_mb: int,
        resources: Mapping[str, int] | None = None,
    ) -> None:
        """At a rebuild: an ended attempt whose code still runs holds this capacity."""
        fleet.hold_lingering(
            self.state, job_id, attempt, worker_id, cpu_units, memory_mb, resources
        )

    def take_freed_lingering(self) -> list[tuple[uuid.UUID, int]]:
        """Lingering holds freed since the last call (a thread returned, its worker left)."""
        out, self.state.freed_lingering = self.state.freed_lingering, []
        return out

    def worker_views(self) -> list[WorkerView]:
        state = self.state
        return [w.view(state.lingering(w)) for w in state.workers.values()]

    def _lose_holds(
        self, worker: WorkerRecord, now: float, error: str, outcome: Outcome = Outcome.LOST
    ) -> list[Transition]:
        out: list[Transition] = []
        for key in sorted(worker.holds):
            self.state.free(key)
            job = self.state.jobs.get(key[0])
            if job is not None and is_current(job, key[1]) and job.worker_id == worker.id:
                out.extend(self._finish(job, outcome, now, None, error))
        return out
