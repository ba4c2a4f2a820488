"""What one stream client wants, as a frozen value: :class:`StreamFilter`, the keys it reads
in an event (:class:`EventKeys`) and the keys it is indexed under (:class:`IndexKeys`).

A filter never changes: a command or the jobs of newly watched batches give a new filter,
which whoever holds the client puts in place of the old one (and re-indexes the client there).
Filters are replaced on commands only; the per-event check, :meth:`StreamFilter.accepts`,
reads fields worked out once when the filter is made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from api.stream.commands import Command, EventType
from models.enums import JobStatus
from models.messages import JobProgress, JobStatusEvent, LogLine, StreamEvent
from smartq.errors import StreamRequestError

JOB_TYPES = frozenset({"job.status", "job.log", "job.progress"})
MONITORING_TYPES = frozenset(
    {
        "monitoring.queue",
        "monitoring.resource",
        "monitoring.logger",
        "breaker.state",
        "pause.changed",
    }
)
EVENT_TYPES = JOB_TYPES | MONITORING_TYPES
#: Accepted in ``types`` besides the event types: every monitoring event.
TYPE_ALIASES = {"monitoring": MONITORING_TYPES}

MAX_JOB_IDS = 10_000
MAX_BATCH_IDS = 100
#: Jobs one client may watch, explicit ones plus those of its batches.
MAX_WATCHED_JOBS = 100_000

#: An event's type, with its status for ``job.status`` events: what a filter that names no job
#: or batch looks at, and so how the hub indexes such filters.
Channel = tuple[str, JobStatus | None]


class EventKeys:
    """What filters look at in one event, worked out once per event rather than once per
    client: its channel, and its job and batch as integers (hashing a :class:`uuid.UUID` runs
    Python code; its ``int`` hashes in C). ``job`` is None for monitoring events; ``batch`` is
    None when the job's batch is not known."""

    __slots__ = ("batch", "channel", "job", "status", "tenant", "type")

    def __init__(
        self,
        type_: str,
        status: JobStatus | None,
        job: int | None,
        batch: int | None,
        tenant: str | None = None,
    ) -> None:
        self.type = type_
        self.status = status
        self.job = job
        self.batch = batch
        self.tenant = tenant
        self.channel: Channel = (type_, status)

    @classmethod
    def of(cls, event: StreamEvent, batch_of: Mapping[uuid.UUID, uuid.UUID]) -> EventKeys:
        """``batch_of``: job → batch, for log lines (which do not name their batch)."""
        if isinstance(event, JobStatusEvent):
            batch_id = event.batch_id
            status: JobStatus | None = event.status
        elif isinstance(event, LogLine | JobProgress):
            batch_id, status = batch_of.get(event.job_id), None
        else:
            return cls(event.type, None, None, None)
        batch = None if batch_id is None else batch_id.int
        return cls(event.type, status, event.job_id.int, batch, event.tenant)


class IndexKeys(NamedTuple):
    """Where the hub's client index files one client: an event reaches the client's filter
    check only if its job is in ``jobs``, its batch in ``batches`` or its channel in
    ``channels``."""

    jobs: frozenset[int] = frozenset()
    batches: frozenset[int] = frozenset()
    channels: frozenset[Channel] = frozenset()


class Change(NamedTuple):
    """A filter changed by a command, and the jobs and batches it newly watches (to
    snapshot)."""

    filter: StreamFilter
    new_jobs: list[uuid.UUID]
    new_batches: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """What one client wants. No job or batch named: every job. ``types`` empty: every type
    when no job or batch is named, else the job events (``job.status``, ``job.log``,
    ``job.progress``). ``statuses`` applies to
    status events only.

    ``tenant`` and ``monitor`` are what the client's key allows, set when it connects and kept
    by every command: job events of ``tenant`` only (every tenant's for None: an admin), and
    monitoring events only with ``monitor``."""

    tenant: str | None = None
    monitor: bool = True
    job_ids: frozenset[uuid.UUID] = frozenset()
    batch_ids: frozenset[uuid.UUID] = frozenset()
    statuses: frozenset[JobStatus] = frozenset()
    types: frozenset[str] = frozenset()
    #: The jobs of each watched batch (a batch's jobs are fixed when it is created).
    batch_jobs: Mapping[uuid.UUID, frozenset[uuid.UUID]] = field(default_factory=dict, hash=False)
    # Derived from the fields above when the filter is made, for the hot path.
    _all: bool = field(init=False, repr=False, compare=False)
    _types: frozenset[str] = field(init=False, repr=False, compare=False)
    _keys: IndexKeys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every_job = not self.job_ids and not self.batch_ids
        types = self.types or (EVENT_TYPES if every_job and self.monitor else JOB_TYPES)
        object.__setattr__(self, "_all", every_job)
        object.__setattr__(self, "_types", types)
        object.__setattr__(self, "_keys", self._index_keys(types))

    def _index_keys(self, types: frozenset[str]) -> IndexKeys:
        channels: set[Channel] = {(t, None) for t in types & MONITORING_TYPES}
        if self._all:
            if "job.status" in types:
                channels |= {("job.status", s) for s in self.statuses or JobStatus}
            channels |= {(t, None) for t in types & {"job.log", "job.progress"}}
            return IndexKeys(channels=frozenset(channels))
        jobs = {j.int for j in self.job_ids}
        for batch_jobs in self.batch_jobs.values():
            jobs.update(j.int for j in batch_jobs)
        batches = frozenset(b.int for b in self.batch_ids)
        return IndexKeys(frozenset(jobs), batches, frozenset(channels))

    def matches(self, event: StreamEvent, batch_of: Mapping[uuid.UUID, uuid.UUID]) -> bool:
        return self.accepts(EventKeys.of(event, batch_of))

    def accepts(self, keys: EventKeys) -> bool:
        """The full check of one event against this filter (:meth:`matches`, with the event's
        keys worked out once for all clients)."""
        if keys.type not in self._types:
            return False
        if keys.job is None:  # monitoring (in ``_types`` only with ``monitor``)
            return True
        if self.tenant is not None and keys.tenant != self.tenant:
            return False
        if keys.status is not None and self.statuses and keys.status not in self.statuses:
            return False
        return self._all or keys.job in self._keys.jobs or keys.batch in self._keys.batches

    def index_keys(self) -> IndexKeys:
        """Where to index this filter: a superset of the events :meth:`accepts` takes."""
        return self._keys

    def with_command(self, cmd: Command) -> Change:
        """This filter changed by ``cmd`` (``subscribe`` adds, ``unsubscribe`` removes, ``set``
        replaces); raises :class:`StreamRequestError` past the limits."""
        if cmd.action == "unsubscribe":
            return Change(self._without(cmd), [], [])
        base = StreamFilter(self.tenant, self.monitor) if cmd.action == "set" else self
        new_jobs = list(dict.fromkeys(j for j in cmd.job_ids or () if j not in base.job_ids))
        new_batches = list(dict.fromkeys(b for b in cmd.batch_ids or () if b not in base.batch_ids))
        job_ids, batch_ids = base.job_ids.union(new_jobs), base.batch_ids.union(new_batches)
        if len(job_ids) > MAX_JOB_IDS or len(batch_ids) > MAX_BATCH_IDS:
            raise StreamRequestError(f"at most {MAX_JOB_IDS} job ids and {MAX_BATCH_IDS} batch ids")
        types = base.types if cmd.types is None else _expand(cmd.types)
        if not self.monitor and types & MONITORING_TYPES:
            raise StreamRequestError(
                "monitoring events need the 'monitor' scope", StreamRequestError.FORBIDDEN
            )
        changed = replace(
            base,
            job_ids=job_ids,
            batch_ids=batch_ids,
            statuses=base.statuses if cmd.statuses is None else frozenset(cmd.statuses),
            types=types,
        )
        return Change(changed, new_jobs, new_batches)

    def _without(self, cmd: Command) -> StreamFilter:
        if cmd.statuses is not None or cmd.types is not None:
            raise StreamRequestError("unsubscribe takes job_ids and batch_ids only")
        batches = set(cmd.batch_ids or ())
        return replace(
            self,
            job_ids=self.job_ids.difference(cmd.job_ids or ()),
            batch_ids=self.batch_ids - batches,
            batch_jobs={b: j for b, j in self.batch_jobs.items() if b not in batches},
        )

    def with_batches(self, jobs_by_batch: Mapping[uuid.UUID, Iterable[uuid.UUID]]) -> StreamFilter:
        """This filter knowing the jobs of watched batches (read from the database)."""
        batch_jobs = dict(self.batch_jobs)
        for batch_id, job_ids in jobs_by_batch.items():
            batch_jobs[batch_id] = frozenset(job_ids)
        if sum(len(j) for j in batch_jobs.values()) > MAX_WATCHED_JOBS:
            raise StreamRequestError(f"the batches watched hold more than {MAX_WATCHED_JOBS} jobs")
        return replace(self, batch_jobs=batch_jobs)

    def describe(self) -> dict[str, list[str]]:
        return {
            "job_ids": sorted(str(j) for j in self.job_ids),
            "batch_ids": sorted(str(b) for b in self.batch_ids),
            "statuses": sorted(s.value for s in self.statuses),
            "types": sorted(self.types),
        }


def _expand(types: Iterable[EventType]) -> frozenset[str]:
    expanded: set[str] = set()
    for t in types:
        expanded |= TYPE_ALIASES.get(t, {t})
    return frozenset(expanded)
