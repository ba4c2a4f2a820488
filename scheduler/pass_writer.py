"""The pass's writes on PostgreSQL as ONE statement, on a connection of the scheduler's own.

A pass used to be six round trips through the pool: a pre-ping, BEGIN, the jobs update, the
attempts insert, the attempts update, COMMIT (plus the workers' rows on heartbeat passes); on
the shared 2-core machine that was the larger half of a pass (``scheduler.passes`` logged
write p50 11–20 ms against 0.3 ms for the commit's fsync). Here every write of a pass is one
statement of data-modifying CTEs, run in autocommit: one round trip, atomic as a
transaction is, prepared by psycopg after its first executions.

The semantics are those of :mod:`scheduler.store`'s functions (the SQLite path still uses
them): job rows move only ``WHERE status = from AND attempts = n`` and the statement returns
the rows that moved with their dispatch fields; an attempt row opens for each placement that
won; reports close attempt rows still open; heartbeats upsert workers (outcome counters
added); workers past their lease are marked offline.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from scheduler.store import JobWrite

_PASS = """
WITH v AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(from_status)s::text[], %(from_attempts)s::int[], %(status)s::text[],
        %(attempts)s::int[], %(reason)s::text[], %(error)s::text[], %(result)s::text[],
        %(not_before)s::timestamptz[], %(worker_id)s::text[], %(started_at)s::timestamptz[],
        %(finished_at)s::timestamptz[], %(opens)s::bool[]
    ) AS v(id, from_status, from_attempts, status, attempts, reason, error, result, not_before,
           worker_id, started_at, finished_at, opens)
), moved AS (
    UPDATE jobs AS j SET
        status = v.status, attempts = v.attempts, status_reason = v.reason,
        error = CASE WHEN v.status = 'completed' THEN NULL ELSE COALESCE(v.error, j.error) END,
        result = CAST(v.result AS jsonb), not_before = v.not_before,
        worker_id = v.worker_id, started_at = COALESCE(j.started_at, v.started_at),
        finished_at = v.finished_at, updated_at = %(now)s
    FROM v
    WHERE j.id = v.id AND j.status = v.from_status AND j.attempts = v.from_attempts
    RETURNING j.id, j.type, j.name, j.payload, j.timeout_seconds, j.batch_id, j.cpu_units,
              j.memory_mb, j.attempts, j.worker_id, v.opens
), opened AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, cpu_units, memory_mb, started_at)
    SELECT id, attempts, worker_id, cpu_units, memory_mb, %(now)s FROM moved WHERE opens
), closed AS (
    UPDATE job_attempts AS a SET
        started_at = COALESCE(c.started_at, a.started_at), finished_at = c.finished_at,
        duration_seconds = c.duration, outcome = c.outcome, error = c.error,
        result = CAST(c.result AS jsonb)
    FROM unnest(
        %(c_job_id)s::uuid[], %(c_attempt)s::int[], %(c_started)s::timestamptz[],
        %(c_finished)s::timestamptz[], %(c_duration)s::float8[], %(c_outcome)s::text[],
        %(c_error)s::text[], %(c_result)s::text[]
    ) AS c(job_id, attempt, started_at, finished_at, duration, outcome, error, result)
    WHERE a.job_id = c.job_id AND a.attempt = c.attempt AND a.finished_at IS NULL
), beats AS (
    INSERT INTO workers AS w (id, hostname, cpu_units, memory_mb, state, job_types, started_at,
                              last_heartbeat, draining, jobs_succeeded, jobs_failed)
    SELECT id, hostname, cpu_units, memory_mb, state, CAST(job_types AS jsonb), started_at,
           last_heartbeat, draining, ok, bad
    FROM unnest(
        %(w_id)s::text[], %(w_hostname)s::text[], %(w_cpu)s::int[], %(w_mem)s::int[],
        %(w_state)s::text[], %(w_types)s::text[], %(w_started)s::timestamptz[],
        %(w_beat)s::timestamptz[], %(w_draining)s::bool[], %(w_ok)s::bigint[],
        %(w_bad)s::bigint[]
    ) AS b(id, hostname, cpu_units, memory_mb, state, job_types, started_at, last_heartbeat,
           draining, ok, bad)
    ON CONFLICT (id) DO UPDATE SET
        hostname = excluded.hostname, cpu_units = excluded.cpu_units,
        memory_mb = excluded.memory_mb, state = excluded.state, job_types = excluded.job_types,
        started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,
        draining = excluded.draining, jobs_succeeded = w.jobs_succeeded + excluded.jobs_succeeded,
        jobs_failed = w.jobs_failed + excluded.jobs_failed
), gone AS (
    UPDATE workers SET state = 'offline' WHERE id = ANY(%(gone)s::text[])
)
SELECT id, type, name, payload, timeout_seconds, batch_id, cpu_units, memory_mb FROM moved
"""


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def pass_params(
    writes: Sequence[JobWrite],
    opens: set[uuid.UUID],
    closes: list[dict[str, Any]],
    workers: list[dict[str, Any]],
    gone: list[str],
    now: datetime,
) -> dict[str, Any]:
    """The statement's parameters: columns as arrays (``writes`` in id order, the lock order
    every writer uses)."""
    return {
        "now": now,
        "ids": [w.id for w in writes],
        "from_status": [w.from_status for w in writes],
        "from_attempts": [w.from_attempts for w in writes],
        "status": [w.status for w in writes],
        "attempts": [w.attempts for w in writes],
        "reason": [w.reason for w in writes],
        "error": [w.error for w in writes],
        "result": [_json(w.result) for w in writes],
        "not_before": [w.not_before for w in writes],
        "worker_id": [w.worker_id for w in writes],
        "started_at": [w.started_at for w in writes],
        "finished_at": [w.finished_at for w in writes],
        "opens": [w.id in opens for w in writes],
        "c_job_id": [r["b_job_id"] for r in closes],
        "c_attempt": [r["b_attempt"] for r in closes],
        "c_started": [r["b_started_at"] for r in closes],
        "c_finished": [r["b_finished_at"] for r in closes],
        "c_duration": [r["b_duration"] for r in closes],
        "c_outcome": [r["b_outcome"] for r in closes],
        "c_error": [r["b_error"] for r in closes],
        "c_result": [_json(r["b_result"]) for r in closes],
        "w_id": [r["id"] for r in workers],
        "w_hostname": [r["hostname"] for r in workers],
        "w_cpu": [r["cpu_units"] for r in workers],
        "w_mem": [r["memory_mb"] for r in workers],
        "w_state": [r["state"] for r in workers],
        "w_types": [_json(r["job_types"]) for r in workers],
        "w_started": [r["started_at"] for r in workers],
        "w_beat": [r["last_heartbeat"] for r in workers],
        "w_draining": [r["draining"] for r in workers],
        "w_ok": [r["jobs_succeeded"] for r in workers],
        "w_bad": [r["jobs_failed"] for r in workers],
        "gone": list(gone),
    }


class PassWriter:
    """One autocommit psycopg connection, opened on first use and again after it broke."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, row_factory=dict_row
            )
        return self._conn

    async def write(self, params: dict[str, Any]) -> dict[uuid.UUID, Any]:
        """Run the pass's statement; the rows that moved, by id, with their dispatch fields."""
        conn = await self._connection()
        try:
            cursor = await conn.execute(_PASS, params)
            rows = await cursor.fetchall()
        except psycopg.OperationalError:
            await self.close()  # reconnect on the next pass
            raise
        return {row["id"]: row for row in rows}

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
