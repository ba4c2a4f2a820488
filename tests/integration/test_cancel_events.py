"""The events a cancel announces: each cascaded job under its own batch, with the reason
written on its row."""

from __future__ import annotations

import time
from typing import Any

from tests.system import System
from tests.wsclient import AsgiWebSocket


async def cancelled_events(ws: AsgiWebSocket, want: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(out) < want:
        event = await ws.receive_json(max(0.1, deadline - time.monotonic()))
        if event["type"] == "job.status" and event["status"] == "cancelled":
            out.append(event)
    return out


async def test_a_cascaded_cancel_is_announced_to_the_batch_of_each_job(system: System) -> None:
    """A DAG across two batches: the root in batch 1, its dependent in batch 2. Cancelling the
    root must tell batch 2's watchers that their job was cancelled, under batch 2."""
    first = await system.client.post(
        "/jobs/batch",
        json={"jobs": [{"key": "root", "type": "noop", "run_at": "2099-01-01T00:00:00Z"}]},
    )
    assert first.status_code == 201, first.text
    root = first.json()["jobs"][0]
    second = await system.client.post(
        "/jobs/batch",
        json={"jobs": [{"key": "child", "type": "noop", "depends_on": [root["id"]]}]},
    )
    assert second.status_code == 201, second.text
    child = second.json()["jobs"][0]
    batch_one, batch_two = first.json()["batch_id"], second.json()["batch_id"]
    async with system.stream(f"batch_id={batch_two}") as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        r = await system.client.patch(f"/jobs/{root['id']}/cancel")
        assert r.status_code == 200, r.text
        [event] = await cancelled_events(ws, 1)
    assert event["job_id"] == child["id"]
    assert event["batch_id"] == batch_two != batch_one
    stored = (await system.job(child["id"]))["status_reason"]
    assert event["reason"] == stored  # one wording, on the row and on the stream
    assert stored == f"upstream job root ({root['id']}) was cancelled"
