"""``ctx.progress`` on both backends: ``job.progress`` events on the stream, the last one before
the job's end, and the latest value on ``GET /jobs/{id}``; bad values are refused in the job."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.system import System
from worker.context import JobContext, make_job_logger


async def test_progress_reaches_the_stream_before_the_end_and_stays_on_the_job(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    await system.wait_worker("w1")
    async with system.stream() as ws:
        assert (await ws.receive_json())["type"] == "stream.subscribed"
        job = await system.submit(type="steps", payload={"steps": 4, "every": 0.3})
        fractions: list[float] = []
        deadline = time.monotonic() + 20
        while True:
            event = await ws.receive_json(max(0.1, deadline - time.monotonic()))
            if event.get("job_id") != job["id"]:
                continue
            if event["type"] == "job.progress":
                fractions.append(event["fraction"])
                assert event["tenant"] == "default" and event["attempt"] == 1
            elif event["type"] == "job.status" and event["status"] == "completed":
                break
    # steps 0.3 s apart, sent at most every 0.25 s: each step is seen, in order, the last first
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
    detail = (await system.client.get(f"/jobs/{job['id']}")).json()
    assert detail["progress"]["fraction"] == 1.0
    assert detail["progress"]["message"] == "step 4 of 4"
    assert detail["progress"]["attempt"] == 1
    plain = (await system.submit(type="noop"))["id"]
    await system.wait_final([plain])
    assert (await system.client.get(f"/jobs/{plain}")).json()["progress"] is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", True, None])
def test_progress_is_a_number_from_zero_to_one(bad: object) -> None:
    sent: list[tuple[float, str | None]] = []
    ctx = JobContext(
        job_id=uuid.uuid4(),
        attempt=1,
        name="j",
        job_type="steps",
        worker_id="w",
        payload={},
        log=make_job_logger("t", lambda *a: None),
        report_progress=lambda f, m: sent.append((f, m)),
    )
    with pytest.raises((ValueError, TypeError)):
        ctx.progress(bad)  # type: ignore[arg-type]
    ctx.progress(1, "x" * 600)
    assert sent == [(1.0, "x" * 500)]
