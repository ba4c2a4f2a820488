"""What comes into the core from the database: the whole active state at a rebuild, and new
jobs on each pass (named by ``job.submitted`` hints, or found by the slow fallback poll, which
also settles dependencies the core never saw and picks up cancel requests)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.enums import FINAL_STATUSES, JobStatus
from models.messages import incarnation
from scheduler import store
from scheduler.core import Scheduler
from scheduler.inbox import Inbox
from scheduler.liveness import Liveness
from scheduler.pass_store import PassStore
from scheduler.values import Transition

#: Jobs one read of new jobs takes at most.
READ_LIMIT = 50_000


@dataclass
class Restored:
    """What a rebuild found beside the core's state."""

    transitions: list[Transition] = field(default_factory=list)
    batch_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    cancels: list[uuid.UUID] = field(default_factory=list)
    #: Running attempts (job, attempt, worker), whose dispatches are published again.
    running: list[tuple[uuid.UUID, int, str]] = field(default_factory=list)
    workers: int = 0


async def restore(engine: AsyncEngine, core: Scheduler, liveness: Liveness, now: float) -> Restored:
    """Load every active job, known worker and lingering hold into a fresh ``core``. Workers
    known from the database are offline until they heartbeat to this scheduler; what they
    run has a lease's grace for that heartbeat."""
    async with engine.connect() as conn:
        workers = await store.load_workers(conn)
        loaded = await store.load_active(conn)
        lingering = await store.load_lingering(conn)
    for w in workers:
        core.remember_worker(
            w["id"],
            w["cpu_units"],
            w["memory_mb"],
            job_types=w["job_types"],
            incarnation=incarnation(w["started_at"]),
            resources=w["resources"],
            labels=w["labels"],
        )
        liveness.remember(w["id"], now)
    out = Restored(transitions=core.add_jobs(loaded.specs, now), workers=len(workers))
    for row in lingering:
        core.hold_lingering(
            row["job_id"],
            row["attempt"],
            row["worker_id"],
            row["cpu_units"],
            row["memory_mb"],
            row["resources"],
        )
    out.batch_of = dict(loaded.batch_of)
    out.cancels = loaded.cancel_requested
    out.running = [
        (s.id, s.attempts, s.worker_id)
        for s in loaded.specs
        if s.status is JobStatus.RUNNING and s.worker_id
    ]
    return out


class Intake:
    """New jobs for each pass, and the fallback poll every ``poll_seconds``."""

    def __init__(self, pass_store: PassStore, engine: AsyncEngine, poll_seconds: float) -> None:
        self.store = pass_store
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.next_poll = 0.0

    def poll_now(self) -> None:
        self.next_poll = 0.0

    async def take_in(
        self, core: Scheduler, inbox: Inbox, batch_of: dict[uuid.UUID, uuid.UUID], now: float
    ) -> list[Transition]:
        poll = now >= self.next_poll
        if not inbox.submitted and not poll:
            return []
        known = core.state.jobs  # membership only: no copy of every active id per pass
        loaded = await self.store.read_pending(None if poll else inbox.submitted, known, READ_LIMIT)
        batch_of.update(loaded.batch_of)
        out = core.add_jobs(loaded.specs, now)
        if poll:
            self.next_poll = now + self.poll_seconds
            async with self.engine.connect() as conn:
                out += await _settle_missing(conn, core, now)
                inbox.cancels += await store.cancel_requests(conn)
        return out


async def _settle_missing(conn: AsyncConnection, core: Scheduler, now: float) -> list[Transition]:
    """Dependencies some job waits for that the core never saw: those already final release or
    cancel their dependents."""
    missing = sorted(core.missing_dependencies())
    if not missing:
        return []
    out: list[Transition] = []
    for job_id, row in (await store.final_statuses(conn, missing)).items():
        status = JobStatus(row["status"])
        if status in FINAL_STATUSES:
            out += core.dependency_finished(job_id, status, row["name"], now, row["error"])
    return out
