"""A pass that fails while deciding (before it writes) is recovered like one that fails while
writing: its inputs go back to the queue and the state is rebuilt from the database. It used
to end the scheduler (a log line with a reserved field did, on every pause)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.system import System


async def test_a_pass_that_fails_while_deciding_is_recovered(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = system.start_scheduler()
    system.start_worker("w1", cpu_units=2, memory_mb=2048)
    await system.wait_worker("w1")
    real = scheduler.flow_config.apply
    failures = []

    def apply_once_broken(core: Any, now: float) -> None:
        if not failures:
            failures.append(now)
            raise RuntimeError("a bug in what the pass is told")
        real(core, now)

    monkeypatch.setattr(scheduler.flow_config, "apply", apply_once_broken)
    ids = [(await system.submit(type="noop"))["id"] for _ in range(3)]
    done = await system.wait_final(ids, timeout=20)
    assert failures and {j["status"] for j in done.values()} == {"completed"}
    assert not system.parts["scheduler"].task.done()
