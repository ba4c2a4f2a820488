"""Cron ticks, fired by the leading scheduler on a timer of their own (a side task of its
leadership, never inside a placement pass).

For each due schedule, one transaction: lock its row, decide with :func:`scheduler.cron.due`
from what the row says now, apply the overlap rule, insert each tick's run under the tick's
idempotency key and advance ``last_tick`` — so a scheduler killed mid-tick has either done
all of it or none, and the one that takes over fires exactly the ticks not yet fired. The new
jobs and the cancels of ``cancel_previous`` are then handed to the core's next pass in this
process (no broker round trip); the cancel marks are durable, for a takeover.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scheduler import cron, tick_store
from scheduler.cron import Catchup, Overlap
from smartq.failpoints import Failpoints

log = logging.getLogger(__name__)
#: Schedules one look takes at most (the rest at the next, at once).
BATCH = 100

#: Told of what a tick made: the new jobs, and jobs to cancel.
OnFired = Callable[[list[uuid.UUID], list[uuid.UUID]], None]


@dataclass
class _Outcome:
    values: dict[str, Any] = field(default_factory=dict)
    jobs: list[uuid.UUID] = field(default_factory=list)
    cancels: list[uuid.UUID] = field(default_factory=list)
    fired: int = 0
    skipped: int = 0


class Ticks:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float],
        poll_seconds: float,
        on_fired: OnFired,
        failpoints: Failpoints,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.on_fired = on_fired
        self.failpoints = failpoints
        self.leading_since = self._now()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def run(self) -> None:
        """Until cancelled: fire what is due, sleep until the next tick (or the poll)."""
        self.leading_since = self._now()
        try:
            async with self.engine.connect() as conn:
                left = await tick_store.marked_for_cancel(conn)
            if left:
                self.on_fired([], left)
        except Exception:
            log.exception("could not read runs left to cancel", extra={"action": "ticks.failed"})
        while True:
            wait = self.poll_seconds
            try:
                nxt = await self.check()
                if nxt is not None:
                    wait = min(wait, max(0.0, (nxt - self._now()).total_seconds()))
            except Exception:
                log.exception("cron ticks failed; trying again", extra={"action": "ticks.failed"})
            await asyncio.sleep(wait)

    async def check(self) -> datetime | None:
        """Fire every due schedule; the next tick of any schedule after that."""
        while True:
            now = self._now()
            async with self.engine.connect() as conn:
                ids = await tick_store.due_ids(conn, now, BATCH)
            for schedule_id in ids:
                await self.tick(schedule_id, now)
            if len(ids) < BATCH:
                break
        async with self.engine.connect() as conn:
            return await tick_store.next_due(conn)

    async def tick(self, schedule_id: uuid.UUID, now: datetime) -> None:
        async with self.engine.connect() as conn:
            async with conn.begin():
                row = await tick_store.locked(conn, schedule_id)
                if row is None or row["paused"] or row["next_fire_at"] is None:
                    return
                if row["next_fire_at"] > now:
                    return  # another scheduler (or a change) got there first
                out = await self._decide(conn, row, now)
                await tick_store.advance(conn, schedule_id, out.values)
                self.failpoints.hit("schedule_tick_before_commit")
            self.failpoints.hit("schedule_tick_after_commit")
        if out.jobs or out.cancels:
            self.on_fired(out.jobs, out.cancels)
        if out.fired or out.skipped:
            log.info(
                "schedule ticked",
                extra={
                    "action": "schedule.tick",
                    "schedule": str(schedule_id),
                    "fired": out.fired,
                    "skipped": out.skipped,
                },
            )

    async def _decide(self, conn: AsyncConnection, row: RowMapping, now: datetime) -> _Outcome:
        spec = cron.parse(row["cron"], row["timezone"])
        due = cron.due(
            spec,
            row["last_tick"],
            now,
            self.leading_since,
            Catchup(row["catchup"]),
            row["max_catchup"],
        )
        out = _Outcome()
        values = out.values
        values.update(last_tick=due.last_tick, next_fire_at=due.next_tick, updated_at=now)
        if due.missed is not None:
            first, last = due.missed
            values.update(
                last_skip=f"ticks {first.isoformat()} to {last.isoformat()} were missed while "
                f"no scheduler led (catchup {row['catchup']})",
                last_skip_at=now,
            )
        prev = (row["last_job_id"], row["last_batch_id"])
        active: bool | None = None
        overlap = Overlap(row["overlap"])
        for tick in due.fire:
            if overlap is not Overlap.ALLOW and prev != (None, None):
                if active is None:
                    active = await tick_store.run_active(conn, *prev)
                if active and overlap is Overlap.SKIP:
                    out.skipped += 1
                    what = f"job {prev[0]}" if prev[0] else f"batch {prev[1]}"
                    values.update(
                        last_skip=f"tick {tick.isoformat()} skipped: the previous run "
                        f"({what}) is still active (overlap skip)",
                        last_skip_at=now,
                    )
                    continue
                if active:
                    out.cancels += await tick_store.ask_cancel(conn, *prev, now)
            run = await tick_store.insert_run(conn, row, tick, now)
            if run.inserted:
                out.jobs += run.job_ids
                prev = (run.job_id, run.batch_id)
            else:  # fired already under this key: point at what that made
                prev = await tick_store.existing_run(conn, row, tick)
            out.fired += 1
            active = True
            values.update(last_fired_tick=tick, last_job_id=prev[0], last_batch_id=prev[1])
        values.update(runs=row["runs"] + out.fired, skipped=row["skipped"] + out.skipped)
        return out
