"""A breaker seen from outside, on both backends: the row the scheduler keeps, the event on
the stream, the figures on /metrics and the reason a held job shows (issue 17)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.test_metrics import scrape
from tests.system import System

QUICK = {"breaker_min_attempts": 3, "breaker_cooldown_seconds": 60.0}


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.mark.system_settings(**QUICK)
async def test_an_open_breaker_is_kept_shown_and_counted(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4, memory_mb=2048)
    retry = {"max_attempts": 10, "initial_delay_seconds": 0.05, "backoff_multiplier": 1.0}
    ids = [
        (await system.submit(type="flaky", payload={"fail_times": -1}, retry=retry))["id"]
        for _ in range(3)
    ]

    async def opened() -> bool:
        async with system.engine.connect() as conn:
            row = await conn.execute(text("SELECT state FROM breakers WHERE job_type = 'flaky'"))
            return row.scalar() == "open"

    await until(opened)
    figures: dict[Any, float] = {}

    held = ("smartq_jobs_held", (("gate", "breaker"), ("name", "flaky")))

    async def counted() -> bool:  # the snapshot comes every monitor_seconds
        figures.update(await scrape(system))
        return figures.get(held) == 3  # every job: none is left retrying or running

    await until(counted)
    assert figures.get(("smartq_breaker_state", (("type", "flaky"),))) == 2
    key = ("smartq_breaker_transitions_total", (("to", "open"), ("type", "flaky")))
    assert figures.get(key) == 1
    got = (await system.client.get(f"/jobs/{ids[0]}")).json()
    assert got["status"] == "ready"
    assert got["waiting_reason"].startswith("circuit open for type flaky since ")
    assert ", probe at " in got["waiting_reason"]
