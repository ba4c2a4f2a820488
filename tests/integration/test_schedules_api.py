"""``/schedules`` on PostgreSQL and SQLite: made, shown with the next fire times, changed,
paused, resumed and deleted; bad input is a 422 in the one error shape, never a 500; a
schedule belongs to its key's tenant and the scopes hold (firing: test_schedules_firing)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from smartq.keys import Scope
from tests.apikeys import bearer, key_of
from tests.conftest import asgi_client

JOB = {"type": "noop", "payload": {"n": 1}, "priority": "high"}
DAG = {
    "name": "nightly",
    "jobs": [
        {"key": "a", "type": "noop"},
        {"key": "b", "type": "noop", "depends_on": ["a"]},
    ],
}


def times(doc: dict[str, Any]) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in doc["next_fire_times"]]


async def make(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/schedules", json={"cron": "*/5 * * * *", "job": JOB, **body})
    assert answer.status_code == 201, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


async def test_a_schedule_is_shown_with_its_next_fire_times(client: httpx.AsyncClient) -> None:
    made = await make(client, name="five", timezone="Europe/Paris", overlap="allow")
    assert made["job"] == JOB
    assert made["batch"] is None
    assert (made["overlap"], made["catchup"], made["max_catchup"]) == ("allow", "none", 100)
    assert made["tenant"] == "default"
    fires = times(made)
    assert len(fires) == 5
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(fires))
    assert fires[0] == datetime.fromisoformat(made["next_fire_at"])
    assert all(t.minute % 5 == 0 and t.second == 0 for t in fires)
    shown = (await client.get(f"/schedules/{made['id']}")).json()
    assert shown == made
    listed = (await client.get("/schedules")).json()
    assert [s["id"] for s in listed["items"]] == [made["id"]]


async def test_a_batch_schedule_and_seconds(client: httpx.AsyncClient) -> None:
    made = await make(client, cron="*/2 * * * * *", job=None, batch=DAG, catchup="all")
    assert made["batch"]["jobs"][1]["depends_on"] == ["a"]
    fires = times(made)
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "* * * * * * *"}, "has 7 fields"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"job": None}, "give exactly one of job"),
        ({"batch": DAG}, "give exactly one of job"),
        ({"job": {"type": "nope"}}, "unknown job type 'nope'"),
        ({"job": {"type": "noop", "cpu_units": "2"}}, "job.cpu_units"),
        ({"job": {"type": "noop", "run_at": "2030-01-01T00:00:00Z"}}, "run_at makes no sense"),
        ({"job": {"type": "noop", "idempotency_key": "k"}}, "made per tick"),
        (
            {"job": {"type": "noop", "depends_on": ["00000000-0000-4000-8000-000000000000"]}},
            "cannot depend on existing jobs",
        ),
        ({"overlap": "queue"}, "overlap"),
        ({"catchup": "some"}, "catchup"),
        ({"max_catchup": 0}, "max_catchup"),
        ({"every": "day"}, "every: Extra inputs are not permitted"),
        (
            {"job": None, "batch": {"jobs": [{"type": "noop", "depends_on": ["x"]}]}},
            "may depend only on keys of its own jobs",
        ),
        (
            {
                "job": None,
                "batch": {
                    "jobs": [
                        {"key": "a", "type": "noop", "depends_on": ["b"]},
                        {"key": "b", "type": "noop", "depends_on": ["a"]},
                    ]
                },
            },
            "dependency cycle",
        ),
    ],
)
async def test_bad_schedules_are_422_in_the_one_shape(
    client: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    answer = await client.post("/schedules", json={"cron": "* * * * *", "job": JOB, **body})
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"error", "detail"}
    assert says in answer.json()["error"], answer.json()["error"]
    assert (await client.get("/schedules")).json()["items"] == []


async def test_patch_pause_resume_and_delete(client: httpx.AsyncClient) -> None:
    made = await make(client)
    sid = made["id"]
    patched = (await client.patch(f"/schedules/{sid}", json={"cron": "0 * * * *"})).json()
    assert patched["cron"] == "0 * * * *"
    assert all(t.minute == 0 for t in times(patched))
    assert patched["job"] == JOB  # what was not sent is kept
    as_batch = await client.patch(f"/schedules/{sid}", json={"batch": DAG, "catchup": "latest"})
    assert as_batch.status_code == 200, as_batch.text
    assert (as_batch.json()["job"], as_batch.json()["catchup"]) == (None, "latest")
    both = await client.patch(f"/schedules/{sid}", json={"job": JOB, "batch": DAG})
    assert both.status_code == 422
    bad = await client.patch(f"/schedules/{sid}", json={"timezone": "Nowhere/Else"})
    assert bad.status_code == 422
    assert "unknown time zone" in bad.json()["error"]
    paused = (await client.post(f"/schedules/{sid}/pause")).json()
    assert (paused["paused"], paused["next_fire_at"], paused["next_fire_times"]) == (True, None, [])
    resumed = (await client.post(f"/schedules/{sid}/resume")).json()
    assert resumed["paused"] is False
    assert len(times(resumed)) == 5
    assert resumed["last_tick"] >= paused["last_tick"]
    gone = await client.delete(f"/schedules/{sid}")
    assert gone.status_code == 200
    assert (await client.get(f"/schedules/{sid}")).status_code == 404
    assert (await client.delete(f"/schedules/{sid}")).status_code == 404


async def test_a_schedule_is_its_tenants_and_scopes_hold(
    client: httpx.AsyncClient, api_app: FastAPI, engine: AsyncEngine
) -> None:
    made = await make(client)
    other = await key_of(engine, "acme")
    reader = await key_of(engine, "default", scopes={Scope.READ})
    async with asgi_client(api_app, bearer(other)) as acme:
        assert (await acme.get(f"/schedules/{made['id']}")).status_code == 404
        assert (await acme.post(f"/schedules/{made['id']}/pause")).status_code == 404
        assert (await acme.delete(f"/schedules/{made['id']}")).status_code == 404
        assert (await acme.get("/schedules")).json()["items"] == []
        mine = await make(acme)
        assert mine["tenant"] == "acme"
    async with asgi_client(api_app, bearer(reader)) as read_only:
        assert (await read_only.get(f"/schedules/{made['id']}")).status_code == 200
        refused = await read_only.post("/schedules", json={"cron": "* * * * *", "job": JOB})
        assert refused.status_code == 403
        assert (await read_only.post(f"/schedules/{made['id']}/pause")).status_code == 403
    assert [s["id"] for s in (await client.get("/schedules")).json()["items"]] == [made["id"]]


async def test_both_sdk_clients_manage_schedules(api_app: FastAPI, engine: AsyncEngine) -> None:
    import asyncio

    import smartq
    from tests.e2e.procs import free_port
    from tests.integration.test_sdk import serve_app

    key = await key_of(engine, "default")
    port = free_port()
    server, task = await serve_app(api_app, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with smartq.AsyncClient(url, key) as client:
            made = await client.create_schedule("*/5 * * * *", job=JOB, catchup="latest")
            assert made["catchup"] == "latest" and len(made["next_fire_times"]) == 5
            assert (await client.pause_schedule(made["id"]))["paused"] is True
            assert [s["id"] for s in await client.schedules()] == [made["id"]]

        def sync_side() -> None:
            with smartq.Client(url, key) as sync:
                sid = made["id"]
                assert sync.resume_schedule(sid)["paused"] is False
                assert sync.update_schedule(sid, cron="0 * * * *")["cron"] == "0 * * * *"
                assert sync.schedule(sid)["job"] == JOB
                with pytest.raises(smartq.APIError) as bad:
                    sync.create_schedule("nope", job=JOB)
                assert bad.value.status == 422
                assert sync.delete_schedule(sid)["id"] == sid
                assert sync.schedules() == []

        await asyncio.to_thread(sync_side)
    finally:
        server.should_exit = True
        await task
