"""Rows written once: a job, or a batch with its jobs and edges, under its tenant's
idempotency key. The API's submits and the leading scheduler's cron ticks both write through
these, so a schedule's run is inserted exactly as a submitted one is."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from models.callback_tables import BatchCallback
from models.enums import JobStatus
from models.tables import Batch, Job, JobDependency

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
batches: Table = Batch.__table__  # type: ignore[attr-defined]
callbacks_t: Table = BatchCallback.__table__  # type: ignore[attr-defined]


def fresh_state(
    *,
    tenant: str,
    created_by: str | None,
    batch_id: uuid.UUID | None,
    idempotency_key: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The columns of a job nobody has taken in yet (a submit's, or a job a job submitted)."""
    return {
        "idempotency_key": idempotency_key,
        "status": JobStatus.PENDING.value,
        "status_reason": None,
        "attempts": 0,
        "not_before": None,
        "worker_id": None,
        "cancel_requested_at": None,
        "result": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "batch_id": batch_id,
        "tenant": tenant,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }


def insert_of(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT`` into ``table`` in the connection's dialect, which has ``on_conflict_do_…``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


_INSERT_ONCE: dict[tuple[str, str], Any] = {}


async def _insert_once(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row of ``table``; False when its tenant's idempotency key is already taken (a
    concurrent duplicate waits for the first to commit, then inserts nothing). The statement is
    built once per table and dialect, its values passed as parameters: building it per request
    (values inlined) was a fifth of the API's CPU per ``POST /jobs``. A row without a key can never
    conflict (the unique index is partial), so one statement serves both."""
    cache_key = (conn.dialect.name, table.name)
    stmt = _INSERT_ONCE.get(cache_key)
    if stmt is None:
        stmt = (
            insert_of(conn, table)
            .on_conflict_do_nothing(
                index_elements=["tenant", "idempotency_key"],
                index_where=table.c.idempotency_key.isnot(None),
            )
            .returning(table.c.id)
        )
        _INSERT_ONCE[cache_key] = stmt
    result = await conn.execute(stmt, values)
    return result.first() is not None


async def insert_job(
    conn: AsyncConnection, values: dict[str, Any], depends_on: Sequence[uuid.UUID]
) -> bool:
    """Insert one job and its edges; False when its idempotency key is already taken."""
    if not await _insert_once(conn, jobs, values):
        return False
    if depends_on:
        await conn.execute(
            edges.insert(), [{"job_id": values["id"], "depends_on_id": d} for d in depends_on]
        )
    return True


async def insert_batch(
    conn: AsyncConnection,
    batch: dict[str, Any],
    rows: list[dict[str, Any]],
    edge_rows: list[dict[str, Any]],
    callback_rows: Sequence[dict[str, Any]] = (),
) -> bool:
    """Insert a batch with its jobs, edges and callbacks; False when the batch's idempotency
    key is taken (then nothing is written)."""
    if not await _insert_once(conn, batches, batch):
        return False
    await insert_rows(conn, jobs, rows)
    await insert_rows(conn, edges, edge_rows)
    if callback_rows:
        await conn.execute(callbacks_t.insert(), list(callback_rows))
    return True


def callback_rows(
    specs: Sequence[dict[str, Any]], batch_id: uuid.UUID, tenant: str, now: datetime
) -> list[dict[str, Any]]:
    """The ``batch_callbacks`` rows of a batch's ``[{"url", "events"}]`` (checked already),
    a microsecond apart so they list in the order given."""
    return [
        {
            "id": uuid.uuid4(),
            "batch_id": batch_id,
            "tenant": tenant,
            "url": spec["url"],
            "events": list(spec["events"]),
            "done": False,
            "created_at": now + timedelta(microseconds=i),
        }
        for i, spec in enumerate(specs)
    ]


async def insert_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (all with the same keys) in the open transaction: ``COPY`` on
    PostgreSQL, an ``executemany`` elsewhere. COPY streams the rows in one statement; the
    ``executemany`` it replaces sent one INSERT per row and was most of a 10,000-job batch."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        for start in range(0, len(rows), 2000):
            await conn.execute(table.insert(), rows[start : start + 2000])
        return
    columns = list(rows[0])
    json_columns = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert pg is not None
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        async with pg.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for i in json_columns:
                    if values[i] is not None:
                        values[i] = orjson.dumps(values[i]).decode()
                await copy.write_row(values)
    except psycopg.Error as exc:
        # As SQLAlchemy would have raised it (IntegrityError → 409, OperationalError → 503).
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
