"""A worker as the scheduler sees it (capacity, what it holds, what it offers) and the holds
one attempt keeps on it until released."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scheduler.resources import counts_fit, labels_match
from scheduler.values import Lingering, WorkerView

if TYPE_CHECKING:
    from scheduler.state import JobRecord

#: (job id, attempt): one attempt's hold.
HoldKey = tuple[uuid.UUID, int]


class _Nothing(Mapping[str, Any]):
    """An empty, hashable mapping: what a job that asks for no named resource or label
    holds, one object shared by all (a dict per job would cost ~130 MB at a million jobs)."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0


NONE: Mapping[str, int] = _Nothing()
NONE_LABELS: Mapping[str, str] = _Nothing()


@dataclass(frozen=True, slots=True)
class Control:
    """What an admin set on a worker (``POST /workers/{id}/drain``, ``PATCH /workers/{id}``):
    take nothing new, and a size that replaces the one it declares (None: its own)."""

    drain: bool = False
    cpu_units: int | None = None
    memory_mb: int | None = None


NO_CONTROL = Control()


@dataclass(slots=True, eq=False)
class WorkerRecord:
    """One worker's capacity and what it holds. ``reserved_for`` blocks backfill on it.

    ``types`` are the job types it runs (``None``: any, for a worker that has not said);
    ``incarnation`` names one start of the process (its ``started_at``): a heartbeat with
    another one means the worker restarted under the same id, and lost what it held.
    """

    id: str
    cpu_total: int
    mem_total: int
    cpu_used: int = 0
    mem_used: int = 0
    online: bool = True
    draining: bool = False
    holds: set[HoldKey] = field(default_factory=set)
    reserved_for: uuid.UUID | None = None
    types: frozenset[str] | None = None
    incarnation: str | None = None
    #: Named resources declared (``res_total``) and held (``res_used``), and labels.
    res_total: dict[str, int] = field(default_factory=dict)
    res_used: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: What its heartbeats say (size, draining), and what an admin set over it; the fields
    #: above are what placement uses: :meth:`settle` derives them.
    declared_cpu: int = 0
    declared_mem: int = 0
    self_draining: bool = False
    control: Control = NO_CONTROL

    def settle(self) -> None:
        """Capacity and draining from what the worker declares and what an admin set. A
        smaller size never stops what runs: only new placements wait until use is under it."""
        control = self.control
        self.cpu_total = control.cpu_units or self.declared_cpu
        self.mem_total = control.memory_mb or self.declared_mem
        self.draining = self.self_draining or control.drain

    @property
    def accepting(self) -> bool:
        return self.online and not self.draining

    @property
    def cpu_free(self) -> int:
        return self.cpu_total - self.cpu_used

    @property
    def mem_free(self) -> int:
        return self.mem_total - self.mem_used

    def offers(self, job_type: str) -> bool:
        return self.types is None or job_type in self.types

    def could_hold(self, job: JobRecord) -> bool:
        """Could this worker, empty, hold ``job`` (cpu, memory, named resources, labels)?"""
        return (
            self.cpu_total >= job.cpu
            and self.mem_total >= job.mem
            and self.offers(job.type)
            and counts_fit(job.resources, self.res_total)
            and labels_match(job.labels, self.labels)
        )

    def fits_now(self, job: JobRecord) -> bool:
        """Is there room for ``job`` on this worker now?"""
        if self.cpu_free < job.cpu or self.mem_free < job.mem or not self.offers(job.type):
            return False
        if not labels_match(job.labels, self.labels):
            return False
        used = self.res_used
        return all(
            self.res_total.get(name, 0) - used.get(name, 0) >= n
            for name, n in job.resources.items()
        )

    def view(self, lingering: tuple[Lingering, ...] = ()) -> WorkerView:
        return WorkerView(
            self.id,
            self.cpu_total,
            self.mem_total,
            self.cpu_used,
            self.mem_used,
            self.online,
            self.draining,
            self.types,
            lingering,
            self.res_total,
            dict(self.res_used),
            self.labels,
        )


@dataclass(slots=True)
class Hold:
    """Resources one attempt holds on one worker until it is released. ``lingering``: the
    attempt has ended but its code still runs (a timed-out thread), so they stay held."""

    worker_id: str
    cpu: int
    mem: int
    lingering: bool = False
    resources: Mapping[str, int] | None = None
