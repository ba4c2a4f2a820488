"""What the leading scheduler runs beside its passes, each on a timer of its own and never
inside a pass: the broker probe, the admins' flow-control rows, cron ticks, retention's sweep,
batch callbacks, pass statistics and (on PostgreSQL with autovacuum off) vacuuming. Started in
the leadership's ``TaskGroup`` and cancelled with it, so a standby runs none of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler import maintenance, upkeep
from scheduler.callbacks import Callbacks
from scheduler.flowconfig import FlowConfig, poll
from scheduler.sweep import Sweeper
from scheduler.ticks import Ticks
from scheduler.timings import PassTimings
from smartq.broker import Broker
from smartq.failpoints import Failpoints
from smartq.settings import Settings

#: Told of what a cron tick made: its new jobs, and jobs to cancel.
OnTicked = Callable[[list[uuid.UUID], list[uuid.UUID]], None]
#: Told how many finished jobs of each status retention deleted.
OnDeleted = Callable[[Mapping[str, int]], None]


class SideWork:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: Callable[[], float],
        failpoints: Failpoints,
        on_ticked: OnTicked,
        on_deleted: OnDeleted,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.ticks = Ticks(engine, clock, settings.schedules_poll_seconds, on_ticked, failpoints)
        self.sweeper = Sweeper(engine, settings, clock, on_deleted)
        self.callbacks = Callbacks(engine, settings, clock, failpoints)

    def start(
        self,
        group: asyncio.TaskGroup,
        *,
        broker: Broker,
        flow_config: FlowConfig,
        wake: Callable[[], None],
        timings: PassTimings,
        vacuum_dsn: str | None,
    ) -> list[asyncio.Task[None]]:
        """Every side task, in ``group``; ``vacuum_dsn``: PostgreSQL's, to vacuum (or None)."""
        s = self.settings
        work = {
            "scheduler-flow-config": poll(self.engine, flow_config, wake),
            "scheduler-probe": upkeep.probe(broker, self.clock, s.heartbeat_seconds),
            "scheduler-cron-ticks": self.ticks.run(),
            "scheduler-retention": self.sweeper.run(),
            "scheduler-callbacks": self.callbacks.run(),
            "scheduler-pass-stats": upkeep.pass_stats(timings, s.scheduler_stats_seconds),
        }
        if vacuum_dsn is not None:
            work["scheduler-vacuum"] = maintenance.keep_vacuumed(
                vacuum_dsn, s.scheduler_vacuum_seconds
            )
        return [group.create_task(coro, name=name) for name, coro in work.items()]
