"""Admission at submit, on PostgreSQL and on SQLite: over a tenant's active-jobs quota or its
submit rate a submit is a 429 with ``Retry-After`` that writes nothing (rows counted before and
after), on the route, the fast path and the batch route alike; a rejected batch writes none of
its jobs; a 429 keeps nothing under the idempotency key, so the same key succeeds once there is
room, and a replay of an accepted key is answered as a replay (over the active-jobs quota) or
refused like any request (over the rate); concurrent submits never pass the quota."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.store import batches, jobs
from api.store import quotas as quota_store
from models.types import utcnow

TENANT = "default"  # the suite key's


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def set_quotas(app: FastAPI, engine: AsyncEngine, **quotas: Any) -> None:
    async with engine.connect() as conn:
        await quota_store.put_tenant(conn, TENANT, quotas, utcnow())
    app.state.ctx.admission.forget(TENANT)


async def rows(engine: AsyncEngine) -> tuple[int, int]:
    """(jobs, batches) in the database."""
    async with engine.connect() as conn:
        n_jobs = (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()
        n_batches = (await conn.execute(select(func.count()).select_from(batches))).scalar_one()
    return n_jobs, n_batches


def refused(answer: httpx.Response, quota: str, most: int) -> dict[str, Any]:
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= most
    body = answer.json()
    assert set(body) == {"error", "detail"} and body["detail"]["quota"] == quota
    assert body["detail"]["retry_after"] == int(answer.headers["Retry-After"])
    detail: dict[str, Any] = body["detail"]
    return detail


def fast_served(app: FastAPI) -> float:
    value = app.state.ctx.metrics.registry.get_sample_value("smartq_api_fast_submits_total")
    return float(value or 0)


async def test_over_max_active_jobs_is_a_429_that_writes_nothing(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await set_quotas(api_app, engine, max_active_jobs=3)
    first = await client.post("/jobs", json={"type": "noop"})  # the key is read: the route
    assert first.status_code == 201, first.text
    for _ in range(2):  # the key is cached: the fast path
        assert (await client.post("/jobs", json={"type": "noop"})).status_code == 201
    assert fast_served(api_app) == 2
    assert await rows(engine) == (3, 0)

    over = await client.post("/jobs", json={"type": "noop"})
    assert fast_served(api_app) == 3  # answered by the fast path, through errors.handled
    detail = refused(over, "max_active_jobs", 5)
    assert detail | {"retry_after": 0} == {
        "quota": "max_active_jobs",
        "limit": 3,
        "active": 3,
        "requested": 1,
        "retry_after": 0,
    }
    assert "3 active jobs of its quota of 3" in over.json()["error"]
    with_deps = await client.post(
        "/jobs", json={"type": "noop", "depends_on": [first.json()["id"]]}
    )
    refused(with_deps, "max_active_jobs", 5)
    batch = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}]})
    refused(batch, "max_active_jobs", 5)
    assert await rows(engine) == (3, 0)
    refusals = api_app.state.ctx.metrics.registry.get_sample_value(
        "smartq_api_refused_total", {"reason": "max_active_jobs"}
    )
    assert refusals == 3


async def test_a_batch_is_refused_whole_and_one_larger_than_the_quota_is_a_422(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await set_quotas(api_app, engine, max_active_jobs=4)
    assert (await client.post("/jobs", json={"type": "noop"})).status_code == 201
    two = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 2})
    assert two.status_code == 201, two.text
    dag = {
        "jobs": [{"key": "a", "type": "noop"}, {"key": "b", "type": "noop", "depends_on": ["a"]}]
    }
    over = await client.post("/jobs/batch", json=dag)
    assert refused(over, "max_active_jobs", 5)["requested"] == 2
    assert await rows(engine) == (3, 1)  # none of its jobs, no batch row
    never = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 5})
    assert never.status_code == 422, never.text
    assert never.json()["detail"] == {"quota": "max_active_jobs", "limit": 4, "requested": 5}
    assert await rows(engine) == (3, 1)
    one_more = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}]})
    assert one_more.status_code == 201  # exactly at the quota


async def test_the_same_idempotency_key_succeeds_once_the_quota_frees(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await set_quotas(api_app, engine, max_active_jobs=1)
    taken = await client.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": "a"})
    assert taken.status_code == 201
    # A replay of the accepted key writes nothing: answered as a replay, quota or not.
    again = await client.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": "a"})
    assert (again.status_code, again.json()["id"]) == (200, taken.json()["id"])
    other_body = await client.post(
        "/jobs", json={"type": "noop", "priority": 9}, headers={"Idempotency-Key": "a"}
    )
    assert other_body.status_code == 409

    for _ in range(2):  # refused twice: nothing is kept under the key
        later = await client.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": "b"})
        refused(later, "max_active_jobs", 5)
        batch = await client.post(
            "/jobs/batch", json={"jobs": [{"type": "noop"}]}, headers={"Idempotency-Key": "c"}
        )
        refused(batch, "max_active_jobs", 5)
    assert await rows(engine) == (1, 0)

    cancel = await client.patch(f"/jobs/{taken.json()['id']}/cancel")
    assert cancel.status_code == 200, cancel.text  # no longer active: room for one
    made = await client.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": "b"})
    assert made.status_code == 201, made.text
    replayed = await client.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": "b"})
    assert (replayed.status_code, replayed.json()["id"]) == (200, made.json()["id"])
    assert (await client.patch(f"/jobs/{made.json()['id']}/cancel")).status_code == 200
    headers = {"Idempotency-Key": "c"}
    batch = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}]}, headers=headers)
    assert batch.status_code == 201, batch.text
    replayed_batch = await client.post(
        "/jobs/batch", json={"jobs": [{"type": "noop"}]}, headers=headers
    )
    assert replayed_batch.status_code == 200
    assert replayed_batch.json()["batch_id"] == batch.json()["batch_id"]
    assert await rows(engine) == (3, 1)


async def test_over_the_submit_rate_is_a_429_from_the_bucket(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    clock = Clock()
    api_app.state.ctx.admission.clock = clock
    api_app.state.ctx.admission.draw = lambda: 0.0
    await set_quotas(api_app, engine, submit_rate=2.0)
    headers = {"Idempotency-Key": "k"}
    assert (await client.post("/jobs", json={"type": "noop"}, headers=headers)).status_code == 201
    batch = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 3})
    assert batch.status_code == 201  # three jobs, one request: the burst of 2 is used up
    for request in (
        client.build_request("POST", "/jobs", json={"type": "noop"}),
        client.build_request("POST", "/jobs/batch", json={"jobs": [{"type": "noop"}]}),
        # over the rate, a replay is refused like any request (no database work is done)
        client.build_request("POST", "/jobs", json={"type": "noop"}, headers=headers),
    ):
        over = await client.send(request)
        assert refused(over, "submit_rate", 1) == {
            "quota": "submit_rate",
            "limit": 2.0,
            "retry_after": 1,
        }
    assert await rows(engine) == (4, 1)

    clock.now += 0.25  # half a token: the next one is 0.25 s away, the draw adds 0.9
    api_app.state.ctx.admission.draw = lambda: 0.9
    assert int((await client.post("/jobs", json={"type": "noop"})).headers["Retry-After"]) == 2
    clock.now += 0.25
    replay = await client.post("/jobs", json={"type": "noop"}, headers=headers)
    assert replay.status_code == 200  # the token is back: the replay is answered
    clock.now += 0.5
    assert (await client.post("/jobs", json={"type": "noop"})).status_code == 201
    assert await rows(engine) == (5, 1)


async def test_concurrent_submits_never_pass_the_active_jobs_quota(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await set_quotas(api_app, engine, max_active_jobs=10)
    await client.get("/jobs?limit=1")  # the key cached: most go by the fast path

    async def one(i: int) -> int:
        if i % 5 == 0:
            answer = await client.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 2})
        else:
            answer = await client.post("/jobs", json={"type": "noop"})
        assert answer.status_code in (201, 429), answer.text
        return 2 if answer.status_code == 201 and i % 5 == 0 else int(answer.status_code == 201)

    accepted = sum(await asyncio.gather(*(one(i) for i in range(40))))
    assert accepted == (await rows(engine))[0]
    assert accepted in (9, 10)  # a batch of 2 may not fit the last free place
    assert (await client.post("/jobs", json={"type": "noop"})).status_code in (
        429 if accepted == 10 else 201,
    )


@pytest.mark.parametrize("quota", ["max_active_jobs", "submit_rate"])
async def test_no_quota_no_checks_and_the_defaults_come_from_settings(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine, quota: str
) -> None:
    ctx = api_app.state.ctx
    for _ in range(5):
        assert (await client.post("/jobs", json={"type": "noop"})).status_code == 201
    setattr(ctx.settings, f"tenant_{quota}", 3 if quota == "max_active_jobs" else 1.0)
    ctx.admission.forget(TENANT)
    over = await client.post("/jobs", json={"type": "noop"})
    if quota == "submit_rate":  # the first request takes the burst's one token
        assert over.status_code == 201
        over = await client.post("/jobs", json={"type": "noop"})
    refused(over, quota, 5)
    await set_quotas(api_app, engine, **{quota: 1000})  # the tenant's row wins
    assert (await client.post("/jobs", json={"type": "noop"})).status_code == 201


async def test_a_retry_of_a_failed_job_is_held_to_the_active_jobs_quota(
    api_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    made = [(await client.post("/jobs", json={"type": "noop"})).json()["id"] for _ in range(2)]
    async with engine.begin() as conn:  # as if the first one had failed for good
        await conn.execute(
            update(jobs).where(jobs.c.id == uuid.UUID(made[0])).values(status="failed")
        )
    await set_quotas(api_app, engine, max_active_jobs=1)
    refused(await client.post(f"/jobs/{made[0]}/retry"), "max_active_jobs", 5)
    assert (await client.get(f"/jobs/{made[0]}")).json()["status"] == "failed"  # untouched
    assert (await client.patch(f"/jobs/{made[1]}/cancel")).status_code == 200
    again = await client.post(f"/jobs/{made[0]}/retry")
    assert again.status_code == 200, again.text
    assert again.json()["job"]["status"] == "pending"
