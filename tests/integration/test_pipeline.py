"""Jobs submitted over REST run to the end through the real scheduler, workers and logger, on
PostgreSQL + RabbitMQ and on the embedded SQLite + in-process broker."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from tests.system import System


def node(key: str, deps: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"key": key, "type": kw.pop("type", "noop"), "depends_on": deps or [], **kw}


async def test_dag_runs_in_dependency_order(system: System) -> None:
    system.start_scheduler()
    system.start_worker("w1", cpu_units=4)
    system.start_logger()
    made = await system.batch(
        node("a", type="sleep", payload={"seconds": 0.1}),
        node("b", ["a"], type="log", payload={"lines": 3}),
        node("c", ["a"]),
        node("d", ["b", "c"]),
    )
    final = await system.wait_final([j["id"] for j in made.values()])
    assert {j["status"] for j in final.values()} == {"completed"}
    by_key = {k: final[v["id"]] for k, v in made.items()}
    for child, parents in {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.items():
        for parent in parents:
            assert by_key[child]["started_at"] >= by_key[parent]["finished_at"]
    assert by_key["b"]["result"] == {"lines": 3}
    logs = (await system.client.get(f"/jobs/{made['b']['id']}/logs")).json()
    deadline = time.monotonic() + 5
    while len(logs["lines"]) < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        logs = (await system.client.get(f"/jobs/{made['b']['id']}/logs")).json()
    assert [ln["message"] for ln in logs["lines"]][1:4] == [
        "line 1 of 3",
        "line 2 of 3",
        "line 3 of 3",
    ]
    assert logs["attempts"][0]["outcome"] == "succeeded"
    assert logs["attempts"][0]["worker_id"] == "w1"
    assert isinstance(datetime.fromisoformat(logs["attempts"][0]["finished_at"]), datetime)
