"""Job types of the fault-injection suite. Every process of a fault test imports this module
(``SMARTQ_IMPORTS=tests.faults.jobs``).

``side_effect`` records ``(job_id, attempt, worker_id, ts)`` in the ``side_effects`` table of
the database named by :data:`SIDE_EFFECTS_URL_ENV`. The table has no unique constraint, so an
attempt that runs twice, or a job that runs again after its result was committed, stays
visible to :mod:`tests.faults.checker`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

import smartq
from smartq.errors import RetryableError
from worker.context import JobContext

SIDE_EFFECTS_URL_ENV = "SMARTQ_TEST_SIDE_EFFECTS_URL"

SIDE_EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS side_effects (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    ts timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# One autocommit connection per worker process, shared by the job threads under a lock: a
# worker may run hundreds of attempts at once, more than PostgreSQL's connection limit.
_lock = threading.Lock()
_conn: psycopg.Connection[Any] | None = None


def _record(ctx: JobContext) -> None:
    global _conn
    with _lock:
        if _conn is None or _conn.closed:
            _conn = psycopg.connect(os.environ[SIDE_EFFECTS_URL_ENV], autocommit=True)
        _conn.execute(
            "INSERT INTO side_effects (job_id, attempt, worker_id) VALUES (%s, %s, %s)",
            (ctx.job_id, ctx.attempt, ctx.worker_id),
        )


@smartq.job("side_effect")
def side_effect(ctx: JobContext) -> dict[str, Any]:
    """``{"seconds": s, "stubborn": bool, "fail_times": n}``: waits ``s`` seconds (waking on
    cancellation, unless ``stubborn``: then it ignores timeout and cancel alike), fails its
    first ``n`` attempts, then records one side effect and returns."""
    seconds = float(ctx.payload.get("seconds", 0))
    if ctx.payload.get("stubborn"):
        time.sleep(seconds)
    elif seconds > 0 and ctx.sleep(seconds):
        return {"stopped": True}  # cooperative: a stopped attempt leaves no side effect
    if ctx.attempt <= int(ctx.payload.get("fail_times", 0)):
        raise RetryableError(f"side_effect: attempt {ctx.attempt} fails on purpose")
    _record(ctx)
    return {"attempt": ctx.attempt, "worker": ctx.worker_id}


@smartq.job("spawner")
def spawner(ctx: JobContext) -> dict[str, Any]:
    """``{"n": n, "hold": s}``: submits ``n`` ``side_effect`` children and a continuation
    after them, then (first attempt only) holds its worker ``s`` seconds, so a test can kill
    the worker and see the retry ask for the same children again."""
    n = int(ctx.payload.get("n", 10))
    for i in range(n):
        ctx.submit("side_effect", {"seconds": 0.05, "i": i})
    then = ctx.continue_with("side_effect", {"continuation": True})
    if ctx.attempt == 1:
        ctx.sleep(float(ctx.payload.get("hold", 0)))
    return {"continuation": str(then.id)}
