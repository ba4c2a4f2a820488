"""The scheduler process: a thin loop around the pure core.

Each pass: take the messages that arrived → feed the core (results, heartbeats, new jobs,
cancels, lease expiries, due timers) → ask it for placements → write every transition in one
transaction → publish dispatches, cancels and status events → ack the messages. The scheduler
wakes on messages and on its next timer; a slow poll is only the fallback for lost hints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from models.enums import FINAL_STATUSES, JobStatus, Outcome, WorkerState
from models.messages import (
    AttemptFinished,
    CancelJob,
    CancelRequested,
    Dispatch,
    Heartbeat,
    JobsSubmitted,
    JobStatusEvent,
    ResourcesReleased,
    SchedulerProbe,
    incarnation,
    scheduler_inbound,
    unpack,
)
from scheduler import maintenance, store
from scheduler.core import Scheduler
from scheduler.leader import Leadership
from scheduler.monitoring import Monitor, queue_snapshot, resource_snapshot
from scheduler.pass_sql import PassConnection, pass_params
from scheduler.reconcile import DispatchTracker
from scheduler.store import dt
from scheduler.timings import PassTimings
from scheduler.values import Placement, SendCancel, Transition
from scheduler.writes import plan_writes
from smartq import heap, topology
from smartq.broker import Broker, BrokerError, IncomingMessage, Unroutable
from smartq.db import is_retryable, psycopg_dsn
from smartq.failpoints import Failpoints
from smartq.settings import Settings

log = logging.getLogger(__name__)
#: How often the leader checks that its lock connection still holds the lock.
LEADER_CHECK_SECONDS = 0.5
#: Passes whose messages may wait for the publisher before a pass waits for it.
PUBLISH_BACKLOG = 8
#: On leaving (stop, lost leadership), how long the publisher may take to empty its queue.
PUBLISH_DRAIN_SECONDS = 5.0
#: Held status events that make the publisher task send them at once.
EVENTS_HELD_MAX = 1_000


@dataclass
class Inbox:
    """Messages of one pass, decoded and grouped."""

    submitted: list[uuid.UUID] = field(default_factory=list)
    cancels: list[uuid.UUID] = field(default_factory=list)
    finished: list[AttemptFinished] = field(default_factory=list)
    released: list[ResourcesReleased] = field(default_factory=list)
    beats: dict[str, Heartbeat] = field(default_factory=dict)
    probed: bool = False


@dataclass(frozen=True)
class _AttemptWrites:
    """Attempt rows a pass writes: ``closes`` (the ``b_``-prefixed rows of
    :func:`scheduler.store.finish_attempts`), ``releases`` of capacity held after an attempt
    ended, and ``drops`` of rows of dispatches that reached no worker."""

    closes: list[dict[str, Any]]
    releases: list[tuple[uuid.UUID, int]]
    drops: list[tuple[uuid.UUID, int]]


@dataclass
class PassResult:
    transitions: int = 0
    dispatched: int = 0


class SchedulerService:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        broker: Broker,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = broker
        self.clock = clock
        self.core = self._new_core()
        self._messages: list[IncomingMessage] = []
        self._wake = asyncio.Event()
        self._batch_of: dict[uuid.UUID, uuid.UUID] = {}
        self._last_seen: dict[str, float] = {}
        #: Dispatches to publish again (passes run on their own, without the publisher task).
        self._outbox: list[tuple[str, bytes]] = []
        #: What committed passes hand to the publisher task (while leading).
        self._publishing: asyncio.Queue[list[tuple[str, bytes]]] | None = None
        #: Status events the publisher task holds back to send with the next passes' ones.
        self._held_events: list[tuple[str, bytes]] = []
        #: Attempts to end without a worker's report: (job, attempt, why, outcome).
        self._lost: list[tuple[uuid.UUID, int, str, Outcome]] = []
        #: First dispatches no queue took (job, attempt, worker): settled after the next plan.
        self._undelivered: list[tuple[uuid.UUID, int, str]] = []
        self._to_republish: list[tuple[uuid.UUID, int, str]] = []
        self.tracker = DispatchTracker(grace=max(3 * settings.heartbeat_seconds, 1.0))
        self.failpoints = Failpoints(settings.failpoints)
        self._last_probe = clock()
        self._deaf_after = max(3 * settings.heartbeat_seconds, 1.0)
        self._next_poll = 0.0
        self._pending_transitions: list[Transition] = []
        self._cancels_at_start: list[uuid.UUID] = []
        self._redispatch: list[tuple[uuid.UUID, int, str]] = []
        self.passes = 0
        self.monitor = Monitor()  # monitoring (issue 4): finished counters, last heartbeats
        #: Attempt outcomes per (worker, ok|bad) not yet written: they go with its next heartbeat.
        self._worker_outcomes: Counter[tuple[str, str]] = Counter()
        self.timings = PassTimings()
        #: PostgreSQL only: the pass's read of new jobs and its one write, on its own connection.
        self._pass_sql = (
            PassConnection(psycopg_dsn(engine.url)) if engine.dialect.name == "postgresql" else None
        )

    def _new_core(self) -> Scheduler:
        return Scheduler(
            lookahead=self.settings.scheduler_lookahead,
            reserve_after=self.settings.scheduler_reserve_after_seconds,
            jitter=self.settings.retry_jitter,
            rng=random.Random(),
        )

    # -- start-up -------------------------------------------------------------------------
    async def rebuild(self) -> None:
        """Load every active job and known worker into a fresh core."""
        self.core = self._new_core()
        now = self.clock()
        async with self.engine.connect() as conn:
            workers = await store.load_workers(conn)
            loaded = await store.load_active(conn)
            lingering = await store.load_lingering(conn)
        for w in workers:
            # Known, but offline until it heartbeats to this scheduler; what it runs has a
            # lease's grace for that heartbeat.
            self.core.remember_worker(
                w["id"],
                w["cpu_units"],
                w["memory_mb"],
                job_types=w["job_types"],
                incarnation=incarnation(w["started_at"]),
            )
            self._last_seen.setdefault(w["id"], now)
        self._pending_transitions = self.core.add_jobs(loaded.specs, now)
        for row in lingering:
            self.core.hold_lingering(
                row["job_id"], row["attempt"], row["worker_id"], row["cpu_units"], row["memory_mb"]
            )
        self._batch_of = dict(loaded.batch_of)
        self._cancels_at_start = loaded.cancel_requested
        running = [s for s in loaded.specs if s.status is JobStatus.RUNNING and s.worker_id]
        self._redispatch = [(s.id, s.attempts, s.worker_id or "") for s in running]
        self.tracker = DispatchTracker(self.tracker.grace, self.tracker.max_republish)
        for job_id, attempt, worker_id in self._redispatch:
            self.tracker.dispatched(job_id, attempt, worker_id, now)
        heap.freeze()  # full collections walked the whole state: 100 ms pauses inside passes
        log.info(
            "scheduler state rebuilt",
            extra={
                "action": "scheduler.rebuild",
                "jobs": len(loaded.specs),
                "workers": len(workers),
            },
        )

    async def _on_message(self, message: IncomingMessage) -> None:
        self._messages.append(message)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set, while this process leads (see scheduler.leader);
        wait as a hot standby while another scheduler does."""
        leadership = Leadership(self.engine)
        try:
            while not stop.is_set():
                if not await leadership.acquire(stop):
                    return
                await self._lead(stop, leadership)
        finally:
            await leadership.release()

    async def _lead(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Rebuild, consume the inbox and run passes until stopped or no longer leader."""
        await self.rebuild()
        self._messages = []
        consumer = await self.broker.consume(
            topology.scheduler_queue(self.broker.exchange), self._on_message, prefetch=10_000
        )
        monitoring = asyncio.create_task(self._monitoring(), name="scheduler-monitoring")
        probe = asyncio.create_task(self._probe(), name="scheduler-probe")
        stats = asyncio.create_task(self._pass_stats(), name="scheduler-pass-stats")
        upkeep = (
            asyncio.create_task(
                maintenance.keep_vacuumed(
                    self._pass_sql.dsn, self.settings.scheduler_vacuum_seconds
                ),
                name="scheduler-vacuum",
            )
            if self._pass_sql is not None
            else None
        )
        self._publishing = asyncio.Queue(maxsize=PUBLISH_BACKLOG)
        publisher = asyncio.create_task(
            self._publisher(self._publishing), name="scheduler-publisher"
        )
        self._last_probe = self.clock()
        loop = asyncio.get_running_loop()
        next_check = loop.time() + LEADER_CHECK_SECONDS
        try:
            await self._republish_running()
            while not stop.is_set():
                if loop.time() >= next_check:
                    if not await leadership.still_leader():
                        return
                    next_check = loop.time() + LEADER_CHECK_SECONDS
                await self.run_pass()
                await self._sleep(stop)
            if self._messages:  # what arrived before the stop (a goodbye) is settled now
                log.info(
                    "settling the last messages before stopping",
                    extra={"action": "scheduler.last_pass", "messages": len(self._messages)},
                )
                await self.run_pass()
        finally:
            monitoring.cancel()
            probe.cancel()
            stats.cancel()
            if upkeep is not None:
                upkeep.cancel()
            with contextlib.suppress(TimeoutError):  # what passes committed goes out first
                await asyncio.wait_for(self._publishing.join(), PUBLISH_DRAIN_SECONDS)
            publisher.cancel()
            held, self._held_events = self._held_events, []
            with contextlib.suppress(TimeoutError, BrokerError):
                await asyncio.wait_for(self._publish(held), PUBLISH_DRAIN_SECONDS)
            self._publishing = None
            await consumer.cancel()  # unacked inputs go back to the queue for the next leader
            if self._pass_sql is not None:
                await self._pass_sql.close()

    async def _sleep(self, stop: asyncio.Event) -> None:
        if self._messages or self._outbox or self._lost or self._undelivered:
            await asyncio.sleep(0)
            return
        now = self.clock()
        due = [self._next_poll, now + self.settings.scheduler_poll_seconds]
        wakeup = self.core.next_wakeup()
        if wakeup is not None:
            due.append(wakeup)
        timeout = max(0.0, min(due) - now)
        waiter = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()
        self._wake.clear()

    # -- one pass -------------------------------------------------------------------------
    def _decode(self, messages: list[IncomingMessage]) -> Inbox:
        inbox = Inbox()
        for message in messages:
            try:
                items = unpack(message.body)
                docs = [scheduler_inbound.validate_python(item) for item in items]
            except (ValidationError, ValueError):
                log.warning(
                    "dropping a malformed message",
                    extra={"action": "scheduler.malformed", "routing_key": message.routing_key},
                )
                continue
            for doc in docs:
                self._sort(inbox, doc)
        return inbox

    @staticmethod
    def _sort(inbox: Inbox, doc: Any) -> None:
        if isinstance(doc, JobsSubmitted):
            inbox.submitted.extend(doc.job_ids)
        elif isinstance(doc, CancelRequested):
            inbox.cancels.append(doc.job_id)
        elif isinstance(doc, AttemptFinished):
            inbox.finished.append(doc)
        elif isinstance(doc, ResourcesReleased):
            inbox.released.append(doc)
        elif isinstance(doc, SchedulerProbe):
            inbox.probed = True
        elif isinstance(doc, Heartbeat):
            inbox.beats[doc.worker_id] = doc

    def _feed_reports(
        self, inbox: Inbox, now: float
    ) -> tuple[list[Transition], dict[uuid.UUID, Any]]:
        out: list[Transition] = []
        results: dict[uuid.UUID, Any] = {}
        for f in inbox.finished:
            self.tracker.settled(f.job_id, f.attempt)
            out += self.core.on_attempt_finished(
                f.job_id,
                f.attempt,
                f.outcome,
                now,
                retry_after=f.retry_after,
                error=f.error,
                released=f.released,
            )
            if f.outcome is Outcome.SUCCEEDED:
                results[f.job_id] = f.result
        for r in inbox.released:
            self.core.release(r.job_id, r.attempt)
        # Reports before heartbeats: a stopping worker's hand-backs precede its goodbye.
        for beat in inbox.beats.values():
            out += self._heard_from(beat, now)
            if beat.stopped:
                continue
            holds = [(r.job_id, r.attempt) for r in beat.running]
            verdicts = self.tracker.on_heartbeat(beat.worker_id, holds, now)
            self._to_republish += verdicts.republish
            self._lost += [
                (j, a, f"dispatch never reached worker {w}", Outcome.LOST)
                for j, a, w in verdicts.lost
            ]
        for job_id, attempt, why, outcome in self._lost:
            out += self.core.on_attempt_finished(job_id, attempt, outcome, now, error=why)
        self._lost = []
        return out, results

    def _heard_from(self, beat: Heartbeat, now: float) -> list[Transition]:
        """A heartbeat (or a goodbye) updates the worker in the core."""
        known = self.core.state.workers.get(beat.worker_id)
        started = incarnation(beat.started_at)
        if known is not None and known.incarnation not in (None, started):
            log.warning(
                "worker restarted under the same id; what it held runs again",
                extra={"action": "scheduler.worker_restarted", "worker": beat.worker_id},
            )
            self.tracker.worker_gone(beat.worker_id)
        out = self.core.upsert_worker(
            beat.worker_id,
            beat.cpu_units,
            beat.memory_mb,
            draining=beat.draining,
            job_types=beat.job_types,
            incarnation=started,
            now=now,
        )
        if beat.stopped:
            # Goodbye: its reports travel before it, so what it still holds never ran there.
            out += self.core.worker_stopped(beat.worker_id, now)
            self.tracker.worker_gone(beat.worker_id)
            self._last_seen.pop(beat.worker_id, None)
        else:
            self._last_seen[beat.worker_id] = now
        return out

    def _hear(self, inbox: Inbox, now: float) -> None:
        """A probe came back. After a gap (the broker path was down, so nobody could be heard)
        every worker gets a fresh lease to heartbeat again before it can be declared lost."""
        if not inbox.probed:
            return
        if now - self._last_probe > self._deaf_after:
            log.warning(
                "the broker path is back; leases restart", extra={"action": "scheduler.broker_back"}
            )
            for worker_id in self._last_seen:
                self._last_seen[worker_id] = max(self._last_seen[worker_id], now)
        self._last_probe = now

    async def _pass_stats(self) -> None:
        """Log where passes spent their time (see scheduler.timings), when there were any."""
        while True:
            await asyncio.sleep(self.settings.scheduler_stats_seconds)
            figures = self.timings.summary()
            if figures["passes"]:
                log.info("scheduler passes", extra={"action": "scheduler.passes", **figures})

    async def _probe(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.broker.publish(
                    topology.SCHEDULER_PROBE, SchedulerProbe(sent=self.clock()).dumps()
                )
            await asyncio.sleep(self.settings.heartbeat_seconds)

    def _expire_leases(self, now: float) -> tuple[list[Transition], list[str]]:
        if now - self._last_probe > self._deaf_after:
            return [], []  # we cannot hear anyone right now: silence proves nothing
        lease = self.settings.worker_lease_seconds
        gone = [w for w, seen in self._last_seen.items() if now - seen > lease]
        out: list[Transition] = []
        for worker_id in gone:
            log.warning(
                "worker missed its lease; its jobs go back to the queue",
                extra={"action": "scheduler.worker_offline", "worker": worker_id},
            )
            out += self.core.worker_offline(worker_id, now)
            self.tracker.worker_gone(worker_id)
            del self._last_seen[worker_id]
        return out, gone

    async def _take_in(self, inbox: Inbox, now: float) -> list[Transition]:
        poll = now >= self._next_poll
        if not inbox.submitted and not poll:
            return []
        known = self.core.state.jobs  # membership only: no copy of every active id per pass
        named = None if poll else inbox.submitted
        if self._pass_sql is not None:  # PostgreSQL: one statement on the pass's connection
            loaded = await self._pass_sql.read_pending(named, known, limit=50_000)
        else:
            async with self.engine.connect() as conn:
                loaded = await store.load_pending(conn, named, known, limit=50_000)
        self._batch_of.update(loaded.batch_of)
        out = self.core.add_jobs(loaded.specs, now)
        if poll:
            self._next_poll = now + self.settings.scheduler_poll_seconds
            async with self.engine.connect() as conn:
                out += await self._settle_missing(conn, now)
                inbox.cancels += await store.cancel_requests(conn)
        return out

    async def _settle_missing(self, conn: Any, now: float) -> list[Transition]:
        missing = sorted(self.core.missing_dependencies())
        if not missing:
            return []
        out: list[Transition] = []
        rows = await store.final_statuses(conn, missing)
        for job_id, row in rows.items():
            status = JobStatus(row["status"])
            if status in FINAL_STATUSES:
                out += self.core.dependency_finished(job_id, status, row["name"], now, row["error"])
        return out

    def _settle_undelivered(self, now: float) -> list[Transition]:
        """Dispatches no queue took. Called after the plan: the job gets its attempt number
        back, so it must not be placed again in this pass (this pass's write deletes the
        attempt row that the next placement opens anew)."""
        out: list[Transition] = []
        undelivered, self._undelivered = self._undelivered, []
        for job_id, attempt, worker_id in undelivered:
            self.tracker.settled(job_id, attempt)
            out += self.core.undelivered(job_id, attempt, worker_id, now)
        return out

    async def run_pass(self) -> PassResult:
        """One scheduling pass; see the module docstring."""
        self.timings.start()
        messages, self._messages = self._messages, []
        now = self.clock()
        inbox = self._decode(messages)
        transitions, self._pending_transitions = self._pending_transitions, []
        inbox.cancels += self._cancels_at_start
        self._cancels_at_start = []
        reports, results = self._feed_reports(inbox, now)
        transitions += reports
        self._hear(inbox, now)
        expired, gone = self._expire_leases(now)
        transitions += expired
        try:
            transitions += await self._take_in(inbox, now)
        except Exception:
            log.exception("could not read new jobs", extra={"action": "scheduler.read_failed"})
        sends: list[SendCancel] = []
        for job_id in inbox.cancels:
            decided = self.core.cancel(job_id, now)
            transitions += decided.transitions
            if decided.send is not None:
                sends.append(decided.send)
        transitions += self.core.tick(now)
        placements = self.core.plan(now)
        transitions += self._settle_undelivered(now)
        self.timings.mark("decide")
        try:
            published = await self._commit(transitions, placements, results, inbox, gone, now)
        except Exception:
            log.exception(
                "scheduling pass failed; rebuilding from the database",
                extra={"action": "scheduler.pass_failed"},
            )
            for message in messages:
                if not message.settled:
                    await message.nack(requeue=True)
            await asyncio.sleep(0.5)
            await self.rebuild()
            return PassResult()
        self.timings.mark("encode")
        self.failpoints.hit("after_commit_before_publish")
        outgoing = published + self._cancel_messages(sends)
        if self._publishing is not None:
            if outgoing:
                await self._publishing.put(outgoing)  # waits only when publishing lags
        else:  # a pass run on its own (benchmarks, tests): publish inline
            outgoing, self._outbox = self._outbox + outgoing, []
            self._outbox += await self._publish(outgoing)
            self.failpoints.hit("after_publish_before_ack")
        if self._to_republish:
            todo, self._to_republish = self._to_republish, []
            await self._republish(todo)
        self.timings.mark("publish")
        self.monitor.record(transitions, inbox.beats.values())
        for message in messages:
            if not message.settled:
                await message.ack()
        self.timings.mark("ack")
        self.timings.finish()
        self.passes += 1
        return PassResult(transitions=len(transitions), dispatched=len(placements))

    # -- writing and publishing -----------------------------------------------------------
    async def _commit(
        self,
        transitions: list[Transition],
        placements: list[Placement],
        results: dict[uuid.UUID, Any],
        inbox: Inbox,
        gone: list[str],
        now_f: float,
    ) -> list[tuple[str, bytes]]:
        now = dt(now_f)
        assert now is not None
        writes = plan_writes(transitions, placements, now, results)
        attempts = self._attempt_writes(inbox, transitions, now_f)
        for attempt in range(1, 4):
            try:
                won, started = await self._write(
                    writes, placements, attempts, inbox, transitions, gone, now_f
                )
                self.timings.mark("write")
                break
            except Exception as exc:
                if attempt == 3 or not is_retryable(exc):
                    raise
                log.warning(
                    "pass transaction conflicted; retrying",
                    extra={"action": "scheduler.retry_write", "attempt": attempt},
                )
        for p in started:
            self.tracker.dispatched(p.job_id, p.attempt, p.worker_id, now_f)
        for p in placements:
            if p.job_id not in won:  # the API cancelled it first: release, do not dispatch
                self._lost.append((p.job_id, p.attempt, "cancelled before dispatch", Outcome.LOST))
        ran = {(f.job_id, f.attempt): f.finished_at - f.started_at for f in inbox.finished}
        return self._messages_for(writes, won, started, now_f, ran)

    async def _write(
        self,
        writes: dict[uuid.UUID, store.JobWrite],
        placements: list[Placement],
        attempts: _AttemptWrites,
        inbox: Inbox,
        transitions: list[Transition],
        gone: list[str],
        now_f: float,
    ) -> tuple[dict[uuid.UUID, Any], list[Placement]]:
        """The pass's one transaction. Rows are updated in id order, the order every writer
        uses, so concurrent writers queue rather than deadlock."""
        now = dt(now_f)
        assert now is not None
        ordered = sorted(writes.values(), key=lambda w: w.id)
        self.timings.mark("plan")
        if self._pass_sql is not None:  # PostgreSQL: the whole pass as one statement
            opens = {p.job_id for p in placements}
            params = pass_params(
                ordered,
                opens,
                attempts.closes,
                self._worker_rows(inbox, transitions, now_f),
                gone,
                now,
                attempts.drops,
                attempts.releases,
            )
            won = await self._pass_sql.write(params)
            return won, [p for p in placements if p.job_id in won]
        async with self.engine.begin() as conn:
            won = await store.apply(conn, ordered, now)
            await store.drop_attempts(conn, attempts.drops)
            started = [p for p in placements if p.job_id in won]
            await store.insert_attempts(
                conn,
                [
                    {
                        "job_id": p.job_id,
                        "attempt": p.attempt,
                        "worker_id": p.worker_id,
                        "cpu_units": p.cpu_units,
                        "memory_mb": p.memory_mb,
                        "started_at": now,
                    }
                    for p in started
                ],
            )
            await store.finish_attempts(conn, attempts.closes)
            await store.release_attempts(conn, attempts.releases, now)
            await store.upsert_workers(conn, self._worker_rows(inbox, transitions, now_f))
            await store.mark_workers(conn, gone, WorkerState.OFFLINE.value)
        return won, started

    def _attempt_writes(
        self, inbox: Inbox, transitions: list[Transition], now: float
    ) -> _AttemptWrites:
        """The pass's writes of attempt rows: closes, releases of held capacity, deletes."""
        rows = [
            {
                "b_job_id": f.job_id,
                "b_attempt": f.attempt,
                "b_started_at": f.started_at,
                "b_finished_at": f.finished_at,
                "b_duration": (f.finished_at - f.started_at).total_seconds(),
                "b_outcome": f.outcome.value,
                "b_error": f.error,
                "b_result": f.result if f.outcome is Outcome.SUCCEEDED else None,
                "b_released_at": f.finished_at if f.released else None,
            }
            for f in inbox.finished
        ]
        reported = {(f.job_id, f.attempt) for f in inbox.finished}
        for t in transitions:  # attempts the scheduler ended itself (lost, handed back)
            if t.outcome is not None and (t.job_id, t.attempts) not in reported:
                rows.append(
                    {
                        "b_job_id": t.job_id,
                        "b_attempt": t.attempts,
                        "b_started_at": None,
                        "b_finished_at": dt(now),
                        "b_duration": None,
                        "b_outcome": t.outcome.value,
                        "b_error": t.error,
                        "b_result": None,
                        "b_released_at": dt(now),
                    }
                )
        freed = self.core.take_freed_lingering()
        closing = {(r["b_job_id"], r["b_attempt"]): r for r in rows}
        releases = []
        for key in freed:  # a row closed in this pass is released by its close (one update)
            if key in closing:
                closing[key]["b_released_at"] = dt(now)
            else:
                releases.append(key)
        return _AttemptWrites(rows, releases, _given_back(transitions))

    def _worker_rows(
        self, inbox: Inbox, transitions: list[Transition], now: float
    ) -> list[dict[str, Any]]:
        counts = self._worker_outcomes  # kept until the worker's next heartbeat row
        for t in transitions:
            if t.worker_id and t.outcome is not None:
                ok = t.to_status is JobStatus.COMPLETED
                counts[(t.worker_id, "ok" if ok else "bad")] += 1
        rows = []
        for beat in inbox.beats.values():
            busy = bool(beat.running)
            state = (
                WorkerState.OFFLINE
                if beat.stopped
                else (
                    WorkerState.DRAINING
                    if beat.draining
                    else WorkerState.BUSY
                    if busy
                    else WorkerState.IDLE
                )
            )
            rows.append(
                {
                    "id": beat.worker_id,
                    "hostname": beat.hostname,
                    "cpu_units": beat.cpu_units,
                    "memory_mb": beat.memory_mb,
                    "state": state.value,
                    "job_types": beat.job_types,
                    "started_at": beat.started_at,
                    "last_heartbeat": beat.ts,
                    "draining": beat.draining,
                    "jobs_succeeded": counts.pop((beat.worker_id, "ok"), 0),
                    "jobs_failed": counts.pop((beat.worker_id, "bad"), 0),
                }
            )
        return rows

    def _messages_for(
        self,
        writes: dict[uuid.UUID, Any],
        won: dict[uuid.UUID, Any],
        started: list[Placement],
        now_f: float,
        ran: dict[tuple[uuid.UUID, int], timedelta] | None = None,
    ) -> list[tuple[str, bytes]]:
        now = dt(now_f)
        assert now is not None
        per_worker: dict[str, list[tuple[str, bytes]]] = {}
        for p in started:
            message = _dispatch(
                p.job_id, p.attempt, p.worker_id, won[p.job_id], now, self._incarnation(p.worker_id)
            )
            per_worker.setdefault(p.worker_id, []).append(message)
        out: list[tuple[str, bytes]] = []
        for worker_id, messages in per_worker.items():  # one message per worker per pass
            out += topology.batched(topology.dispatch_batch_key(worker_id), messages)
        events = []
        for job_id, w in writes.items():
            if job_id not in won:
                continue
            status = JobStatus(w.status)
            batch_id = (
                self._batch_of.pop(job_id, None)
                if status in FINAL_STATUSES
                else self._batch_of.get(job_id)
            )
            event = JobStatusEvent(
                job_id=job_id,
                status=status,
                attempt=w.attempts,
                ts=now,
                batch_id=batch_id,
                worker_id=w.worker_id,
                reason=w.reason,
                error=w.error,
                job_type=won[job_id]["type"],
                **self._timings(job_id, w, now_f, ran or {}),
            )
            events.append((topology.status_key(job_id), event.dumps()))
        return out + events  # batched when published (see _publish)

    def _timings(
        self, job_id: uuid.UUID, w: Any, now: float, ran: dict[tuple[uuid.UUID, int], timedelta]
    ) -> dict[str, float]:
        """Metrics fields of a status event (issue 4): wait before the first start, and how
        long the attempt that just ended ran (as its worker measured it)."""
        out: dict[str, float] = {}
        job = self.core.state.jobs.get(job_id)
        if w.status == JobStatus.RUNNING.value and w.attempts == 1 and job is not None:
            out["queued_seconds"] = max(0.0, now - job.created_at)
        took = ran.get((job_id, w.from_attempts))
        if w.from_status == JobStatus.RUNNING.value and took is not None:
            out["run_seconds"] = took.total_seconds()
        return out

    def _incarnation(self, worker_id: str) -> str | None:
        worker = self.core.state.workers.get(worker_id)
        return worker.incarnation if worker is not None else None

    @staticmethod
    def _cancel_messages(sends: list[SendCancel]) -> list[tuple[str, bytes]]:
        return [
            (
                topology.cancel_key(s.worker_id, s.job_id),
                CancelJob(job_id=s.job_id, attempt=s.attempt, reason=s.reason).dumps(),
            )
            for s in sends
        ]

    async def _publish(self, messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Publish a pass's dispatches (mandatory) and its other messages at once, each waiting
        for its confirms; returns the dispatches the broker did not take (to publish again)."""
        dispatches = [m for m in messages if m[0].startswith("job.dispatch.")]
        events = [m for m in messages if _is_event(m)]
        others = [m for m in messages if not m[0].startswith("job.dispatch.") and not _is_event(m)]
        others += topology.batched(topology.STATUS_BATCH, events)
        failed: list[tuple[str, bytes]] = []

        async def send_dispatches() -> None:
            if not await self._send_dispatches(dispatches):
                log.warning(
                    "could not publish dispatches; retrying",
                    extra={"action": "scheduler.publish_failed"},
                )
                failed.extend(dispatches)

        async def send_others() -> None:
            try:
                await self.broker.publish_many(others)
            except BrokerError:
                log.warning(
                    "could not publish status events",
                    extra={"action": "scheduler.publish_failed"},
                )

        await asyncio.gather(send_dispatches(), send_others())
        return failed

    async def _publisher(self, queue: asyncio.Queue[list[tuple[str, bytes]]]) -> None:
        """Publishes what passes committed, in pass order, while the next pass runs: a pass no
        longer waits for RabbitMQ's confirms. Dispatches the broker refused are retried here
        (with a growing pause) before anything newer; the bounded queue makes passes wait when
        publishing lags. A crash loses nothing: dispatches are committed first and re-published
        at start-up, and fenced reports make a replay harmless.

        Status events wait up to ``scheduler_event_flush_seconds`` to go out with those of the
        next passes in one message (dispatches and cancels never wait): a pass per job, as in a
        chain, otherwise costs one broker message per job for the live stream alone."""
        delay = 0.1
        linger = self.settings.scheduler_event_flush_seconds
        loop = asyncio.get_running_loop()
        flush_at: float | None = None
        while True:
            messages: list[tuple[str, bytes]] = []
            taken = 0
            if flush_at is None or not queue.empty():
                messages = await queue.get()
                taken = 1
            elif (left := flush_at - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    messages = await asyncio.wait_for(queue.get(), left)
                    taken = 1
            while not queue.empty():
                messages += queue.get_nowait()
                taken += 1
            self._held_events += [m for m in messages if _is_event(m)]
            messages = [m for m in messages if not _is_event(m)]
            if self._held_events and flush_at is None:
                flush_at = loop.time() + linger
            if flush_at is not None and (
                loop.time() >= flush_at or len(self._held_events) >= EVENTS_HELD_MAX
            ):
                messages += self._held_events
                self._held_events, flush_at = [], None
            published = bool(messages)
            while messages:
                messages = await self._publish(messages)
                if messages:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            delay = 0.1
            for _ in range(taken):
                queue.task_done()
            if published:
                self.failpoints.hit("after_publish_before_ack")
            if self._lost or self._undelivered:
                self._wake.set()  # unroutable dispatches: the next pass settles them

    async def _send_dispatches(
        self, messages: list[tuple[str, bytes]], *, republish: bool = False
    ) -> bool:
        """Publish dispatches (mandatory); those no queue took are settled (see
        :meth:`_unroutable`). False when the broker refused them (to be published again)."""
        try:
            await self.broker.publish_many(messages, mandatory=True)
        except Unroutable as exc:
            self._unroutable(exc, messages, republish=republish)
        except BrokerError:
            return False
        return True

    def _unroutable(
        self, exc: Unroutable, dispatches: list[tuple[str, bytes]], *, republish: bool
    ) -> None:
        """No queue took these dispatches: the worker's queue is gone, and so is the worker.
        A first dispatch reached nobody, so it was no attempt (:meth:`Scheduler.undelivered`);
        a re-published one may have run there before the worker went: that attempt is lost."""
        keys = set(exc.routing_keys)
        undelivered = [
            Dispatch.model_validate(item)
            for key, body in dispatches
            if key in keys
            for item in unpack(body)
        ]
        for d in undelivered:
            log.warning(
                "dispatch unroutable: the worker's queue is gone",
                extra={
                    "action": "scheduler.unroutable",
                    "job_id": str(d.job_id),
                    "attempt": d.attempt,
                    "worker": d.worker_id,
                },
            )
            if republish:
                why = f"worker {d.worker_id} is gone (its queue no longer exists)"
                self._lost.append((d.job_id, d.attempt, why, Outcome.LOST))
            else:
                self._undelivered.append((d.job_id, d.attempt, d.worker_id))

    async def _republish_running(self) -> None:
        """After a restart, dispatches decided but maybe never published go out again; workers
        ignore an attempt they already hold."""
        todo, self._redispatch = self._redispatch, []
        await self._republish(todo)

    async def _republish(self, todo: list[tuple[uuid.UUID, int, str]]) -> None:
        """Publish again the dispatches of these running attempts (job, attempt, worker)."""
        if not todo:
            return
        log.info(
            "re-publishing dispatches",
            extra={"action": "scheduler.republish", "dispatches": len(todo)},
        )
        async with self.engine.connect() as conn:
            rows = await store.dispatch_fields(conn, [job_id for job_id, _, _ in todo])
        now = dt(self.clock())
        assert now is not None
        messages = [
            _dispatch(job_id, attempt, worker_id, rows[job_id], now, self._incarnation(worker_id))
            for job_id, attempt, worker_id in todo
            if job_id in rows
        ]
        if not await self._send_dispatches(messages, republish=True):
            log.warning(
                "could not re-publish; the next heartbeats will tell",
                extra={"action": "scheduler.publish_failed"},
            )

    # -- monitoring (issue 4) -------------------------------------------------------------
    async def _monitoring(self) -> None:
        """Publish ``job.monitoring.queue`` and ``job.monitoring.resource`` every
        ``monitor_seconds`` (see :mod:`scheduler.monitoring`); never on the pass's path.
        Started with each leadership, so finished counts are re-read from the database."""
        self.monitor.counted = False
        while True:
            try:
                if not self.monitor.counted:
                    async with self.engine.connect() as conn:
                        self.monitor.start_count(await store.count_finished(conn))
                await self.publish_monitoring()
            except Exception:
                log.warning(
                    "could not publish monitoring",
                    exc_info=True,
                    extra={"action": "scheduler.monitoring_failed"},
                )
            await asyncio.sleep(self.settings.monitor_seconds)

    async def publish_monitoring(self) -> None:
        now = self.clock()
        state = self.core.state
        queue = queue_snapshot(state.jobs.values(), self.monitor.finished, now)
        resources = resource_snapshot(state.workers.values(), self.monitor.beats, now)
        await self.broker.publish_many(
            [
                (topology.MONITORING_QUEUE, queue.dumps()),
                (topology.MONITORING_RESOURCE, resources.dumps()),
            ]
        )


def _given_back(transitions: list[Transition]) -> list[tuple[uuid.UUID, int]]:
    """Attempt rows to delete: dispatches that reached no worker were no attempts."""
    return [(t.job_id, t.attempts) for t in transitions if t.to_attempts is not None]


def _is_event(message: tuple[str, bytes]) -> bool:
    return message[0].startswith("job.status.")


def _dispatch(
    job_id: uuid.UUID,
    attempt: int,
    worker_id: str,
    row: Any,
    now: datetime,
    worker_incarnation: str | None,
) -> tuple[str, bytes]:
    """The dispatch of one attempt, from the job's row (type, name, payload, resources,
    timeout), with its routing key."""
    message = Dispatch(
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        job_type=row["type"],
        name=row["name"],
        payload=row["payload"],
        cpu_units=row["cpu_units"],
        memory_mb=row["memory_mb"],
        timeout_seconds=row["timeout_seconds"],
        dispatched_at=now,
        incarnation=worker_incarnation,
    )
    return topology.dispatch_key(worker_id, job_id), message.dumps()
