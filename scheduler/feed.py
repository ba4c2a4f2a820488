"""What the scheduler heard, fed to the core: reports, heartbeats and goodbyes, lease
expiries, dispatches no queue took, cancels. The rules of liveness live in
:mod:`scheduler.liveness`, the decisions in the core; this keeps what links them between
passes: attempts found lost outside a report, and dispatches to publish again."""

from __future__ import annotations

import logging
import uuid

from models.enums import Outcome
from models.messages import Heartbeat, incarnation
from scheduler.core import Scheduler
from scheduler.inbox import Inbox
from scheduler.liveness import Liveness
from scheduler.publisher import Sent, Unrouted
from scheduler.reconcile import DispatchTracker
from scheduler.values import SendCancel, Transition

log = logging.getLogger(__name__)


class Feed:
    def __init__(self, liveness: Liveness, tracker: DispatchTracker) -> None:
        self.liveness = liveness
        self.tracker = tracker
        #: Attempts to end without a worker's report: (job, attempt, why, outcome).
        self.lost: list[tuple[uuid.UUID, int, str, Outcome]] = []
        #: Running attempts whose dispatch is to be published again.
        self.to_republish: list[Sent] = []

    def events(self, core: Scheduler, inbox: Inbox, now: float) -> list[Transition]:
        """Reports, then heartbeats (a stopping worker's hand-backs precede its goodbye), then
        what was found lost."""
        out: list[Transition] = []
        for f in inbox.finished:
            self.tracker.settled(f.job_id, f.attempt)
            out += core.on_attempt_finished(
                f.job_id,
                f.attempt,
                f.outcome,
                now,
                retry_after=f.retry_after,
                error=f.error,
                released=f.released,
                failure_class=f.failure_class,
                peak_memory_mb=f.peak_memory_mb,
            )
        for r in inbox.released:
            core.release(r.job_id, r.attempt)
        for beat in inbox.beats.values():
            out += self.heartbeat(core, beat, now)
        lost, self.lost = self.lost, []
        for job_id, attempt, why, outcome in lost:
            out += core.on_attempt_finished(job_id, attempt, outcome, now, error=why)
        return out

    def heartbeat(self, core: Scheduler, beat: Heartbeat, now: float) -> list[Transition]:
        """A heartbeat (or a goodbye) updates the worker in the core and its lease."""
        known = core.state.workers.get(beat.worker_id)
        started = incarnation(beat.started_at)
        if known is not None and known.incarnation not in (None, started):
            log.warning(
                "worker restarted under the same id; what it held runs again",
                extra={"action": "scheduler.worker_restarted", "worker": beat.worker_id},
            )
            self.tracker.worker_gone(beat.worker_id)
        out = core.upsert_worker(
            beat.worker_id,
            beat.cpu_units,
            beat.memory_mb,
            draining=beat.draining,
            job_types=beat.job_types,
            incarnation=started,
            now=now,
            resources=beat.resources,
            labels=beat.labels,
        )
        if beat.stopped:
            # Goodbye: its reports travel before it, so what it still holds never ran there.
            out += core.worker_stopped(beat.worker_id, now)
            self.tracker.worker_gone(beat.worker_id)
            self.liveness.forget(beat.worker_id)
            return out
        self.liveness.heard(beat.worker_id, now)
        holds = [(r.job_id, r.attempt) for r in beat.running]
        verdicts = self.tracker.on_heartbeat(beat.worker_id, holds, now)
        self.to_republish += verdicts.republish
        self.lost += [
            (j, a, f"dispatch never reached worker {w}", Outcome.LOST) for j, a, w in verdicts.lost
        ]
        return out

    def leases(self, core: Scheduler, now: float) -> tuple[list[Transition], list[str]]:
        """Workers past their lease go offline; what they held runs again."""
        gone = self.liveness.expired(now)
        out: list[Transition] = []
        for worker_id in gone:
            log.warning(
                "worker missed its lease; its jobs go back to the queue",
                extra={"action": "scheduler.worker_offline", "worker": worker_id},
            )
            out += core.worker_offline(worker_id, now)
            self.tracker.worker_gone(worker_id)
        return out, gone

    def unrouted(self, core: Scheduler, unrouted: Unrouted, now: float) -> list[Transition]:
        """Dispatches no queue took. A first one gets its attempt number back, so it must not
        be placed again in the same pass (call this after the plan: the pass deletes the
        attempt row that the next placement opens anew); a re-published one is lost."""
        out: list[Transition] = []
        for job_id, attempt, worker_id in unrouted.first:
            self.tracker.settled(job_id, attempt)
            out += core.undelivered(job_id, attempt, worker_id, now)
        for job_id, attempt, worker_id in unrouted.republished:
            why = f"worker {worker_id} is gone (its queue no longer exists)"
            self.lost.append((job_id, attempt, why, Outcome.LOST))
        return out

    @staticmethod
    def cancels(
        core: Scheduler, job_ids: list[uuid.UUID], now: float
    ) -> tuple[list[Transition], list[SendCancel]]:
        out: list[Transition] = []
        sends: list[SendCancel] = []
        for job_id in job_ids:
            decided = core.cancel(job_id, now)
            out += decided.transitions
            if decided.send is not None:
                sends.append(decided.send)
        return out, sends
