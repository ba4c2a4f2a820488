"""The REST API on PostgreSQL and on SQLite: submission, validation, idempotency, listing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.store import edges, jobs
from smartq.settings import Settings


async def submit(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("type", "noop")
    r = await client.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def count_jobs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()


async def test_submit_shows_job_with_submitted_field_names(client: httpx.AsyncClient) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {
        "name": "resize",
        "type": "sleep",
        "payload": {"seconds": 1},
        "priority": "high",
        "cpu_units": 2,
        "memory_mb": 512,
        "retry": {"max_attempts": 5, "initial_delay_seconds": 0.5},
        "timeout_seconds": 30,
        "run_at": run_at,
    }
    r = await client.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["name"] == "resize" and job["type"] == "sleep"
    assert job["payload"] == {"seconds": 1}
    assert job["priority"] == "high"
    assert (job["cpu_units"], job["memory_mb"]) == (2, 512)
    assert job["retry"] == {
        "max_attempts": 5,
        "initial_delay_seconds": 0.5,
        "backoff_multiplier": 2.0,
    }
    assert job["timeout_seconds"] == 30
    assert datetime.fromisoformat(job["run_at"]) == datetime.fromisoformat(run_at)
    assert job["status"] == "pending" and job["attempts"] == 0
    assert job["depends_on"] == []
    for field in (
        "id",
        "status_reason",
        "result",
        "error",
        "batch_id",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ):
        assert field in job
    got = (await client.get(f"/jobs/{job['id']}")).json()
    assert got["id"] == job["id"] and got["priority"] == "high"
    assert got["waiting_reason"].startswith("scheduled: run_at ")


async def test_defaults_and_integer_priority(client: httpx.AsyncClient) -> None:
    job = await submit(client, priority=7)
    assert job["name"] == "noop" and job["priority"] == 7
    assert (job["cpu_units"], job["memory_mb"]) == (1, 256)
    assert job["retry"] == {
        "max_attempts": 3,
        "initial_delay_seconds": 1.0,
        "backoff_multiplier": 2.0,
    }
    assert job["timeout_seconds"] is None and job["run_at"] is None
    named = await submit(client, priority=10)
    assert named["priority"] == "critical"


async def test_unknown_type_names_the_known_ones(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    r = await client.post("/jobs", json={"type": "nope"})
    assert r.status_code == 422
    body = r.json()
    assert "nope" in body["error"]
    for known in ("noop", "sleep", "flaky", "log", "cpu"):
        assert known in body["error"]
    assert await count_jobs(engine) == 0


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"type": "noop", "cpu_units": 0}, "cpu_units"),
        ({"type": "noop", "cpu_units": -3}, "cpu_units"),
        ({"type": "noop", "memory_mb": 0}, "memory_mb"),
        ({"type": "noop", "priority": 11}, "priority"),
        ({"type": "noop", "priority": "urgent"}, "priority"),
        ({"type": "noop", "payload": [1, 2]}, "payload"),
        ({"type": "noop", "cpu_units": "two"}, "cpu_units"),
        ({"type": "noop", "retry": {"max_attempts": 0}}, "max_attempts"),
        ({"type": "noop", "retry": {"backoff_multiplier": 0.5}}, "backoff_multiplier"),
        ({"type": "noop", "timeout_seconds": -1}, "timeout_seconds"),
        ({"type": "noop", "run_at": "2026-01-01T00:00:00"}, "run_at"),
        ({"type": "noop", "depends_on": ["not-a-uuid"]}, "depends_on"),
        ({"type": "noop", "prority": 3}, "prority"),
        ({"payload": {}}, "type"),
        ({"type": "noop", "cpu_units": 10**12}, "cpu_units"),
    ],
)
async def test_bad_fields_get_422_naming_the_field(
    client: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], where: str
) -> None:
    r = await client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert where in r.json()["error"]
    assert await count_jobs(engine) == 0


PRIORITY_RULE = "must be one of critical, high, normal, low or an integer 0–10"


@pytest.mark.parametrize("priority", [99, -1, "urgent", "5", True, 5.5, None, [5]])
async def test_a_bad_priority_headline_says_what_a_priority_may_be(
    client: httpx.AsyncClient, engine: AsyncEngine, priority: Any
) -> None:
    r = await client.post("/jobs", json={"type": "noop", "priority": priority})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == f"invalid request: priority: {PRIORITY_RULE}"
    batch = {"jobs": [{"key": "a", "type": "noop", "priority": priority}]}
    r = await client.post("/jobs/batch", json=batch)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == f"invalid request: jobs.0.priority: {PRIORITY_RULE}"
    assert await count_jobs(engine) == 0


@pytest.mark.parametrize(
    ("field", "value", "headline"),
    [
        ("cpu_units", "2", "cpu_units: Input should be a valid integer"),
        ("cpu_units", True, "cpu_units: Input should be a valid integer"),
        ("cpu_units", 2.0, "cpu_units: Input should be a valid integer"),
        ("memory_mb", "512", "memory_mb: Input should be a valid integer"),
        ("memory_mb", False, "memory_mb: Input should be a valid integer"),
        ("timeout_seconds", "30", "timeout_seconds: Input should be a valid number"),
        ("timeout_seconds", True, "timeout_seconds: Input should be a valid number"),
        ("retry", {"max_attempts": "3"}, "retry.max_attempts: Input should be a valid integer"),
        ("retry", {"max_attempts": True}, "retry.max_attempts: Input should be a valid integer"),
        (
            "retry",
            {"initial_delay_seconds": "1"},
            "retry.initial_delay_seconds: Input should be a valid number",
        ),
        (
            "retry",
            {"backoff_multiplier": True},
            "retry.backoff_multiplier: Input should be a valid number",
        ),
    ],
)
async def test_numbers_are_not_strings_or_bools(
    client: httpx.AsyncClient, engine: AsyncEngine, field: str, value: Any, headline: str
) -> None:
    r = await client.post("/jobs", json={"type": "noop", field: value})
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == f"invalid request: {headline}"
    assert await count_jobs(engine) == 0


async def test_strict_fields_still_take_their_json_forms(client: httpx.AsyncClient) -> None:
    """Integers for float fields, ISO strings for timestamps, names and integers for
    priorities, uuids as strings."""
    parent = await submit(client)
    job = await submit(
        client,
        timeout_seconds=30,
        retry={"initial_delay_seconds": 0, "backoff_multiplier": 3},
        run_at="2030-01-01T00:00:00Z",
        priority="low",
        depends_on=[parent["id"]],
    )
    assert job["timeout_seconds"] == 30 and job["retry"]["backoff_multiplier"] == 3
    assert job["priority"] == "low" and job["depends_on"] == [parent["id"]]


async def test_list_priority_query_takes_names_and_numbers(client: httpx.AsyncClient) -> None:
    """A query string is text: ``priority=8`` is the integer there, unlike in a body."""
    high = await submit(client, priority="high")
    three = await submit(client, priority=3)
    for value, expected in (("high", high), ("8", high), ("3", three)):
        items = (await client.get("/jobs", params={"priority": value})).json()["items"]
        assert [j["id"] for j in items] == [expected["id"]], value
    for value in ("99", "true", "urgent", "-1"):
        r = await client.get("/jobs", params={"priority": value})
        assert r.status_code == 422, value
        assert r.json()["error"] == f"invalid request: query.priority: {PRIORITY_RULE}"


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"type": "noop", "name": "caf\xe9"}', "not UTF-8"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"type": "noop", "payload": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "nested"),
    ],
)
async def test_unparsable_bodies_are_422_in_the_error_shape(
    client: httpx.AsyncClient, engine: AsyncEngine, path: str, content: bytes, reason: str
) -> None:
    r = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert body["error"].startswith("malformed JSON body: ") and reason in body["error"]
    assert await count_jobs(engine) == 0


async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """Without a Content-Length the limit is found while reading: still a 413, not a 400."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "noop", "payload": {"blob": "'
        for _ in range(settings.max_request_bytes // 65_536 + 1):
            yield b"x" * 65_536
        yield b'"}}'

    r = await client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"] == f"request body over the limit of {settings.max_request_bytes} bytes"
    assert await count_jobs(engine) == 0


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/jobs", content=b'{"type": "noop",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"] == "malformed JSON body"


async def test_oversized_payload_is_413(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    r = await client.post("/jobs", json={"type": "noop", "payload": {"blob": "x" * 70_000}})
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    r = await client.post(
        "/jobs",
        content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert await count_jobs(engine) == 0


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/jobs", {"type": "noop", "payload": {"a": "x\u0000y"}}, {}),
        ("/jobs", {"type": "noop", "payload": {"k\u0000": [1, {"n": "\u0000"}]}}, {}),
        ("/jobs", {"type": "noop", "name": "a\u0000"}, {}),
        ("/jobs", {"type": "noop", "created_by": "\u0000"}, {}),
        ("/jobs", {"type": "noop"}, {"Idempotency-Key": "a\u0000"}),
        ("/jobs/batch", {"jobs": [{"type": "noop", "payload": {"a": "\u0000"}}]}, {}),
        ("/jobs/batch", {"jobs": [{"type": "noop", "key": "a\u0000"}]}, {}),
        ("/jobs/batch", {"name": "\u0000", "jobs": [{"type": "noop"}]}, {}),
    ],
)
async def test_nul_characters_are_422_on_every_backend(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    """PostgreSQL text cannot hold NUL: found as a 500 before; now refused up front."""
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert "NUL" in r.json()["error"] or "NUL" in str(r.json()["detail"])
    assert await count_jobs(engine) == 0


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a": 123456789012345678901234567890}', "64-bit"),
        (b'{"a": [1, NaN]}', "NaN"),
        (b'{"a": {"b": -Infinity}}', "NaN or Infinity"),
    ],
)
async def test_payload_values_json_cannot_hold_are_422(
    client: httpx.AsyncClient, engine: AsyncEngine, raw: bytes, why: str
) -> None:
    """Python's JSON parser takes these; PostgreSQL and orjson do not (each was a 500)."""
    for path, body in (
        ("/jobs", b'{"type": "noop", "payload": ' + raw + b"}"),
        ("/jobs/batch", b'{"jobs": [{"type": "noop", "payload": ' + raw + b"}]}"),
    ):
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert why in r.json()["error"]
    assert await count_jobs(engine) == 0


async def test_escaped_backslash_u0000_is_not_a_nul(client: httpx.AsyncClient) -> None:
    job = await submit(client, payload={"a": "x\\u0000"})
    assert job["payload"] == {"a": "x\\u0000"}


async def test_nul_in_a_query_is_422_not_500(client: httpx.AsyncClient) -> None:
    r = await client.get("/jobs", params={"type": "a\u0000"})
    assert r.status_code in (200, 422), r.text  # SQLite can hold NUL; PostgreSQL refuses
    if r.status_code == 422:
        assert "NUL" in r.json()["error"]


async def test_dependencies_must_exist(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    parent = await submit(client)
    child = await submit(client, depends_on=[parent["id"], parent["id"]])
    assert child["depends_on"] == [parent["id"]]
    missing = str(uuid.uuid4())
    r = await client.post("/jobs", json={"type": "noop", "depends_on": [parent["id"], missing]})
    assert r.status_code == 422
    assert missing in r.json()["error"]
    assert await count_jobs(engine) == 2
    detail = (await client.get(f"/jobs/{parent['id']}")).json()
    assert detail["dependents"] == [child["id"]]
    assert (
        "waiting for 1 dependency"
        in (await client.get(f"/jobs/{child['id']}")).json()["waiting_reason"]
    )


async def test_get_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/jobs/{uuid.uuid4()}")
    assert r.status_code == 404 and "no job" in r.json()["error"]
    r = await client.get("/jobs/not-a-uuid")
    assert r.status_code == 422


async def test_idempotency_key_replay_and_conflict(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = {"type": "noop", "payload": {"a": 1}, "idempotency_key": "order-42"}
    first = await client.post("/jobs", json=body)
    assert first.status_code == 201
    again = await client.post("/jobs", json=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    header = await client.post(
        "/jobs", json={"type": "noop", "payload": {"a": 1}}, headers={"Idempotency-Key": "order-42"}
    )
    assert header.status_code == 200 and header.json()["id"] == first.json()["id"]
    other = await client.post("/jobs", json={**body, "payload": {"a": 2}})
    assert other.status_code == 409
    assert first.json()["id"] in str(other.json()["detail"])
    clash = await client.post("/jobs", json=body, headers={"Idempotency-Key": "other"})
    assert clash.status_code == 422
    assert await count_jobs(engine) == 1


async def test_concurrent_duplicate_submits_make_one_job(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = {"type": "noop", "payload": {"n": 1}}
    responses = await asyncio.gather(
        *(client.post("/jobs", json=body, headers={"Idempotency-Key": "same"}) for _ in range(40))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1 and codes.count(200) == 39, codes
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_jobs(engine) == 1


async def test_list_filters_and_keyset_pagination(client: httpx.AsyncClient) -> None:
    made = [
        await submit(client, priority=p, type=t)
        for p, t in [
            ("low", "noop"),
            ("high", "sleep"),
            ("high", "noop"),
            (3, "noop"),
            ("normal", "log"),
        ]
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/jobs", params=params)).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [j["id"] for j in reversed(made)]
    high = (await client.get("/jobs", params={"priority": "high"})).json()["items"]
    assert {j["id"] for j in high} == {made[1]["id"], made[2]["id"]}
    three = (await client.get("/jobs", params={"priority": 3})).json()["items"]
    assert [j["id"] for j in three] == [made[3]["id"]]
    noop = (await client.get("/jobs", params={"type": "noop"})).json()["items"]
    assert len(noop) == 3
    pending = (await client.get("/jobs", params={"status": ["pending", "ready"]})).json()["items"]
    assert len(pending) == 5
    none = (await client.get("/jobs", params={"status": "completed"})).json()["items"]
    assert none == []
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert (await client.get("/jobs", params={"created_after": future})).json()["items"] == []
    assert len((await client.get("/jobs", params={"created_before": future})).json()["items"]) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 501},
        {"limit": 0},
        {"status": "sleeping"},
        {"cursor": "garbage!"},
        {"priority": "urgent"},
        {"created_after": "yesterday"},
        {"batch_id": "x"},
    ],
)
async def test_list_rejects_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    r = await client.get("/jobs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_openapi_is_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/jobs/batch" in spec["paths"] and "/jobs/{job_id}/cancel" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_edges_are_written(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    a = await submit(client)
    b = await submit(client)
    c = await submit(client, depends_on=[a["id"], b["id"]])
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(edges.c.depends_on_id).where(edges.c.job_id == uuid.UUID(c["id"]))
            )
        ).all()
    assert {str(r[0]) for r in rows} == {a["id"], b["id"]}


async def test_submit_responses_match_the_model_encoding(client: httpx.AsyncClient) -> None:
    """POST /jobs and /jobs/batch encode their rows directly (for speed); GET goes through the
    JobPublic model. Both must give the same document, field for field and byte for byte."""
    run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    posted = await submit(
        client,
        name="encoded",
        payload={"n": 1, "f": 2.5, "s": "é", "l": [None, True]},
        priority=7,
        cpu_units=2,
        memory_mb=512,
        retry={"max_attempts": 4, "initial_delay_seconds": 3, "backoff_multiplier": 1},
        timeout_seconds=30,
        run_at=run_at,
        idempotency_key="encoded-1",
        created_by="me",
    )
    r = await client.post(
        "/jobs/batch",
        json={"jobs": [{"type": "noop", "key": "a"}, {"type": "noop", "depends_on": ["a"]}]},
    )
    assert r.status_code == 201
    batch_jobs = r.json()["jobs"]
    for job in [posted, *batch_jobs]:
        shown = (await client.get(f"/jobs/{job['id']}")).json()
        for extra in (
            "dependents",
            "waiting_reason",
            "progress",
            "predicted_start_at",
            "predicted_start_late_at",
        ):
            shown.pop(extra)
        assert job == shown
        assert {k: type(v) for k, v in job.items()} == {k: type(v) for k, v in shown.items()}
        assert {k: type(v) for k, v in job["retry"].items()} == {
            k: type(v) for k, v in shown["retry"].items()
        }
    assert posted["created_at"].endswith("Z") and posted["retry"]["initial_delay_seconds"] == 3.0
