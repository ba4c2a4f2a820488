"""The Celery side of ``bench sdk`` (see bench/celery_peer.py), run in the peer's own venv.

``python celery_app.py loop N`` submits N no-op tasks with ``.delay()`` from one thread and
prints one JSON line once every result is stored; ``celery -A celery_app worker`` runs them.
Both read the broker, the result backend and the queue from ``BENCH_CELERY_*`` (set by the
driver). Nothing here imports smartq: this venv has only Celery and its drivers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import sqlalchemy
from celery import Celery

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench_celery")
BACKEND = os.environ.get("BENCH_CELERY_BACKEND", "db+postgresql://postgres@127.0.0.1/postgres")

app = Celery("bench_celery", broker=os.environ.get("BENCH_CELERY_BROKER"), backend=BACKEND)
app.conf.update(
    task_acks_late=True,
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    worker_prefetch_multiplier=4,
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    return None


def stored(engine: sqlalchemy.Engine, since: float) -> tuple[int, float]:
    """How many results are stored, and the epoch of the last one."""
    with engine.connect() as conn:
        n, last = conn.execute(
            sqlalchemy.text(
                "SELECT count(*), extract(epoch FROM max(date_done)) FROM celery_taskmeta "
                "WHERE status = 'SUCCESS' AND date_done >= to_timestamp(:since) AT TIME ZONE 'UTC'"
            ),
            {"since": since},
        ).one()
    return int(n), float(last or 0.0)


def loop(count: int, timeout: float = 600.0) -> dict[str, Any]:
    """``count`` delays from one thread; jobs/s from the first delay to the last result."""
    engine = sqlalchemy.create_engine(BACKEND.removeprefix("db+"))
    noop.delay().get(timeout=60)  # warm-up: connections, the result table exists
    t0 = time.time()
    cpu0 = time.thread_time()
    ids = [noop.delay().id for _ in range(count)]
    submitted = time.time() - t0
    cpu_ms = (time.thread_time() - cpu0) * 1000 / count
    deadline = time.monotonic() + timeout
    done, last = stored(engine, t0)
    while done < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {count} results after {timeout}s")
        time.sleep(0.25)
        done, last = stored(engine, t0)
    engine.dispose()
    elapsed = last - t0
    return {
        "jobs": len(ids),
        "jobs_per_s": count / elapsed,
        "elapsed_s": elapsed,
        "submit_s": submitted,
        "client_cpu_ms": cpu_ms,
    }


if __name__ == "__main__":
    if sys.argv[1:2] != ["loop"]:
        raise SystemExit("usage: celery_app.py loop N")
    print(json.dumps(loop(int(sys.argv[2]))), flush=True)
