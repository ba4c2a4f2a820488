"""Batches (DAGs), cancellation with cascade, batch reports and logs, on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.store import attempts_t, edges, jobs, logs_t
from tests.integration.test_api_jobs import count_jobs, submit


def dag(*specs: tuple[str, list[str]]) -> dict[str, Any]:
    return {"jobs": [{"key": k, "type": "noop", "depends_on": d} for k, d in specs]}


async def test_batch_creates_dag_atomically(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    existing = await submit(client)
    body = dag(
        ("extract", [existing["id"]]), ("clean", ["extract"]), ("load", ["extract", "clean"])
    )
    r = await client.post("/jobs/batch", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    by_key = {j["key"]: j for j in out["jobs"]}
    assert list(by_key) == ["extract", "clean", "load"]
    assert all(j["batch_id"] == out["batch_id"] for j in out["jobs"])
    assert by_key["extract"]["depends_on"] == [existing["id"]]
    assert set(by_key["load"]["depends_on"]) == {by_key["extract"]["id"], by_key["clean"]["id"]}
    assert by_key["clean"]["name"] == "clean"
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(edges))).scalar_one() == 4
    listed = (await client.get("/jobs", params={"batch_id": out["batch_id"]})).json()["items"]
    assert {j["id"] for j in listed} == {j["id"] for j in out["jobs"]}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (dag(("a", ["c"]), ("b", ["a"]), ("c", ["b"])), "dependency cycle"),
        (dag(("a", ["a"])), "depends on itself"),
        (dag(("a", []), ("b", ["ghost"])), "ghost"),
        (dag(("a", []), ("b", [str(uuid.UUID(int=7))])), str(uuid.UUID(int=7))),
        (dag(("a", []), ("a", [])), "duplicate key"),
        ({"jobs": []}, "jobs"),
        ({"jobs": [{"key": "a", "type": "nope"}]}, "unknown job type"),
        ({"jobs": [{"key": "a", "type": "noop", "cpu_units": 0}]}, "cpu_units"),
    ],
)
async def test_bad_batches_write_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], needle: str
) -> None:
    r = await client.post("/jobs/batch", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["error"]
    assert await count_jobs(engine) == 0


async def test_cycle_error_names_the_jobs_on_it(client: httpx.AsyncClient) -> None:
    body = dag(("root", []), ("x", ["root", "z"]), ("y", ["x"]), ("z", ["y"]))
    r = await client.post("/jobs/batch", json=body)
    assert r.status_code == 422
    assert set(r.json()["detail"]["cycle"]) == {"x", "y", "z"}


async def test_batch_size_limit(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    body = {"jobs": [{"type": "noop"} for _ in range(2_001)]}
    r = await client.post("/jobs/batch", json=body)
    assert r.status_code == 422 and "limit" in r.json()["error"]
    assert await count_jobs(engine) == 0


async def test_batch_idempotency(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    body = dag(("a", []), ("b", ["a"]))
    first = await client.post("/jobs/batch", json=body, headers={"Idempotency-Key": "run-1"})
    again = await client.post("/jobs/batch", json=body, headers={"Idempotency-Key": "run-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["batch_id"] == first.json()["batch_id"]
    other = await client.post(
        "/jobs/batch", json=dag(("a", [])), headers={"Idempotency-Key": "run-1"}
    )
    assert other.status_code == 409
    assert await count_jobs(engine) == 2


async def test_a_minimal_answer_gives_each_jobs_id_key_and_status_in_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """``Prefer: return=minimal`` (what the SDK sends): the same jobs as the full answer, each
    as id, key and status, said by ``Preference-Applied``; a replay answers the same way."""
    body = dag(("a", []), ("b", ["a"]), ("c", ["a", "b"]))
    headers = {"Idempotency-Key": "run-min", "Prefer": "return=minimal"}
    first = await client.post("/jobs/batch", json=body, headers=headers)
    assert first.status_code == 201 and first.headers["Preference-Applied"] == "return=minimal"
    jobs = first.json()["jobs"]
    assert [set(j) for j in jobs] == [{"id", "key", "status"}] * 3
    assert [j["key"] for j in jobs] == ["a", "b", "c"]
    full = (await client.get(f"/jobs/{jobs[2]['id']}")).json()
    assert full["batch_id"] == first.json()["batch_id"] and full["key"] == "c"
    assert sorted(full["depends_on"]) == sorted([jobs[0]["id"], jobs[1]["id"]])
    again = await client.post("/jobs/batch", json=body, headers=headers)
    assert again.status_code == 200 and again.headers["Preference-Applied"] == "return=minimal"
    assert again.json() == first.json()
    full_replay = await client.post(
        "/jobs/batch", json=body, headers={"Idempotency-Key": "run-min"}
    )
    assert full_replay.status_code == 200 and "Preference-Applied" not in full_replay.headers
    assert [j["id"] for j in full_replay.json()["jobs"]] == [j["id"] for j in jobs]
    assert full_replay.json()["jobs"][0]["type"] == "noop"
    assert await count_jobs(engine) == 3


async def test_batch_with_taken_job_key_is_409_and_writes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await submit(client, idempotency_key="k1")
    body = {
        "jobs": [
            {"key": "a", "type": "noop"},
            {"key": "b", "type": "noop", "idempotency_key": "k1"},
        ]
    }
    r = await client.post("/jobs/batch", json=body)
    assert r.status_code == 409
    assert await count_jobs(engine) == 1


async def test_cancel_waiting_job_cascades_downstream(client: httpx.AsyncClient) -> None:
    out = (
        await client.post(
            "/jobs/batch",
            json=dag(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", []), ("e", ["d", "c"])),
        )
    ).json()
    ids = {j["key"]: j["id"] for j in out["jobs"]}
    r = await client.patch(f"/jobs/{ids['b']}/cancel")
    assert r.status_code == 200, r.text
    assert set(r.json()["cancelled"]) == {ids["b"], ids["c"], ids["e"]}
    assert r.json()["job"]["status"] == "cancelled"
    for key in ("c", "e"):
        job = (await client.get(f"/jobs/{ids[key]}")).json()
        assert job["status"] == "cancelled"
        assert job["status_reason"] == f"upstream job b ({ids['b']}) was cancelled"
        assert job["finished_at"] is not None
    for key in ("a", "d"):
        assert (await client.get(f"/jobs/{ids[key]}")).json()["status"] == "pending"
    again = await client.patch(f"/jobs/{ids['b']}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"]["status"] == "cancelled"


async def test_cancel_unknown_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.patch(f"/jobs/{uuid.uuid4()}/cancel")).status_code == 404


async def _set(engine: AsyncEngine, job_id: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == uuid.UUID(job_id)).values(**values))


async def test_cancel_running_is_202_and_finished_is_409(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    running = await submit(client)
    await _set(engine, running["id"], status="running", attempts=1, worker_id="w1")
    r = await client.patch(f"/jobs/{running['id']}/cancel")
    assert r.status_code == 202
    assert r.json()["pending_worker_stop"] is True and r.json()["cancelled"] == []
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(jobs.c.cancel_requested_at).where(jobs.c.id == uuid.UUID(running["id"]))
            )
        ).one()
    assert row[0] is not None
    done = await submit(client)
    await _set(engine, done["id"], status="completed")
    r = await client.patch(f"/jobs/{done['id']}/cancel")
    assert r.status_code == 409 and "completed" in r.json()["error"]


async def test_batch_report(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    out = (await client.post("/jobs/batch", json=dag(("a", []), ("b", ["a"])))).json()
    ids = {j["key"]: j["id"] for j in out["jobs"]}
    report = (await client.get(f"/batches/{out['batch_id']}")).json()
    assert report["totals"]["pending"] == 2 and report["done"] is False
    assert report["duration_seconds"] is None
    t0 = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    t1 = datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    await _set(engine, ids["a"], status="completed", started_at=t0, finished_at=t0)
    await _set(engine, ids["b"], status="completed", started_at=t0, finished_at=t1)
    report = (await client.get(f"/batches/{out['batch_id']}")).json()
    assert report["done"] is True and report["totals"]["completed"] == 2
    assert report["duration_seconds"] == 5.0
    assert [j["key"] for j in report["jobs"]] == ["a", "b"]
    assert (await client.get(f"/batches/{uuid.uuid4()}")).status_code == 404


async def test_batch_report_pages_its_jobs_with_totals_on_every_page(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    out = (await client.post("/jobs/batch", json=dag(*((f"j{i}", []) for i in range(7))))).json()
    ids = [j["id"] for j in out["jobs"]]
    for i in (1, 4, 5):
        await _set(engine, ids[i], status="failed", attempts=1, error=f"boom {i}")
    url = f"/batches/{out['batch_id']}"
    first = (await client.get(url, params={"limit": 3})).json()
    totals = {**dict.fromkeys(first["totals"], 0), "pending": 4, "failed": 3}
    assert first["totals"] == totals and first["job_count"] == 7 and first["done"] is False
    assert [f["key"] for f in first["failures"]] == ["j1", "j4", "j5"]
    assert first["failures"][0]["error"] == "boom 1" and first["failures"][0]["attempts"] == 1
    seen = [j["key"] for j in first["jobs"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = (await client.get(url, params={"limit": 3, "cursor": cursor})).json()
        assert page["totals"] == totals and page["failures"] is None
        seen += [j["key"] for j in page["jobs"]]
        cursor = page["next_cursor"]
    assert seen == [f"j{i}" for i in range(7)]  # submission order, each once
    few = (await client.get(url, params={"limit": 2})).json()
    assert [f["key"] for f in few["failures"]] == ["j1", "j4"]  # all: GET /jobs?status=failed


async def test_batch_report_pages_by_default_and_caps_the_limit(
    client: httpx.AsyncClient,
) -> None:
    out = (await client.post("/jobs/batch", json=dag(*((f"j{i}", []) for i in range(150))))).json()
    url = f"/batches/{out['batch_id']}"
    first = (await client.get(url)).json()
    assert len(first["jobs"]) == 100 and first["next_cursor"] and first["failures"] == []
    rest = (await client.get(url, params={"cursor": first["next_cursor"]})).json()
    assert len(rest["jobs"]) == 50 and rest["next_cursor"] is None
    assert len((await client.get(url, params={"limit": 500})).json()["jobs"]) == 150
    for params in ({"limit": 501}, {"limit": 0}, {"limit": "x"}, {"cursor": "garbage!"}):
        r = await client.get(url, params=params)
        assert r.status_code == 422, params
        assert set(r.json()) == {"error", "detail"} and r.json()["error"], params


async def test_logs_history_and_pagination(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    job = await submit(client, type="log")
    jid = uuid.UUID(job["id"])
    t = datetime(2026, 1, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            attempts_t.insert(),
            [
                {
                    "job_id": jid,
                    "attempt": 1,
                    "worker_id": "w1",
                    "cpu_units": 1,
                    "memory_mb": 256,
                    "started_at": t,
                    "finished_at": t,
                    "duration_seconds": 0.5,
                    "outcome": "failed",
                    "error": "ValueError: x",
                },
                {
                    "job_id": jid,
                    "attempt": 2,
                    "worker_id": "w2",
                    "cpu_units": 1,
                    "memory_mb": 256,
                    "started_at": t,
                    "finished_at": None,
                    "duration_seconds": None,
                    "outcome": None,
                    "error": None,
                },
            ],
        )
        await conn.execute(
            logs_t.insert(),
            [
                {
                    "job_id": jid,
                    "attempt": a,
                    "seq": s,
                    "ts": t,
                    "level": "error" if s == 3 else "info",
                    "message": f"a{a} line {s}",
                }
                for a in (1, 2)
                for s in (1, 2, 3)
            ],
        )
    page = (await client.get(f"/jobs/{jid}/logs", params={"limit": 4})).json()
    assert [a["attempt"] for a in page["attempts"]] == [1, 2]
    assert page["attempts"][0]["outcome"] == "failed" and page["attempts"][0]["worker_id"] == "w1"
    assert [m["message"] for m in page["lines"]] == [
        "a1 line 1",
        "a1 line 2",
        "a1 line 3",
        "a2 line 1",
    ]
    rest = (await client.get(f"/jobs/{jid}/logs", params={"after": page["next_after"]})).json()
    assert [m["message"] for m in rest["lines"]] == ["a2 line 2", "a2 line 3"]
    assert rest["next_after"] is None
    errs = (await client.get(f"/jobs/{jid}/logs", params={"level": "ERROR"})).json()
    assert [m["message"] for m in errs["lines"]] == ["a1 line 3", "a2 line 3"]
    second = (await client.get(f"/jobs/{jid}/logs", params={"attempt": 2, "after": 1})).json()
    assert [m["seq"] for m in second["lines"]] == [2, 3]
    assert (await client.get(f"/jobs/{jid}/logs", params={"level": "LOUD"})).status_code == 422
    assert (await client.get(f"/jobs/{jid}/logs", params={"after": "x"})).status_code == 422
    assert (await client.get(f"/jobs/{uuid.uuid4()}/logs")).status_code == 404
