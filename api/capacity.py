"""What holds each worker's capacity now, read from the attempt rows not yet released.

The one truth for capacity in use: the scheduler opens an attempt row at dispatch and sets its
``released_at`` when the attempt's cpu and memory are free again (at its end, or later when a
timed-out thread finally returns). ``GET /workers``, waiting reasons and the scheduler's own
state (rebuilt from the same rows) therefore agree, lingering threads included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from models.tables import Job, JobAttempt
from scheduler.values import Lingering

attempts_t = JobAttempt.__table__  # type: ignore[attr-defined]
jobs_t = Job.__table__  # type: ignore[attr-defined]


@dataclass
class Holding:
    """One worker's use: attempts that hold resources, and which of them already ended."""

    cpu_in_use: int = 0
    memory_in_use: int = 0
    running_jobs: int = 0
    lingering: list[Lingering] = field(default_factory=list)
    #: Named resources held, by name (an attempt holds what its job asks for).
    resources_in_use: dict[str, int] = field(default_factory=dict)


async def holding(conn: AsyncConnection) -> dict[str, Holding]:
    """Per worker id, from the partial index of unreleased attempts (a handful of rows)."""
    rows = await conn.execute(
        select(
            attempts_t.c.worker_id,
            attempts_t.c.job_id,
            attempts_t.c.attempt,
            attempts_t.c.cpu_units,
            attempts_t.c.memory_mb,
            attempts_t.c.finished_at,
            jobs_t.c.resources,
        )
        .join(jobs_t, jobs_t.c.id == attempts_t.c.job_id)
        .where(attempts_t.c.released_at.is_(None), attempts_t.c.worker_id.is_not(None))
        .order_by(attempts_t.c.job_id, attempts_t.c.attempt)
    )
    out: dict[str, Holding] = {}
    for r in rows.mappings():
        use = out.setdefault(r["worker_id"], Holding())
        use.cpu_in_use += r["cpu_units"]
        use.memory_in_use += r["memory_mb"]
        use.running_jobs += 1
        for name, n in (r["resources"] or {}).items():
            use.resources_in_use[name] = use.resources_in_use.get(name, 0) + n
        if r["finished_at"] is not None:
            use.lingering.append(
                Lingering(r["job_id"], r["attempt"], r["cpu_units"], r["memory_mb"])
            )
    return out
