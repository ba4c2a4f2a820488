"""``DELETE /jobs/{id}`` and ``POST /admin/purge`` on PostgreSQL and SQLite: only finished jobs
go, with everything theirs; active ones, ones an unfinished job depends on, and other tenants'
stay; the purge's dry run counts and deletes nothing; bad filters are 422s, never 500s."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import deletes
from models.types import utcnow
from tests.conftest import Tenants, asgi_client
from tests.oldjobs import add_batch, add_job, exists, left

NOTHING_LEFT = dict.fromkeys(("jobs", "attempts", "logs", "progress", "edges"), 0)


async def test_delete_a_finished_job(tenants: Tenants, engine: AsyncEngine) -> None:
    a = tenants.clients["a"]
    async with engine.begin() as conn:
        batch = await add_batch(conn, tenant="acme")
        job = await add_job(conn, "completed", tenant="acme", lines=7, batch_id=batch)
    assert (await a.get(f"/jobs/{job}")).status_code == 200
    answer = await a.delete(f"/jobs/{job}")
    assert answer.status_code == 204 and answer.content == b""
    assert (await a.get(f"/jobs/{job}")).status_code == 404
    assert (await a.get(f"/jobs/{job}/logs")).status_code == 404
    assert (await a.get(f"/batches/{batch}")).status_code == 404  # its last job went
    async with engine.connect() as conn:
        assert await left(conn, [job]) == NOTHING_LEFT
    again = await a.delete(f"/jobs/{job}")
    assert again.status_code == 404 and again.json()["error"] == f"no job {job}"


async def test_active_jobs_and_jobs_waited_on_are_409(
    tenants: Tenants, engine: AsyncEngine
) -> None:
    a = tenants.clients["a"]
    async with engine.begin() as conn:
        running = await add_job(conn, "running", tenant="acme")
        upstream = await add_job(conn, "completed", tenant="acme")
        downstream = await add_job(conn, "blocked", tenant="acme", depends_on=[upstream])
        parent = await add_job(conn, "completed", tenant="acme")
        await add_job(conn, "ready", tenant="acme", parent_id=parent)
    answer = await a.delete(f"/jobs/{running}")
    assert answer.status_code == 409
    assert answer.json()["error"].endswith("the job is running: only a finished job can be deleted")
    assert answer.json()["detail"]["status"] == "running"
    answer = await a.delete(f"/jobs/{upstream}")
    assert answer.status_code == 409
    assert "1 unfinished job depends on it" in answer.json()["error"]
    assert answer.json()["detail"]["dependents"] == [str(downstream)]
    answer = await a.delete(f"/jobs/{parent}")
    assert answer.status_code == 409 and "spawned" in answer.json()["error"]
    async with engine.begin() as conn:
        await conn.execute(
            update(deletes.jobs).where(deletes.jobs.c.id == downstream).values(status="failed")
        )
    assert (await a.delete(f"/jobs/{upstream}")).status_code == 204
    assert (await a.get(f"/jobs/{downstream}")).json()["depends_on"] == []


async def test_delete_is_scoped_like_cancel(tenants: Tenants, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        theirs = await add_job(conn, "completed", tenant="acme")
        other = await add_job(conn, "failed", tenant="acme")
    b = tenants.clients["b"]
    assert (await b.delete(f"/jobs/{theirs}")).status_code == 404  # as absent as a random id
    assert (await b.delete(f"/jobs/{uuid.uuid4()}")).status_code == 404
    assert (await b.delete("/jobs/not-an-id")).status_code == 422
    reader = await tenants.clients["reader"].delete(f"/jobs/{theirs}")
    assert reader.status_code == 403 and "'cancel' scope" in reader.json()["error"]
    async with engine.connect() as conn:
        assert await exists(conn, theirs)
    assert (await tenants.clients["admin"].delete(f"/jobs/{theirs}")).status_code == 204
    narrowed = await tenants.clients["admin"].delete(f"/jobs/{other}", params={"tenant": "bravo"})
    assert narrowed.status_code == 404
    async with engine.connect() as conn:
        assert not await exists(conn, theirs) and await exists(conn, other)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 422, "an empty filter"),
        ({"dry_run": True}, 422, "an empty filter"),
        ({"status": ["running"]}, 422, "only finished jobs can be purged"),
        ({"status": ["bogus"]}, 422, "status"),
        ({"status": "completed"}, 422, "status"),
        ({"finished_before": "2026-01-01T00:00:00"}, 422, "finished_before"),
        ({"finished_before": "yesterday"}, 422, "finished_before"),
        ({"batch_id": "nope"}, 422, "batch_id"),
        ({"type": "noop", "dry_run": "yes"}, 422, "dry_run"),
        ({"type": "noop", "everything": True}, 422, "everything"),
        ({"type": "x" * 201}, 422, "type"),
        ({"type": "a\u0000b"}, 422, "type"),
        ({"tenant": "a\u0000b", "dry_run": True}, 422, "tenant"),
    ],
)
async def test_purge_refuses_bad_filters(
    tenants: Tenants, body: dict[str, object], status: int, words: str
) -> None:
    answer = await tenants.clients["admin"].post("/admin/purge", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


async def test_purge_needs_an_admin_key(tenants: Tenants) -> None:
    answer = await tenants.clients["a"].post("/admin/purge", json={"status": ["completed"]})
    assert answer.status_code == 403


async def test_purge_dry_run_then_for_real(tenants: Tenants, engine: AsyncEngine) -> None:
    old = utcnow() - timedelta(days=10)
    async with engine.begin() as conn:
        gone = [await add_job(conn, "failed", 10, tenant="acme") for _ in range(4)]
        waited_on = await add_job(conn, "failed", 10, tenant="acme")
        await add_job(conn, "pending", tenant="acme", depends_on=[waited_on])
        young = await add_job(conn, "failed", 0, tenant="acme")
        completed = await add_job(conn, "completed", 10, tenant="acme")
        bravo = await add_job(conn, "failed", 10, tenant="bravo")
    admin = tenants.clients["admin"]
    body = {
        "status": ["failed"],
        "tenant": "acme",
        "finished_before": (old + timedelta(hours=1)).isoformat(),
    }
    dry = await admin.post("/admin/purge", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"dry_run": True, "matched": 4, "deleted": 0, "kept": 1, "more": False}
    async with engine.connect() as conn:
        assert (await left(conn, gone))["jobs"] == 4
    real = await admin.post("/admin/purge", json=body)
    assert real.json() == {"dry_run": False, "matched": 4, "deleted": 4, "kept": 1, "more": False}
    async with engine.connect() as conn:
        assert await left(conn, gone) == NOTHING_LEFT
        for kept in (waited_on, young, completed, bravo):
            assert await exists(conn, kept)
    for i in gone:
        assert (await tenants.clients["a"].get(f"/jobs/{i}")).status_code == 404


async def test_purge_by_type_and_batch(tenants: Tenants, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        batch = await add_batch(conn, tenant="acme")
        in_batch = [await add_job(conn, "completed", tenant="acme", batch_id=batch) for _ in "ab"]
        running = await add_job(conn, "running", tenant="acme", batch_id=batch)
        typed = await add_job(conn, "cancelled", tenant="bravo", type="sleep")
        other_type = await add_job(conn, "cancelled", tenant="bravo")
    admin = tenants.clients["admin"]
    answer = await admin.post("/admin/purge", json={"batch_id": str(batch)})
    assert answer.json()["deleted"] == 2
    assert (await admin.get(f"/batches/{batch}")).status_code == 200  # a job still runs in it
    answer = await admin.post("/admin/purge", json={"type": "sleep"})
    assert answer.json()["deleted"] == 1
    async with engine.connect() as conn:
        assert (await left(conn, [*in_batch, typed]))["jobs"] == 0
        assert await exists(conn, running) and await exists(conn, other_type)


async def test_purge_stops_at_its_cap_and_says_so(
    api_app: FastAPI, tenants: Tenants, engine: AsyncEngine
) -> None:
    api_app.state.ctx.settings.retention_batch_size = 2
    api_app.state.ctx.settings.retention_max_per_sweep = 5
    async with engine.begin() as conn:
        for _ in range(7):
            await add_job(conn, "completed", 1, tenant="acme")
    admin: httpx.AsyncClient = tenants.clients["admin"]
    first = (await admin.post("/admin/purge", json={"tenant": "acme"})).json()
    assert first["matched"] == 7 and first["deleted"] == 5 and first["more"]
    second = (await admin.post("/admin/purge", json={"tenant": "acme"})).json()
    assert second["deleted"] == 2 and not second["more"]


async def test_everything_is_refused_without_a_key(api_app: FastAPI) -> None:
    async with asgi_client(api_app) as anonymous:
        assert (await anonymous.delete(f"/jobs/{uuid.uuid4()}")).status_code == 401
        assert (await anonymous.post("/admin/purge", json={"type": "x"})).status_code == 401
