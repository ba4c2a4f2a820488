"""Fill a migrated database fast with ``COPY``: millions of finished jobs and a set of waiting
ones, shaped like a real history.

Jobs come in groups: a head and, one time in twenty, a chain of four more behind it (so about
20 % of the jobs have an edge). Finished groups are ``completed``; waiting groups have a
``ready`` head and ``blocked`` followers — the steady state the scheduler rebuilds from. No
``job_attempts`` rows are written for the finished jobs: no scheduler query reads them.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from bench.harness import psycopg_dsn

JOB_COLUMNS = (
    "id, name, type, payload, priority, cpu_units, memory_mb, max_attempts,"
    " initial_delay_seconds, backoff_multiplier, status, attempts, worker_id,"
    " created_at, updated_at, started_at, finished_at"
)
_EPOCH = time.time() - 30 * 86_400


@dataclass
class Seeded:
    finished: int
    waiting: int
    edges: int
    seconds: float
    #: A few finished ids (for queries that look jobs up by id).
    finished_sample: list[uuid.UUID]


def _ts(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "+00"


def _groups(rng: random.Random, count: int) -> Iterator[list[uuid.UUID]]:
    made = 0
    while made < count:
        size = 5 if rng.random() < 0.05 else 1
        size = min(size, count - made)
        made += size
        yield [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(size)]


def _lines(
    rng: random.Random, count: int, finished: bool, start: int, edges: list[str]
) -> Iterator[str]:
    i = start
    for group in _groups(rng, count):
        for pos, job_id in enumerate(group):
            created = _EPOCH + i * 0.5
            if finished:
                status, attempts, worker = "completed", 1, "w000"
                started, ended = _ts(created + 1), _ts(created + 2)
            else:
                status = "ready" if pos == 0 else "blocked"
                attempts, worker, started, ended = 0, "\\N", "\\N", "\\N"
            yield (
                f"{job_id}\tjob-{i}\tnoop\t{{}}\t{rng.randint(0, 10)}\t{rng.randint(1, 4)}"
                f"\t{rng.randint(256, 4096)}\t3\t1\t2\t{status}\t{attempts}\t{worker}"
                f"\t{_ts(created)}\t{_ts(created)}\t{started}\t{ended}\n"
            )
            if pos:
                edges.append(f"{job_id}\t{group[pos - 1]}\n")
            i += 1


def _copy(cur: psycopg.Cursor[object], sql: str, lines: Iterator[str], chunk: int = 5_000) -> None:
    with cur.copy(sql) as copy:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= chunk:
                copy.write("".join(buf))
                buf.clear()
        if buf:
            copy.write("".join(buf))


def seed(db_url: str, finished: int, waiting: int, seed: int = 0) -> Seeded:
    """COPY ``finished`` completed and ``waiting`` ready/blocked jobs with their edges."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    edges: list[str] = []
    sample: list[uuid.UUID] = []
    with psycopg.connect(psycopg_dsn(db_url)) as conn:
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = off")
        sql = f"COPY jobs ({JOB_COLUMNS}) FROM STDIN"
        _copy(cur, sql, _lines(rng, finished, True, 0, edges))
        sample = [uuid.UUID(line[:36]) for line in edges[:200]]
        _copy(cur, sql, _lines(rng, waiting, False, finished, edges))
        _copy(cur, "COPY job_dependencies (job_id, depends_on_id) FROM STDIN", iter(edges))
        conn.commit()
    with psycopg.connect(psycopg_dsn(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE job_dependencies")
    return Seeded(finished, waiting, len(edges), time.perf_counter() - t0, sample)
