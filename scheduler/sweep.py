"""Retention's sweep: the leading scheduler deletes finished jobs past
``SMARTQ_JOB_RETENTION_DAYS``, on a timer of its own (a side task of its leadership, never
inside a pass), so exactly one process sweeps.

Every ``retention_sweep_seconds`` it runs :func:`models.deletes.delete_jobs` with the
cutoff of :func:`scheduler.retention.sweep_selection`: short transactions of
``retention_batch_size`` jobs, through the pool's connections (not the pass's own), at most
``retention_max_per_sweep`` jobs a sweep. The monitor's finished counts are told what went.
A failed sweep is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from models import deletes
from scheduler import retention
from smartq.settings import Settings

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: Callable[[], float],
        on_deleted: Callable[[Mapping[str, int]], None] = lambda _: None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.on_deleted = on_deleted

    async def sweep(self) -> deletes.Deleted | None:
        """One sweep now; what it deleted (None: retention is off)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        sel = retention.sweep_selection(now, self.settings.job_retention_days)
        if sel is None:
            return None
        budget = retention.Budget(
            self.settings.retention_batch_size, self.settings.retention_max_per_sweep
        )
        out = await deletes.delete_jobs(self.engine.begin, sel, budget)
        if out.total or out.lines:
            self.on_deleted(out.jobs)
            log.info(
                "deleted finished jobs past the retention age",
                extra={
                    "action": "retention.sweep",
                    "jobs": out.total,
                    "lines": out.lines,
                    "batches": out.batches,
                    "transactions": budget.steps,
                    "cutoff": sel.finished_before.isoformat() if sel.finished_before else None,
                    "more": out.more,
                },
            )
        return out

    async def run(self) -> None:
        """Until cancelled: sweep now, then every ``retention_sweep_seconds``."""
        if self.settings.job_retention_days <= 0:
            return
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception(
                    "retention sweep failed; trying again", extra={"action": "retention.failed"}
                )
            await asyncio.sleep(self.settings.retention_sweep_seconds)
