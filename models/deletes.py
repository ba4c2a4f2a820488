"""Finished jobs deleted: the SQL of retention's sweep (the leading scheduler), of
``DELETE /jobs/{id}`` and of an admin's purge (the API), under the guard of
:mod:`scheduler.retention`.

Each step is one short transaction: pick up to ``limit`` eligible jobs (oldest finished
first, through ``ix_jobs_finished``; on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so a row a
resubmit or another delete holds is left for later, and a submit naming one as a dependency
waits for the step instead of losing its edge), delete their log lines (at most
:data:`LOG_LINES_PER_STEP`; a job that logged more is finished by the next steps), then the
jobs — their attempts, progress and edges go by ``ON DELETE CASCADE``, children's
``parent_id`` turns NULL — and the batches they leave empty. The guard is checked again in the
``DELETE`` itself.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, delete, exists, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from models.enums import ACTIVE_STATUSES
from models.tables import Batch, Job, JobDependency, JobLog
from scheduler.retention import Budget, Selection, Taken
from smartq import chunked

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
logs: Table = JobLog.__table__  # type: ignore[attr-defined]
batches: Table = Batch.__table__  # type: ignore[attr-defined]

#: Log lines one step deletes at most (as the logger's own retention does per transaction).
LOG_LINES_PER_STEP = 5_000
_ACTIVE = sorted(s.value for s in ACTIVE_STATUSES)


def _selected(sel: Selection) -> list[ColumnElement[bool]]:
    c = jobs.c
    conds: list[ColumnElement[bool]] = [c.status.in_(sorted(sel.statuses))]
    if sel.finished_before is not None:
        conds.append(c.finished_at < sel.finished_before)
    for column, value in (
        (c.type, sel.type),
        (c.tenant, sel.tenant),
        (c.batch_id, sel.batch_id),
        (c.id, sel.job_id),
    ):
        if value is not None:
            conds.append(column == value)
    return conds


def _guarded() -> list[ColumnElement[bool]]:
    """No job that is not final depends on it; no job it spawned is active."""
    dependent = jobs.alias("dependent")
    waited_on = exists().where(
        edges.c.depends_on_id == jobs.c.id,
        dependent.c.id == edges.c.job_id,
        dependent.c.status.in_(_ACTIVE),
    )
    child = jobs.alias("child")
    busy_parent = exists().where(child.c.parent_id == jobs.c.id, child.c.status.in_(_ACTIVE))
    return [~waited_on, ~busy_parent]


def _eligible(conn: AsyncConnection, sel: Selection, limit: int) -> Select[Any]:
    stmt = (
        select(jobs.c.id)
        .where(*_selected(sel), *_guarded())
        .order_by(jobs.c.finished_at, jobs.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=jobs, skip_locked=True)
    return stmt


async def take(conn: AsyncConnection, sel: Selection, limit: int) -> Taken:
    """One step, inside the caller's transaction: up to ``limit`` eligible jobs deleted with
    everything that is theirs (or, when they hold many log lines, a step's worth of those)."""
    ids = [r[0] for r in await conn.execute(_eligible(conn, sel, limit))]
    if not ids:
        return Taken()
    lines = await _delete_lines(conn, ids, LOG_LINES_PER_STEP)
    if lines >= LOG_LINES_PER_STEP:
        return Taken(found=len(ids), lines=lines, logs_only=True)
    gone = await conn.execute(
        delete(jobs)
        .where(jobs.c.id.in_(ids), *_selected(sel), *_guarded())
        .returning(jobs.c.status, jobs.c.batch_id)
    )
    rows = gone.all()
    emptied = await _delete_empty_batches(conn, {r[1] for r in rows if r[1] is not None}, sel)
    return Taken(
        found=len(ids),
        deleted=dict(Counter(r[0] for r in rows)),
        lines=lines,
        batches=emptied,
    )


async def _delete_lines(conn: AsyncConnection, job_ids: list[uuid.UUID], limit: int) -> int:
    some = select(logs.c.job_id, logs.c.attempt, logs.c.seq).where(logs.c.job_id.in_(job_ids))
    key = tuple_(logs.c.job_id, logs.c.attempt, logs.c.seq)
    result = await conn.execute(delete(logs).where(key.in_(some.limit(limit))))
    return max(result.rowcount, 0)


async def _delete_empty_batches(
    conn: AsyncConnection, batch_ids: set[uuid.UUID], sel: Selection
) -> int:
    """The batches of deleted jobs that have no job left (and, for the sweep, were made
    before its cutoff, which a batch whose jobs finished before it always was)."""
    if not batch_ids:
        return 0
    stmt = delete(batches).where(
        batches.c.id.in_(batch_ids), ~exists().where(jobs.c.batch_id == batches.c.id)
    )
    if sel.finished_before is not None:
        stmt = stmt.where(batches.c.created_at < sel.finished_before)
    result = await conn.execute(stmt)
    return max(result.rowcount, 0)


@dataclass
class Deleted:
    """What a run of steps deleted: jobs by status, log lines, batches; ``more``: it stopped
    at its cap with eligible jobs left."""

    jobs: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    batches: int = 0
    more: bool = False

    @property
    def total(self) -> int:
        return sum(self.jobs.values())


async def delete_jobs(begin: chunked.Begin, sel: Selection, budget: Budget) -> Deleted:
    """Delete what ``sel`` picks, a step of ``budget.batch`` jobs per transaction, until none
    is left or ``budget.cap`` went."""
    out = Deleted()
    cont = False

    async def step(conn: AsyncConnection) -> bool:
        nonlocal cont
        asked = budget.ask()
        taken = await take(conn, sel, asked)
        out.jobs.update(taken.deleted or {})
        out.lines += taken.lines
        out.batches += taken.batches
        cont = budget.took(asked, taken)
        return cont

    await chunked.run_steps(begin, step)
    out.more = cont or (budget.ask() == 0 and budget.deleted > 0)
    return out


async def count(conn: AsyncConnection, sel: Selection) -> tuple[int, int]:
    """How many jobs ``sel`` picks: (may be deleted now, held by the guard)."""
    everything = select(func.count()).select_from(jobs).where(*_selected(sel))
    eligible = everything.where(*_guarded())
    allowed = (await conn.execute(eligible)).scalar_one()
    matching = (await conn.execute(everything)).scalar_one()
    return int(allowed), int(matching) - int(allowed)


async def blockers(
    conn: AsyncConnection, job_id: uuid.UUID
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """What keeps a finished job from being deleted: the unfinished jobs that depend on it,
    and the active jobs it spawned (at most 20 of each)."""
    dependents = await conn.execute(
        select(edges.c.job_id)
        .join(jobs, jobs.c.id == edges.c.job_id)
        .where(edges.c.depends_on_id == job_id, jobs.c.status.in_(_ACTIVE))
        .limit(20)
    )
    children = await conn.execute(
        select(jobs.c.id).where(jobs.c.parent_id == job_id, jobs.c.status.in_(_ACTIVE)).limit(20)
    )
    return [r[0] for r in dependents], [r[0] for r in children]
