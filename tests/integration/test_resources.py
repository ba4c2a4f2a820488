"""Named resources and labels seen from outside, on both backends (issue 18): a job that asks
for ``{"gpu": 1}`` or ``{"zone": "eu"}`` runs only on a worker that offers it, waits while the
resource is in use (even across a scheduler restart), says why it waits, and bad requests get a
422 in the one error shape."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from scheduler.resources import Offer
from tests.system import System, until

GPU = Offer({"gpu": 1}, {"zone": "eu"})


async def reason_has(system: System, job_id: str, words: str) -> dict[str, Any] | None:
    job = await system.job(job_id)
    return job if words in (job.get("waiting_reason") or "") else None


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_job_runs_only_where_its_resources_and_labels_are(system: System) -> None:
    system.start_scheduler()
    system.start_worker("plain", cpu_units=4, memory_mb=4096)
    system.start_worker("gpu", cpu_units=4, memory_mb=4096, offer=GPU)
    listed = await system.wait_worker("gpu")
    assert listed["resources"] == {"gpu": 1} and listed["labels"] == {"zone": "eu"}
    await system.wait_worker("plain")

    gpu = await system.submit(type="sleep", payload={"seconds": 0.2}, resources={"gpu": 1})
    assert gpu["resources"] == {"gpu": 1} and gpu["labels"] == {}
    eu = await system.submit(type="noop", labels={"zone": "eu"})
    plain = [(await system.submit(type="noop"))["id"] for _ in range(6)]
    await system.wait_final([gpu["id"], eu["id"], *plain])
    done = {i: await system.job(i) for i in [gpu["id"], eu["id"], *plain]}
    assert done[gpu["id"]]["worker_id"] == "gpu"
    assert done[eu["id"]]["worker_id"] == "gpu"
    assert {done[i]["status"] for i in done} == {"completed"}
    # Plain jobs go anywhere: best fit does not keep them off the gpu worker, nor on it.
    assert {done[i]["worker_id"] for i in plain} <= {"gpu", "plain"}


async def test_never_fits_says_which_resource_or_label_is_missing(system: System) -> None:
    system.start_scheduler()
    system.start_worker("gpu", cpu_units=4, memory_mb=4096, offer=GPU)
    await system.wait_worker("gpu")
    two = (await system.submit(type="noop", resources={"gpu": 2}))["id"]
    tpu = (await system.submit(type="noop", resources={"tpu": 1}))["id"]
    us = (await system.submit(type="noop", labels={"zone": "us"}))["id"]
    job = await until(lambda: reason_has(system, two, "gpu"))
    assert job["status"] == "ready"
    assert job["waiting_reason"] == (
        "no worker could ever fit it: needs gpu=2; the most any live worker has is gpu=1"
    )
    job = await until(lambda: reason_has(system, tpu, "tpu"))
    assert (
        job["waiting_reason"] == "no worker could ever fit it: needs tpu=1; no live worker has tpu"
    )
    job = await until(lambda: reason_has(system, us, "zone"))
    assert job["waiting_reason"] == (
        "no worker could ever fit it: needs zone=us; no live worker has label zone=us "
        "(live workers have zone=eu)"
    )
    # A worker that has it comes: the parked job runs there.
    system.start_worker("us", cpu_units=2, memory_mb=2048, offer=Offer({}, {"zone": "us"}))
    await system.wait_final([us])
    job = await system.job(us)
    assert job["status"] == "completed" and job["worker_id"] == "us"


async def test_a_resource_in_use_is_waited_for_across_a_scheduler_restart(
    system: System,
) -> None:
    system.start_scheduler()
    system.start_worker("gpu", cpu_units=8, memory_mb=8192, offer=GPU)
    await system.wait_worker("gpu")
    first = (await system.submit(type="sleep", payload={"seconds": 2}, resources={"gpu": 1}))["id"]
    await system.wait_status(first, "running")
    second = (await system.submit(type="noop", resources={"gpu": 1}))["id"]
    job = await until(lambda: reason_has(system, second, "needs gpu=1"))
    assert job["waiting_reason"].startswith(
        "needs gpu=1; most free on any worker is gpu=0 (1 gpu on 1 worker that could run it)"
    ), job["waiting_reason"]
    workers = (await system.client.get("/workers")).json()
    assert next(w for w in workers if w["id"] == "gpu")["resources_in_use"] == {"gpu": 1}

    # A new scheduler rebuilds what the running attempt holds, the gpu included.
    await system.stop("scheduler")
    system.start_scheduler()
    await asyncio.sleep(0.5)
    assert (await system.job(second))["status"] in ("pending", "ready")
    await system.wait_final([first, second])
    done = {i: await system.job(i) for i in (first, second)}
    assert done[first]["status"] == done[second]["status"] == "completed"
    # The second started only once the first had given the gpu back.
    assert when(done[second]["started_at"]) >= when(done[first]["finished_at"]) - 0.05


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("resources", {"gpu": 0}, "a count is a positive integer"),
        ("resources", {"gpu": "1"}, "a count is a positive integer"),
        ("resources", {"gpu": True}, "a count is a positive integer"),
        ("resources", {"cpu": 1}, "reserved"),
        ("resources", {"GPU": 1}, "a name is"),
        ("resources", [1], "dictionary"),
        ("labels", {"zone": ""}, "a label value is"),
        ("labels", {"zone": 3}, "a label value is"),
    ],
)
async def test_bad_resources_and_labels_are_refused(
    system: System, field: str, value: Any, words: str
) -> None:
    r = await system.client.post("/jobs", json={"type": "noop", field: value})
    assert r.status_code == 422, r.text
    body = r.json()
    assert words in r.text, body
    assert "Traceback" not in r.text
    # The same in a batch.
    r = await system.client.post("/jobs/batch", json={"jobs": [{"type": "noop", field: value}]})
    assert r.status_code == 422 and words in r.text, r.text
