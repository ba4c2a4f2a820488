"""Retention, decided without I/O: which finished jobs may be deleted (issue 19).

The leader's sweep, ``DELETE /jobs/{id}`` and the admin purge all delete through a
:class:`Selection` (what to take) under one guard (what is never taken), which
:mod:`models.deletes` writes as SQL and :func:`why_kept` words for a refusal:

- only a final job (completed, failed, cancelled);
- never one that a job not itself final depends on (``job_dependencies.depends_on_id``): the
  edge is what that job waits on, and for a failed dependency, what cancels it;
- never a parent while a job it spawned (``parent_id``) is active: the family is one piece of
  work still being watched (``GET /jobs?parent_id=``, the DAG view), and the children's
  ``parent_id`` would turn NULL under them. It goes at the first sweep after its last child.

The clock is an argument; the sweep's pace is a :class:`Budget`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.enums import FINAL_STATUSES

#: The statuses a job may be deleted in, as the database spells them.
FINAL = frozenset(s.value for s in FINAL_STATUSES)


class PurgeFilterError(ValueError):
    """A purge filter that cannot be run: empty (it would mean every job), or naming a status
    that is not final. The API answers 422."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which finished jobs to delete; every field given narrows it. ``finished_before`` is
    the sweep's cutoff (or a purge's), ``job_id`` one job (``DELETE /jobs/{id}``), ``tenant``
    the tenant a request acts in (None: every tenant, for the sweep and admins)."""

    statuses: frozenset[str] = FINAL
    finished_before: datetime | None = None
    type: str | None = None
    tenant: str | None = None
    batch_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None


def cutoff(now: datetime, days: float) -> datetime | None:
    """Jobs that finished before this are past the retention age; None: keep them forever."""
    if days <= 0:
        return None
    return now - timedelta(days=days)


def sweep_selection(now: datetime, days: float) -> Selection | None:
    """What the sweep deletes now: every finished job past the age (None when retention is
    off)."""
    before = cutoff(now, days)
    return None if before is None else Selection(finished_before=before)


def purge_selection(
    statuses: Iterable[str] = (),
    *,
    type: str | None = None,
    tenant: str | None = None,
    batch_id: uuid.UUID | None = None,
    finished_before: datetime | None = None,
) -> Selection:
    """An admin's purge filter as a selection. No status means every final one, but at least
    one field must be given: an empty filter is refused rather than taken as "everything"."""
    wanted = frozenset(statuses)
    if wanted - FINAL:
        bad = ", ".join(sorted(wanted - FINAL))
        raise PurgeFilterError(
            f"status: only finished jobs can be purged ({', '.join(sorted(FINAL))}), not {bad}"
        )
    given = (type, tenant, batch_id, finished_before)
    if not wanted and all(v is None for v in given):
        raise PurgeFilterError(
            "an empty filter would purge every finished job: give at least one of status, "
            "type, tenant, batch_id, finished_before"
        )
    return Selection(
        statuses=wanted or FINAL,
        finished_before=finished_before,
        type=type,
        tenant=tenant,
        batch_id=batch_id,
    )


def why_kept(
    status: str,
    unfinished_dependents: Sequence[uuid.UUID] = (),
    active_children: Sequence[uuid.UUID] = (),
) -> str | None:
    """Why a job may not be deleted now (the guard, worded); None: it may."""
    if status not in FINAL:
        return f"the job is {status}: only a finished job can be deleted"
    if unfinished_dependents:
        n = len(unfinished_dependents)
        return "1 unfinished job depends on it" if n == 1 else f"{n} unfinished jobs depend on it"
    if active_children:
        n = len(active_children)
        return (
            "1 job it spawned is still active"
            if n == 1
            else f"{n} jobs it spawned are still active"
        )
    return None


@dataclass(frozen=True, slots=True)
class Taken:
    """What one short transaction of a delete did. ``found``: eligible jobs it picked;
    ``deleted``: jobs it deleted, by status; ``lines``: log lines it deleted. A transaction
    that reached its line limit deletes no job (``logs_only``): the next picks the same jobs
    and goes on with their lines, so no transaction is long however much a job logged."""

    found: int = 0
    deleted: dict[str, int] | None = None
    lines: int = 0
    logs_only: bool = False
    batches: int = 0

    @property
    def jobs(self) -> int:
        return sum((self.deleted or {}).values())


@dataclass(slots=True)
class Budget:
    """How far one run of deletes goes: ``batch`` jobs per transaction, ``cap`` jobs in all."""

    batch: int
    cap: int
    deleted: int = 0
    steps: int = 0

    def ask(self) -> int:
        """How many jobs the next transaction may delete (0: the run is over)."""
        return max(0, min(self.batch, self.cap - self.deleted))

    def took(self, asked: int, step: Taken) -> bool:
        """Record a transaction that was asked for ``asked`` jobs; whether another follows.
        Fewer found than asked means none is left (after this one's lines, if it stopped at
        them)."""
        self.deleted += step.jobs
        self.steps += 1
        if step.logs_only:
            return True
        return step.found >= asked > 0 and self.ask() > 0
