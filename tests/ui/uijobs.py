"""Job types the dashboard tests need beside the built-in ones (``--import tests.ui.uijobs``)."""

from __future__ import annotations

import asyncio

import smartq
from worker.context import JobContext


@smartq.job("drip")
async def drip(ctx: JobContext) -> dict[str, int]:
    """``{"lines": n, "per_second": r, "warn_every": k, "progress_every": p}``: n lines at about
    r a second, every k-th a warning and a progress report every p lines, so a reader can
    watch a log grow while the job's page redraws around it."""
    lines = int(ctx.payload.get("lines", 100))
    rate = float(ctx.payload.get("per_second", 100))
    warn_every = int(ctx.payload.get("warn_every", 0))
    progress_every = int(ctx.payload.get("progress_every", 0))
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    for i in range(1, lines + 1):
        if warn_every and i % warn_every == 0:
            ctx.log.warning("line %d of %d: a warning", i, lines)
        else:
            ctx.log.info("line %d of %d", i, lines)
        if progress_every and i % progress_every == 0:
            ctx.progress(i / lines, f"{i} lines")
        if i % per_tick == 0:
            await asyncio.sleep(tick)
    return {"lines": lines}


@smartq.job("ui_fan_out")
def ui_fan_out(ctx: JobContext) -> dict[str, str]:
    """Submits two ``noop`` children and a continuation after them (the DAG's dashed edges)."""
    for i in range(2):
        ctx.submit("noop", key=f"child{i}")
    then = ctx.continue_with("noop", key="then")
    return {"continuation": str(then.id)}
