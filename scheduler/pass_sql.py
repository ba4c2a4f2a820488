"""A pass's PostgreSQL statements, on a connection of the scheduler's own: one read of the new
jobs a pass was told about (with their dependencies' states), and every write as ONE statement.

Every write of a pass is one statement of data-modifying CTEs, run in autocommit: one round
trip, atomic as a transaction is, prepared by psycopg after its first executions. Writing a
pass as statements through the pool (a pre-ping, BEGIN, the jobs update, the attempt rows,
COMMIT) costs six round trips, the larger half of a pass on a shared 2-core machine
(``scheduler.passes`` logged write p50 11–20 ms against 0.3 ms for the commit's fsync).

The semantics are those of :mod:`scheduler.store`'s functions (the SQLite path still uses
them): job rows move only ``WHERE status = from AND attempts = n`` and the statement returns
the rows that moved with their dispatch fields; an attempt row opens for each placement that
won; reports close attempt rows still open; heartbeats upsert workers (outcome counters
added); workers past their lease are marked offline. Nothing is written unless the leader's
token (``scheduler_leadership.epoch``, locked ``FOR SHARE`` for the statement) is still this
scheduler's (:mod:`scheduler.leader`); else the statement returns one row of NULLs and
:meth:`PassConnection.write` raises :class:`scheduler.leader.LeadershipLost`.

The read is :func:`scheduler.store.load_pending` as one statement: the pending rows named by the
pass's ``job.submitted`` hints (an array parameter, so one prepared statement serves every
pass whatever the count; an ``IN`` list of a new length each pass was re-parsed by psycopg and
re-planned by PostgreSQL) with their edges and the edges' states aggregated per job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg.rows import dict_row

from scheduler.leader import LeadershipLost, holder_name
from scheduler.rows import JOB_COLUMNS, JobWrite
from scheduler.store import SPEC_COLUMNS, Loaded, Upstream, loaded_from

if TYPE_CHECKING:
    from scheduler.rows import PassWrite

#: A pass connection (re)opened on a stalled path gives up after this long.
CONNECT_TIMEOUT_SECONDS = 10
_JOB_KEYS = ("id", "from_status", "from_attempts", *(c.field for c in JOB_COLUMNS))
#: A job write as the statement's row: a dict display made from JOB_COLUMNS once, at import. A
#: pass may hold 10,000 writes; a generic ``dict(zip(...))`` per write took twice as long.
_job_row: Callable[[JobWrite, set[uuid.UUID]], dict[str, Any]] = eval(
    "lambda w, opens: {"
    + ", ".join(f"{k!r}: w.{k}" for k in _JOB_KEYS)
    + ", 'opens': w.id in opens}"
)
_V_COLUMNS = ", ".join(f"{c.field} {c.pg_type}" for c in JOB_COLUMNS)
_V_SET = ", ".join(f"{c.column} = {c.pg_set or 'v.' + c.field}" for c in JOB_COLUMNS)
_PASS = f"""
WITH fence AS (
    SELECT epoch FROM scheduler_leadership WHERE id = 1 AND epoch = %(epoch)s FOR SHARE
), v AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb) AS v(
        id uuid, from_status text, from_attempts int, {_V_COLUMNS}, opens bool)
), moved AS (
    UPDATE jobs AS j SET {_V_SET}, updated_at = %(now)s
    FROM v
    WHERE j.id = v.id AND j.status = v.from_status AND j.attempts = v.from_attempts
      AND EXISTS (SELECT FROM fence)
    RETURNING j.id, j.type, j.name, j.payload, j.timeout_seconds, j.batch_id, j.cpu_units,
              COALESCE(j.memory_escalated_mb, j.memory_mb) AS memory_mb, j.attempts,
              j.worker_id, j.tenant, v.opens
), opened AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, cpu_units, memory_mb, started_at)
    SELECT id, attempts, worker_id, cpu_units, memory_mb, %(now)s FROM moved WHERE opens
), closed AS (
    UPDATE job_attempts AS a SET
        started_at = COALESCE(c.started_at, a.started_at), finished_at = c.finished_at,
        duration_seconds = c.duration, outcome = c.outcome, error = c.error, result = c.result,
        released_at = c.released_at, failure_class = c.failure_class,
        peak_memory_mb = c.peak_memory_mb
    FROM jsonb_to_recordset(%(closes)s::jsonb) AS c(
        job_id uuid, attempt int, started_at timestamptz, finished_at timestamptz,
        duration float8, outcome text, error text, result jsonb, released_at timestamptz,
        failure_class text, peak_memory_mb int)
    WHERE a.job_id = c.job_id AND a.attempt = c.attempt AND a.finished_at IS NULL
      AND EXISTS (SELECT FROM fence)
), released AS (
    UPDATE job_attempts AS a SET released_at = %(now)s
    FROM jsonb_to_recordset(%(releases)s::jsonb) AS r(job_id uuid, attempt int)
    WHERE a.job_id = r.job_id AND a.attempt = r.attempt AND a.released_at IS NULL
      AND EXISTS (SELECT FROM fence)
), beats AS (
    INSERT INTO workers AS w (id, hostname, cpu_units, memory_mb, state, job_types, started_at,
                              last_heartbeat, draining, resources, labels, jobs_succeeded,
                              jobs_failed)
    SELECT id, hostname, cpu_units, memory_mb, state, job_types, started_at, last_heartbeat,
           draining, resources, labels, jobs_succeeded, jobs_failed
    FROM jsonb_to_recordset(%(workers)s::jsonb) AS b(
        id text, hostname text, cpu_units int, memory_mb int, state text, job_types jsonb,
        started_at timestamptz, last_heartbeat timestamptz, draining bool, resources jsonb,
        labels jsonb, jobs_succeeded bigint, jobs_failed bigint)
    WHERE EXISTS (SELECT FROM fence)
    ON CONFLICT (id) DO UPDATE SET
        hostname = excluded.hostname, cpu_units = excluded.cpu_units,
        memory_mb = excluded.memory_mb, state = excluded.state, job_types = excluded.job_types,
        started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,
        draining = excluded.draining, resources = excluded.resources, labels = excluded.labels,
        jobs_succeeded = w.jobs_succeeded + excluded.jobs_succeeded,
        jobs_failed = w.jobs_failed + excluded.jobs_failed
), gone AS (
    UPDATE workers SET state = 'offline'
    WHERE id IN (SELECT jsonb_array_elements_text(%(gone)s::jsonb))
      AND EXISTS (SELECT FROM fence)
), kept AS (
    INSERT INTO breakers AS k (job_type, state, opened_at, cooldown_seconds, forced, updated_at)
    SELECT job_type, state, opened_at, cooldown_seconds, forced, %(now)s
    FROM jsonb_to_recordset(%(breakers)s::jsonb) AS k2(
        job_type text, state text, opened_at timestamptz, cooldown_seconds float8, forced bool)
    WHERE EXISTS (SELECT FROM fence)
    ON CONFLICT (job_type) DO UPDATE SET
        state = excluded.state, opened_at = excluded.opened_at,
        cooldown_seconds = excluded.cooldown_seconds, forced = excluded.forced,
        updated_at = excluded.updated_at
), dropped AS (
    DELETE FROM job_attempts AS a
    USING jsonb_to_recordset(%(drops)s::jsonb) AS d(job_id uuid, attempt int)
    WHERE a.job_id = d.job_id AND a.attempt = d.attempt AND a.finished_at IS NULL
      AND EXISTS (SELECT FROM fence)
)
SELECT id, type, name, payload, timeout_seconds, batch_id, cpu_units, memory_mb, tenant
FROM moved
UNION ALL  -- the fence's verdict: a row of NULLs when this scheduler no longer leads
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE NOT EXISTS (SELECT FROM fence)
"""


#: Jobs by id (the ``job.submitted`` hints of a pass), with their dependencies' states, in joins
#: the ids drive. Two plans this replaced were quadratic: ``status = 'pending' AND id =
#: ANY(array)`` walked the partial index's pending rows, each through the whole array (so the
#: status is checked by the caller: no condition for the planner to prefer that index for); and
#: a subquery per job for its edges became, right after a DAG's COPY and before any ANALYZE, a
#: scan of every edge per job (so the edges are aggregated in one grouped join).
_PENDING_NAMED = f"""
WITH want AS (SELECT DISTINCT unnest(%(ids)s::uuid[]) AS id),
edges AS (
    SELECT d.job_id, array_agg(d.depends_on_id) AS dep_ids, array_agg(u.status) AS dep_status,
           array_agg(u.name) AS dep_name,
           array_agg(CASE WHEN u.status IN ('failed', 'cancelled') THEN u.error END) AS dep_error
    FROM want JOIN job_dependencies AS d ON d.job_id = want.id
    LEFT JOIN jobs AS u ON u.id = d.depends_on_id
    GROUP BY d.job_id
)
SELECT {", ".join(f"j.{c.name}" for c in SPEC_COLUMNS)},
       e.dep_ids, e.dep_status, e.dep_name, e.dep_error
FROM want JOIN jobs AS j ON j.id = want.id
LEFT JOIN edges AS e ON e.job_id = j.id
"""
#: The fallback poll: ids of pending rows (those the core lacks are then read as above). Ids
#: only: a DAG's blocked jobs stay ``pending`` in the table, and reading all of them with their
#: edges every poll was most of PostgreSQL's work in ``bench dag10k``.
_PENDING_IDS = "SELECT id FROM jobs WHERE status = 'pending' LIMIT %(limit)s"


def _doc(value: Any) -> str:
    """One parameter as a JSON document: one string for psycopg to send, instead of a dozen
    arrays to adapt (that adaptation was most of the statement's client-side cost)."""
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC).decode()


def pass_params(
    writes: Sequence[JobWrite],
    opens: set[uuid.UUID],
    closes: list[dict[str, Any]],
    workers: list[dict[str, Any]],
    gone: list[str],
    now: datetime,
    drops: Sequence[tuple[uuid.UUID, int]] = (),
    releases: Sequence[tuple[uuid.UUID, int]] = (),
    breakers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The statement's parameters (``writes`` in id order, the lock order every writer uses)."""
    jobs = [_job_row(w, opens) for w in writes]
    closed = [
        {
            "job_id": r["b_job_id"],
            "attempt": r["b_attempt"],
            "started_at": r["b_started_at"],
            "finished_at": r["b_finished_at"],
            "duration": r["b_duration"],
            "outcome": r["b_outcome"],
            "error": r["b_error"],
            "result": r["b_result"],
            "released_at": r["b_released_at"],
            "failure_class": r["b_failure_class"],
            "peak_memory_mb": r["b_peak_memory_mb"],
        }
        for r in closes
    ]
    return {
        "now": now,
        "jobs": _doc(jobs),
        "closes": _doc(closed),
        "workers": _doc(workers),
        "gone": _doc(gone),
        "drops": _doc([{"job_id": j, "attempt": a} for j, a in drops]),
        "releases": _doc([{"job_id": j, "attempt": a} for j, a in releases]),
        "breakers": _doc(list(breakers)),
    }


class PassConnection:
    """The PostgreSQL pass store (:class:`scheduler.pass_store.PassStore`): one autocommit
    psycopg connection, opened on first use and again after it broke."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        #: The leader's token every write is fenced by (set on acquiring the lead).
        self.epoch: int | None = None
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                row_factory=dict_row,
                application_name=holder_name(),
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )
            # The statement's best plan does not depend on its parameters (index lookups by id
            # for every row); planning it afresh at each pass cost PostgreSQL ~1.5 ms.
            await self._conn.execute("SET plan_cache_mode = force_generic_plan")
            # Every statement here finds its rows by key, so its cost follows the pass, never
            # the table. Without this the generic plan of a small table (10,000 rows: a young
            # deployment, a benchmark) hash-joined a scan of all of ``jobs``: write 4.9 ms
            # instead of 1.1 ms per one-event pass, slower than with 1,000,000 rows.
            await self._conn.execute("SET enable_seqscan = off")
        return self._conn

    async def read_pending(
        self, ids: Sequence[uuid.UUID] | None, known: Container[uuid.UUID], limit: int
    ) -> Loaded:
        """New (``pending``) jobs: the ones named, or (fallback poll) any ``known`` lacks."""
        if ids is None:
            found = await self.run(_PENDING_IDS, {"limit": limit})
            ids = [r["id"] for r in found if r["id"] not in known]
        else:
            ids = [i for i in ids if i not in known]
        if not ids:
            return Loaded(specs=[], batch_of={}, cancel_requested=[])
        rows = [r for r in await self.run(_PENDING_NAMED, {"ids": ids}) if r["status"] == "pending"]
        upstream: dict[uuid.UUID, list[Upstream]] = {
            r["id"]: list(
                zip(r["dep_ids"], r["dep_status"], r["dep_name"], r["dep_error"], strict=True)
            )
            for r in rows
            if r["dep_ids"]
        }
        return loaded_from(rows, lambda job_id: upstream.get(job_id, ()))

    async def write(self, w: PassWrite) -> dict[uuid.UUID, Any]:
        """Run the pass's statement; the rows that moved, by id, with their dispatch fields."""
        params = pass_params(
            w.jobs,
            {p.job_id for p in w.placements},
            w.attempts.closes,
            w.workers,
            w.gone,
            w.now,
            w.attempts.drops,
            w.attempts.releases,
            w.breakers,
        )
        if self.epoch is None:
            raise LeadershipLost("this scheduler holds no leader's token")
        rows = await self.run(_PASS, {**params, "epoch": self.epoch})
        if rows and rows[-1]["id"] is None:
            raise LeadershipLost(f"the leader's token moved past epoch {self.epoch}")
        return {row["id"]: row for row in rows}

    async def run(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One statement's rows; a broken connection is dropped (the next call reconnects)."""
        conn = await self._connection()
        try:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()
        except psycopg.OperationalError:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
