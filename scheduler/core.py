"""The pure scheduling core: one state object, fed events, returning decisions as values.

No I/O, no clock, no asyncio: ``now`` (epoch seconds) is an argument and jitter comes from an
injected ``random.Random``. The scheduler process holds one :class:`Scheduler`, rebuilds it from
the database's active jobs at start, and on each pass: feeds events → ``tick`` → ``plan`` → writes
every returned :class:`~scheduler.values.Transition` and :class:`~scheduler.values.Placement` in
one transaction → publishes the dispatches and :class:`~scheduler.values.SendCancel` messages.

Methods mutate the in-memory state as if their decisions were applied; if the transaction fails,
the shell must rebuild the state from the database.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import Counter
from collections.abc import Iterable

from models.enums import FailureClass, JobStatus, Outcome
from scheduler import dag, escalation
from scheduler.breaker import BreakerPolicy
from scheduler.durations import Durations
from scheduler.fleetcontrols import FleetControls, is_current
from scheduler.flow import Flow
from scheduler.flowcontrols import FlowControls
from scheduler.placement import PlacementConfig, plan
from scheduler.reasons import CANCELLED_BY_USER, never_fits_reason, upstream_reason
from scheduler.retry import RetryDecision, Verdict, decide
from scheduler.state import WAITING, JobRecord, SchedulerState
from scheduler.values import (
    CancelResult,
    JobSpec,
    Placement,
    SendCancel,
    Transition,
)

__all__ = ["Scheduler"]

_COMPLETE = RetryDecision(Verdict.COMPLETE)
_FINAL_STATUS = {
    Verdict.COMPLETE: JobStatus.COMPLETED,
    Verdict.FAIL: JobStatus.FAILED,
    Verdict.CANCEL: JobStatus.CANCELLED,
}


class Scheduler(FleetControls, FlowControls):
    """In-memory scheduling state of the active jobs and the workers, plus the rules.

    ``lookahead`` bounds how many passed-over ready jobs a pass examines; ``reserve_after`` is
    how long (seconds) a job may be overtaken by smaller ones before it reserves a worker (see
    :mod:`scheduler.placement`); ``jitter`` spreads backoff delays by ``± jitter`` * delay using
    ``rng``; ``max_backoff_seconds`` caps a backoff.
    """

    def __init__(
        self,
        *,
        lookahead: int = 256,
        reserve_after: float = 10.0,
        jitter: float = 0.0,
        max_backoff_seconds: float | None = None,
        rng: random.Random | None = None,
        breaker_policy: BreakerPolicy | None = None,
        tenant_max_running: int | None = None,
        backfill: bool = True,
        prediction_default: float = 10.0,
        rank_by_path: bool = True,
    ) -> None:
        self.state = SchedulerState()
        self.state.flow = Flow(breaker_policy, tenant_max_running)
        self.state.durations = Durations(prediction_default)
        self.state.rank_by_path = rank_by_path
        self._placement = PlacementConfig(
            lookahead=lookahead, reserve_after=reserve_after, backfill=backfill
        )
        self._jitter = jitter
        self._max_backoff = max_backoff_seconds
        self._rng = rng

    # -- jobs in --------------------------------------------------------------------------
    def add_jobs(self, specs: Iterable[JobSpec], now: float) -> list[Transition]:
        """Take in new jobs (or every active job at a rebuild). See :func:`dag.add_jobs`."""
        return dag.add_jobs(self.state, specs, now)

    def missing_dependencies(self) -> set[uuid.UUID]:
        """Dependencies some job waits for that the core has never been given.

        The shell should look them up: still active → ``add_jobs``; already final →
        :meth:`dependency_finished`. O(number of jobs with dependents); call it on a slow timer.
        """
        return {parent for parent in self.state.dependents if parent not in self.state.jobs}

    def dependency_finished(
        self,
        job_id: uuid.UUID,
        status: JobStatus,
        name: str,
        now: float,
        error: str | None = None,
    ) -> list[Transition]:
        """A job the core does not hold ended with ``status``: release or cancel its dependents."""
        if job_id in self.state.jobs:
            return []
        if status is JobStatus.COMPLETED:
            return dag.complete_dependents(self.state, job_id, now)
        if status in (JobStatus.FAILED, JobStatus.CANCELLED):
            return dag.cascade(self.state, job_id, upstream_reason(name, job_id, status, error))
        return []

    # -- attempts -------------------------------------------------------------------------
    def on_attempt_finished(
        self,
        job_id: uuid.UUID,
        attempt: int,
        outcome: Outcome,
        now: float,
        *,
        retry_after: float | None = None,
        error: str | None = None,
        released: bool = True,
        failure_class: FailureClass | None = None,
        peak_memory_mb: int | None = None,
    ) -> list[Transition]:
        """A worker reported how attempt ``attempt`` ended (a failure of class ``memory``
        retries asking for more: :mod:`scheduler.escalation`).

        Fenced: a report for an attempt that is not the job's current running one changes no job
        (it returns ``[]``); its ``released`` still frees what that attempt held, since the
        worker says the resources are free. With ``released=False`` (a timed-out thread still
        runs) the resources stay held until :meth:`release`.
        """
        if released:
            self.state.free((job_id, attempt))
        elif (hold := self.state.holds.get((job_id, attempt))) is not None:
            hold.lingering = True
        job = self.state.jobs.get(job_id)
        if job is None or not is_current(job, attempt):
            return []
        memory = failure_class is FailureClass.MEMORY and outcome is Outcome.FAILED
        return self._finish(job, outcome, now, retry_after, error, memory, peak_memory_mb)

    def release(self, job_id: uuid.UUID, attempt: int) -> bool:
        """A timed-out thread of attempt ``attempt`` returned: free its resources."""
        return self.state.free((job_id, attempt))

    def cancel(
        self, job_id: uuid.UUID, now: float, reason: str = CANCELLED_BY_USER
    ) -> CancelResult:
        """Cancel a job: a waiting one (and its downstream) at once, a running one via its worker.

        A running job stays ``running`` until its worker reports; after a cancel request any
        outcome but success ends it ``cancelled``.
        """
        job = self.state.jobs.get(job_id)
        if job is None:
            return CancelResult()
        if job.status is JobStatus.RUNNING and job.worker_id is not None:
            job.cancel_requested = True
            return CancelResult(send=SendCancel(job.id, job.attempts, job.worker_id, reason))
        if job.status not in WAITING:
            return CancelResult()
        first = Transition(job.id, job.status, JobStatus.CANCELLED, job.attempts, reason=reason)
        job.status = JobStatus.CANCELLED
        self.state.drop(job)
        rest = dag.cascade(self.state, job.id, upstream_reason(job.name, job.id, job.status, None))
        return CancelResult(transitions=(first, *rest))

    # -- time and placement ---------------------------------------------------------------
    def tick(self, now: float) -> list[Transition]:
        """Move jobs whose timer is due (``run_at`` reached, backoff over) to ``ready``."""
        state = self.state
        out: list[Transition] = []
        while state.timers and state.timers[0][0] <= now:
            job = state.live_timer(heapq.heappop(state.timers))
            if job is None or job.remaining > 0:
                continue
            if job.status in (JobStatus.RETRYING, JobStatus.BLOCKED):
                transition = dag.make_ready(state, job)
                if transition is not None:
                    out.append(transition)
        return out

    def next_wakeup(self) -> float | None:
        """When the next timer is due (a job's, or a limit's or breaker's), so the shell can
        sleep until then (or an event)."""
        due = [t for t in (self.state.next_timer(), self.state.flow.next_wakeup()) if t is not None]
        return min(due) if due else None

    def plan(self, now: float) -> list[Placement]:
        """Which ready jobs start now, on which worker, as which attempt (see placement)."""
        return plan(self.state, now, self._placement)

    # -- introspection --------------------------------------------------------------------
    def job_status(self, job_id: uuid.UUID) -> JobStatus | None:
        job = self.state.jobs.get(job_id)
        return None if job is None else job.status

    def unplaceable(self) -> dict[uuid.UUID, str]:
        """Ready jobs that no accepting worker could ever hold, with the reason to show."""
        views = self.worker_views()
        return {
            job.id: never_fits_reason(job.cpu, job.mem, views, job.type, job.resources, job.labels)
            or "waiting for capacity"
            for job in self.state.parked.values()
        }

    def counts(self) -> dict[str, int]:
        """Active jobs by status (O(active jobs); for monitoring, not for every pass)."""
        return dict(Counter(job.status.value for job in self.state.jobs.values()))

    # -- internals ------------------------------------------------------------------------
    def _finish(
        self,
        job: JobRecord,
        outcome: Outcome,
        now: float,
        retry_after: float | None,
        error: str | None,
        memory_kill: bool = False,
        peak_mb: int | None = None,
    ) -> list[Transition]:
        raised: int | None = None
        if outcome is Outcome.SUCCEEDED:
            decision = _COMPLETE
            if job.started_at is not None:
                self.state.durations.observe(job.type, job.tenant, now - job.started_at)
        elif memory_kill and not job.cancel_requested:
            decision, raised = escalation.memory_retry(job, peak_mb, self.state.workers.values())
        else:
            decision = decide(
                outcome,
                # The budget restarts on a resubmission; memory escalations are not part of it.
                job.attempts - job.attempts_base - job.memory_escalations,
                job.policy(self._jitter, self._max_backoff),
                retry_after=retry_after,
                cancel_requested=job.cancel_requested,
                rng=self._rng,
            )
        worker_id, job.worker_id = job.worker_id, None
        self.state.stopped_running(job)
        # An escalating memory kill is a retry the scheduler asks for: nothing to the breaker.
        counted = Outcome.RETRY_REQUESTED if raised is not None else outcome
        self.state.flow.ended(job.id, job.type, counted, now)
        if decision.verdict is Verdict.RETRY:
            return [self._retry(job, decision, now, error, worker_id, outcome, raised)]
        to_status = _FINAL_STATUS[decision.verdict]
        job.status = to_status
        self.state.drop(job)
        first = Transition(
            job.id,
            JobStatus.RUNNING,
            to_status,
            job.attempts,
            reason=decision.reason,
            error=error,
            worker_id=worker_id,
            outcome=outcome,
        )
        if to_status is JobStatus.COMPLETED:
            return [first, *dag.complete_dependents(self.state, job.id, now)]
        reason = upstream_reason(job.name, job.id, to_status, error)
        return [first, *dag.cascade(self.state, job.id, reason)]

    def _retry(
        self,
        job: JobRecord,
        decision: RetryDecision,
        now: float,
        error: str | None,
        worker_id: str | None,
        outcome: Outcome,
        raised: int | None,
    ) -> Transition:
        """Run ``job`` again after the decision's delay (asking ``raised`` MB from now on if a
        kill for memory raised it)."""
        if raised is not None:
            job.mem, job.memory_escalations = raised, job.memory_escalations + 1
        not_before: float | None = None
        if decision.delay <= 0:
            dag.make_ready(self.state, job)
        else:
            not_before = now + decision.delay
            job.status = JobStatus.RETRYING
            job.not_before = not_before
            self.state.push_timer(job, not_before)
        return Transition(
            job.id,
            JobStatus.RUNNING,
            job.status,
            job.attempts,
            reason=decision.reason,
            error=error,
            not_before=not_before,
            worker_id=worker_id,
            outcome=outcome,
            memory_mb=raised,
            memory_escalations=job.memory_escalations if raised is not None else None,
        )
