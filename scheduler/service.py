"""The scheduler process: a thin loop around the pure core.

Each pass: take the messages that arrived (:mod:`scheduler.inbox`) → feed the core (reports,
heartbeats, lease expiries from :mod:`scheduler.liveness`, new jobs, cancels, due timers) →
ask it for placements → write every transition in one transaction (:mod:`scheduler.pass_store`)
→ hand dispatches, cancels and status events (:mod:`scheduler.encode`) to the publisher
(:mod:`scheduler.publisher`) → ack the messages. The scheduler wakes on messages and on its
next timer; a slow poll is only the fallback for lost hints. While leading, the publisher and
the side tasks (probe, monitoring, pass statistics, vacuuming, cron ticks, retention's
sweep, batch callbacks) run in one ``TaskGroup``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from models.enums import FINAL_STATUSES, Outcome
from scheduler import encode, intake, spawns, store, upkeep
from scheduler.breaker import Change
from scheduler.core import Scheduler
from scheduler.durations import Durations
from scheduler.feed import Feed
from scheduler.flowconfig import (
    FlowConfig,
    announce,
    breaker_rows,
    default_policy,
    restore_breakers,
)
from scheduler.inbox import Inbox, decode
from scheduler.leader import Leadership, LeadershipLost, until_lost
from scheduler.liveness import Liveness
from scheduler.monitoring import Monitor
from scheduler.pass_sql import PassConnection
from scheduler.pass_store import PassStore, Won, write_retrying
from scheduler.publisher import Publisher
from scheduler.reconcile import DispatchTracker
from scheduler.rows import dt
from scheduler.sidework import SideWork
from scheduler.sqlite_pass import SqlitePassStore
from scheduler.timings import PassTimings
from scheduler.values import Placement, SendCancel, Transition
from scheduler.writes import plan_pass
from smartq import heap, topology
from smartq.broker import Broker, IncomingMessage, ack_all
from smartq.db import psycopg_dsn
from smartq.failpoints import Failpoints
from smartq.settings import Settings

log = logging.getLogger(__name__)
#: Jobs one read of new jobs takes at most.
READ_LIMIT = 50_000


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
        pass_store: PassStore | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = broker
        self.clock = clock
        self.core = self._new_core()
        self.failpoints = Failpoints(settings.failpoints)
        heard = max(3 * settings.heartbeat_seconds, 1.0)
        self.liveness = Liveness(settings.worker_lease_seconds, heard, clock())
        self.feed = Feed(self.liveness, DispatchTracker(grace=heard))
        self.publisher = Publisher(
            broker,
            settings.scheduler_event_flush_seconds,
            on_published=lambda: self.failpoints.hit("after_publish_before_ack"),
            on_unrouted=self._wake_up,
        )
        if pass_store is None:
            postgres = engine.dialect.name == "postgresql"
            pass_store = PassConnection(psycopg_dsn(engine.url)) if postgres else None
        self.store: PassStore = pass_store or SqlitePassStore(engine)
        self.intake = intake.Intake(self.store, engine, settings.scheduler_poll_seconds)
        self.flow_config = FlowConfig(settings)
        self.monitor = Monitor()
        self.timings = PassTimings()
        self.worker_rows = encode.WorkerRows()
        self.passes = 0
        self._messages: list[IncomingMessage] = []
        self._wake = asyncio.Event()
        self._batch_of: dict[uuid.UUID, uuid.UUID] = {}
        self._pending_transitions: list[Transition] = []
        self._cancels_at_start: list[uuid.UUID] = []
        self._redispatch: list[tuple[uuid.UUID, int, str]] = []
        self._breaker_changes: list[Change] = []
        #: What this process's cron ticks made, for the next pass (as a hint would say it).
        self._own_submitted: list[uuid.UUID] = []
        self.side = SideWork(
            engine, settings, clock, self.failpoints, self._ticked, self.monitor.forget
        )

    def _new_core(self, durations: Durations | None = None) -> Scheduler:
        """A fresh core; ``durations``: what an earlier one learned (a rebuild keeps it)."""
        core = Scheduler(
            lookahead=self.settings.scheduler_lookahead,
            reserve_after=self.settings.scheduler_reserve_after_seconds,
            jitter=self.settings.retry_jitter,
            rng=random.Random(),
            breaker_policy=default_policy(self.settings),
            tenant_max_running=self.settings.tenant_max_running,
            backfill=self.settings.scheduler_backfill,
            prediction_default=self.settings.prediction_default_seconds,
            rank_by_path=self.settings.scheduler_critical_path_order,
        )
        if durations is not None:
            core.state.durations = durations
        return core

    # -- start-up -------------------------------------------------------------------------
    async def rebuild(self) -> None:
        """Load every active job and known worker into a fresh core."""
        self.core = self._new_core(self.core.state.durations)
        now = self.clock()
        restored = await intake.restore(self.engine, self.core, self.liveness, now)
        self._pending_transitions = restored.transitions
        self._batch_of = restored.batch_of
        self._cancels_at_start = restored.cancels
        self._redispatch = restored.running
        async with self.engine.connect() as conn:
            await self.flow_config.read(conn)
            await restore_breakers(conn, self.core)
            if not self.core.state.durations.runs:
                self.core.state.durations.seed(await store.recent_runs(conn))
        self.flow_config.changed = True
        self.flow_config.apply(self.core, now)
        old = self.feed.tracker
        self.feed.tracker = tracker = DispatchTracker(old.grace, old.max_republish)
        for job_id, attempt, worker_id in self._redispatch:
            tracker.dispatched(job_id, attempt, worker_id, now)
        heap.freeze()  # full collections walked the whole state: 100 ms pauses inside passes
        log.info(
            "scheduler state rebuilt",
            extra={
                "action": "scheduler.rebuild",
                "jobs": len(self.core.state.jobs),
                "workers": restored.workers,
            },
        )

    async def deliver(self, message: IncomingMessage) -> None:
        """The inbox consumer: a message for the next pass."""
        self._messages.append(message)
        self._wake.set()

    def poll_now(self) -> None:
        """Make the next pass run the fallback poll for pending jobs."""
        self.intake.poll_now()

    def _wake_up(self) -> None:
        self._wake.set()

    def _ticked(self, submitted: list[uuid.UUID], cancels: list[uuid.UUID]) -> None:
        """A cron tick's new jobs and the previous run's jobs to cancel, for the next pass."""
        self._own_submitted += submitted
        self._cancels_at_start += cancels
        self._wake.set()

    # -- leading --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set, while this process leads (see scheduler.leader);
        wait as a hot standby while another scheduler does."""
        leadership = Leadership(self.engine, lease_seconds=self.settings.leader_lease_seconds)
        try:
            while not stop.is_set():
                if not await leadership.acquire(stop):
                    return
                self.store.epoch = leadership.epoch
                try:
                    await self._lead(stop, leadership)
                finally:
                    self.store.epoch = None
                await leadership.release()
        finally:
            await leadership.release()

    async def _lead(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Rebuild, consume the inbox and run passes until stopped or no longer leader."""
        await self.rebuild()
        self._messages = []
        self.liveness.restart(self.clock())
        queue = topology.scheduler_queue(self.broker.exchange)
        consumer = await self.broker.consume(queue, self.deliver, prefetch=10_000)
        try:
            async with asyncio.TaskGroup() as group:
                side = self._side_tasks(group)
                side.append(group.create_task(leadership.keep(), name="scheduler-lease"))
                try:
                    await self._republish(self._redispatch)
                    self._redispatch = []
                    await until_lost(self._passes(stop, leadership), leadership.lost)
                finally:
                    await self.publisher.drain()  # what passes committed goes out first
                    for task in side:
                        task.cancel()
        finally:
            await consumer.cancel()  # unacked inputs go back to the queue for the next leader
            await self.store.close()

    def _side_tasks(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        vacuum = self.store.dsn if isinstance(self.store, PassConnection) else None
        return [
            group.create_task(self.publisher.run(), name="scheduler-publisher"),
            group.create_task(self._monitoring(), name="scheduler-monitoring"),
            *self.side.start(
                group,
                broker=self.broker,
                flow_config=self.flow_config,
                wake=self._wake_up,
                timings=self.timings,
                vacuum_dsn=vacuum,
            ),
        ]

    async def _passes(self, stop: asyncio.Event, leadership: Leadership) -> None:
        while not stop.is_set():
            if not await leadership.still_leader():
                return
            await self.run_pass()
            await self._sleep(stop)
        if self._messages:  # what arrived before the stop (a goodbye) is settled now
            log.info(
                "settling the last messages before stopping",
                extra={"action": "scheduler.last_pass", "messages": len(self._messages)},
            )
            await self.run_pass()

    async def _sleep(self, stop: asyncio.Event) -> None:
        if self._messages or self.feed.lost or self.publisher.pending():
            await asyncio.sleep(0)
            return
        now = self.clock()
        due = [self.intake.next_poll, now + self.settings.scheduler_poll_seconds]
        wakeup = self.core.next_wakeup()
        if wakeup is not None:
            due.append(wakeup)
        waiter = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper},
                timeout=max(0.0, min(due) - now),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
            stopper.cancel()
        self._wake.clear()

    # -- one pass -------------------------------------------------------------------------
    async def run_pass(self) -> PassResult:
        """One scheduling pass; see the module docstring."""
        self.timings.start()
        messages, self._messages = self._messages, []
        now = self.clock()
        inbox = decode(messages)
        try:
            transitions, placements, sends, gone = await self._decide(inbox, now)
        except Exception:  # the core may be half-changed: start again from the database
            await self._recover(messages)
            return PassResult()
        self.timings.mark("decide")
        try:
            outgoing = await self._commit(transitions, placements, inbox, gone, now)
        except LeadershipLost:  # nothing was written: the inputs go to the new leader
            for message in messages:
                if not message.settled:
                    await message.nack(requeue=True)
            raise
        except Exception:
            await self._recover(messages)
            return PassResult()
        self.timings.mark("encode")
        self.failpoints.hit("after_commit_before_publish")
        ends_a_job = any(t.to_status in FINAL_STATUSES for t in transitions)
        await self.publisher.put(outgoing + encode.cancels(sends), ends_a_job=ends_a_job)
        if self.feed.to_republish:
            todo, self.feed.to_republish = self.feed.to_republish, []
            await self._republish(todo)
        self.timings.mark("publish")
        self.monitor.record(transitions, inbox.beats.values())
        await ack_all(messages)  # one consumer's, every earlier delivery settled
        self.timings.mark("ack")
        self.timings.finish()
        self.passes += 1
        return PassResult(transitions=len(transitions), dispatched=len(placements))

    async def _decide(
        self, inbox: Inbox, now: float
    ) -> tuple[list[Transition], list[Placement], list[SendCancel], list[str]]:
        """Feed the core what the pass brought, then ask it for placements."""
        transitions, self._pending_transitions = self._pending_transitions, []
        inbox.cancels += self._cancels_at_start
        self._cancels_at_start = []
        inbox.submitted += self._own_submitted
        self._own_submitted = []
        if inbox.spawned:
            inbox.submitted += await spawns.insert_spawned(
                self.engine, inbox.spawned, datetime.fromtimestamp(now, UTC)
            )
        self.flow_config.heard(inbox.beats.values())
        self.flow_config.apply(self.core, now)
        transitions += self.feed.events(self.core, inbox, now)
        if inbox.probed and self.liveness.probe_back(now):
            log.warning(
                "the broker path is back; leases restart", extra={"action": "scheduler.broker_back"}
            )
        expired, gone = self.feed.leases(self.core, now)
        transitions += expired
        try:
            transitions += await self.intake.take_in(self.core, inbox, self._batch_of, now)
        except Exception:
            log.exception("could not read new jobs", extra={"action": "scheduler.read_failed"})
        cancelled, sends = self.feed.cancels(self.core, inbox.cancels, now)
        transitions += cancelled + self.core.tick(now)
        placements = self.core.plan(now)
        # After the plan: an undelivered dispatch's job must not be placed in this pass.
        transitions += self.feed.unrouted(self.core, self.publisher.take_unrouted(), now)
        return transitions, placements, sends, gone

    async def _recover(self, messages: list[IncomingMessage]) -> None:
        log.exception(
            "scheduling pass failed; rebuilding from the database",
            extra={"action": "scheduler.pass_failed"},
        )
        for message in messages:
            if not message.settled:
                await message.nack(requeue=True)
        await asyncio.sleep(0.5)
        await self.rebuild()

    # -- writing ----------------------------------------------------------------------------
    async def _commit(
        self,
        transitions: list[Transition],
        placements: list[Placement],
        inbox: Inbox,
        gone: list[str],
        now: float,
    ) -> list[encode.Message]:
        """Write the pass, then its messages: dispatches of the placements that won, a status
        event per job that moved."""
        self.worker_rows.count(transitions)
        self._breaker_changes = self.core.take_breaker_changes()
        writes, write = plan_pass(
            transitions,
            placements,
            inbox.finished,
            self.core.take_freed_lingering(),
            self.worker_rows.rows(inbox.beats.values()),
            gone,
            now,
            breaker_rows(self.core, self._breaker_changes),
        )
        self.timings.mark("plan")
        won = await write_retrying(self.store, write)
        self.timings.mark("write")
        started = [p for p in placements if p.job_id in won]
        for p in started:
            self.feed.tracker.dispatched(p.job_id, p.attempt, p.worker_id, now)
        for p in placements:
            if p.job_id not in won:  # the API cancelled it first: release, do not dispatch
                why = "cancelled before dispatch"
                self.feed.lost.append((p.job_id, p.attempt, why, Outcome.LOST))
        ran = {(f.job_id, f.attempt): f.finished_at - f.started_at for f in inbox.finished}
        out = self._messages_for(writes, won, started, now, ran)
        pauses = self.flow_config.take_pause_events()
        return out + announce(self.core, self._breaker_changes) + pauses

    def _messages_for(
        self,
        writes: dict[uuid.UUID, Any],
        won: Won,
        started: list[Placement],
        now: float,
        ran: dict[tuple[uuid.UUID, int], timedelta],
    ) -> list[encode.Message]:
        at = dt(now)
        assert at is not None
        out = encode.dispatches(started, won, self._incarnation, at)
        jobs = self.core.state.jobs
        return out + encode.status_events(writes, won, self._batch_of, jobs, now, ran)

    def _incarnation(self, worker_id: str) -> str | None:
        worker = self.core.state.workers.get(worker_id)
        return worker.incarnation if worker is not None else None

    async def _republish(self, todo: list[tuple[uuid.UUID, int, str]]) -> None:
        await self.publisher.republish(self.engine, todo, self._incarnation, self.clock())

    async def _monitoring(self) -> None:
        """Started with each leadership, so finished counts are re-read from the database."""
        await upkeep.monitoring(
            self.engine,
            self.broker,
            self.monitor,
            lambda: self.core.state,
            self.clock,
            self.settings.monitor_seconds,
            self.settings.forecast_jobs,
            lambda: self._batch_of,
        )
