"""Jobs that a running job submits: ``ctx.submit``, ``ctx.batch`` and ``ctx.continue_with``.

A :class:`Spawner` belongs to one attempt. Each job it is asked for gets every default at once
(the job type's, if this worker registers it, then smartq's), is checked against the bounds the
API puts on a submission, and leaves as a :class:`~models.messages.JobsSpawned` on the
attempt's report key, ahead of the attempt's final report; the leading scheduler inserts it in
the parent's tenant and batch, with ``parent_id`` set, while the attempt still runs.

**Ids are derived, not drawn**: a child's id is a UUID5 of its parent's id and its key (given,
or ``<type>-<n>`` for the n-th unnamed child of that type in this attempt). A retried parent
that asks for the same children names the same ids, and the scheduler inserts each id once, so
a retry never makes its children twice; a child the first attempt already ran is not run again.
Give ``key=`` when the order of the calls may differ between attempts.

**Waiting for children without holding the worker**: :meth:`Spawner.continue_with` asks for a
job that depends on every child asked for so far (or on ``after``). The parent then returns and
frees its cpu and memory; the continuation runs once the children have completed, and is
cancelled with the reason if one of them fails, like any dependent in a DAG.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import orjson

from models import storable
from models.enums import PRIORITY_VALUES, Priority
from models.limits import (
    DEFAULT_BACKOFF,
    DEFAULT_CPU_UNITS,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MEMORY_MB,
)
from models.messages import JobsSpawned, SpawnedJob
from scheduler import resources
from smartq.errors import UnknownJobType
from smartq.registry import JobType, Registry

#: The namespace of children's ids (a UUID5 of ``"<parent id>/<key>"`` in it).
SPAWN_NAMESPACE = uuid.UUID("6f1c9a52-52f4-4c5e-9d57-2b8f0b1f4a31")
#: The key :meth:`Spawner.continue_with` uses when none is given.
CONTINUATION_KEY = "continuation"

#: Where an attempt's spawned jobs go (from any thread; must not block).
SpawnSink = Callable[[JobsSpawned], None]
Target = str | Callable[..., Any]


def child_id(parent_id: uuid.UUID, key: str) -> uuid.UUID:
    """The id of ``parent_id``'s child named ``key``: the same in every attempt."""
    return uuid.uuid5(SPAWN_NAMESPACE, f"{parent_id}/{key}")


@dataclass(frozen=True, slots=True)
class ChildJob:
    """A job this attempt asked for: its id (to follow it with the SDK), key and type."""

    id: uuid.UUID
    key: str
    type: str


ChildRef = ChildJob | uuid.UUID


class Spawner:
    """The children of one attempt; thread-safe (a job may spawn from its own threads)."""

    def __init__(
        self,
        parent_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        send: SpawnSink,
        types: Registry,
    ) -> None:
        self.parent_id = parent_id
        self.attempt = attempt
        self.worker_id = worker_id
        self._send = send
        self._types = types
        self._lock = threading.Lock()
        self._numbered: dict[str, int] = {}
        #: Every child asked for so far, in order (what a continuation waits for).
        self._children: dict[uuid.UUID, ChildJob] = {}

    @property
    def children(self) -> list[ChildJob]:
        with self._lock:
            return list(self._children.values())

    def submit(
        self,
        target: Target,
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        depends_on: Iterable[ChildRef] = (),
        **options: Any,
    ) -> ChildJob:
        """Ask for one job; see :meth:`worker.context.JobContext.submit`."""
        with self._lock:
            spec = self._spec(target, payload, key, depends_on, options, {})
            self._sent([spec])
        return spec[0]

    def batch(self) -> ChildBatch:
        """Jobs asked for together: sent in one message when the ``with`` block ends well."""
        return ChildBatch(self)

    def continue_with(
        self,
        target: Target,
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        after: Iterable[ChildRef] | None = None,
        **options: Any,
    ) -> ChildJob:
        """Ask for a job that runs once ``after`` (default: every child so far) completed."""
        with self._lock:
            waits = list(self._children) if after is None else list(after)
            if not waits:
                raise ValueError("continue_with needs children to wait for; submit some first")
            spec = self._spec(target, payload, key or CONTINUATION_KEY, waits, options, {})
            self._sent([spec])
        return spec[0]

    # -- under the lock ----------------------------------------------------------------------

    def _spec(
        self,
        target: Target,
        payload: Mapping[str, Any] | None,
        key: str | None,
        depends_on: Iterable[ChildRef],
        options: Mapping[str, Any],
        pending: Mapping[uuid.UUID, ChildJob],
    ) -> tuple[ChildJob, SpawnedJob]:
        job_type = self._types.name_of(target)
        key = key or self._free_key(job_type)
        job_id = child_id(self.parent_id, key)
        if job_id in self._children or job_id in pending:
            raise ValueError(f"key {key!r} is already used by a job this attempt submitted")
        depends = []
        for ref in depends_on:
            ref_id = ref.id if isinstance(ref, ChildJob) else ref
            if ref_id not in self._children and ref_id not in pending:
                raise ValueError(
                    f"{ref_id} is not a job this attempt submitted; a spawned job may depend "
                    "only on its siblings"
                )
            depends.append(ref_id)
        child = ChildJob(job_id, key, job_type)
        return child, _spawned(child, self._defaults(job_type), payload, depends, options)

    def _sent(self, specs: list[tuple[ChildJob, SpawnedJob]]) -> None:
        self._send(
            JobsSpawned(
                parent_id=self.parent_id,
                attempt=self.attempt,
                worker_id=self.worker_id,
                jobs=[s for _, s in specs],
            )
        )
        for child, _ in specs:
            self._children[child.id] = child

    def _free_key(self, job_type: str) -> str:
        n = self._numbered.get(job_type, 0) + 1
        self._numbered[job_type] = n
        return f"{job_type}-{n}"

    def _defaults(self, job_type: str) -> JobType | None:
        try:
            return self._types.get(job_type)
        except UnknownJobType:
            return None  # another worker's type: smartq's defaults


class ChildBatch:
    """``with ctx.batch() as b: a = b.add("extract"); b.add("load", after=[a])``: the jobs
    are checked as they are added and sent together, once, when the block ends without an
    error (nothing is sent if it raises)."""

    def __init__(self, spawner: Spawner) -> None:
        self._spawner = spawner
        self._specs: dict[uuid.UUID, tuple[ChildJob, SpawnedJob]] = {}
        self._sent = False

    def add(
        self,
        target: Target,
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        after: Iterable[ChildRef] = (),
        **options: Any,
    ) -> ChildJob:
        if self._sent:
            raise RuntimeError("this batch was sent; start another with ctx.batch()")
        pending = {k: v[0] for k, v in self._specs.items()}
        spawner = self._spawner
        with spawner._lock:
            spec = spawner._spec(target, payload, key, after, options, pending)
        self._specs[spec[0].id] = spec
        return spec[0]

    @property
    def jobs(self) -> list[ChildJob]:
        return [child for child, _ in self._specs.values()]

    def __enter__(self) -> ChildBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self._specs or self._sent:
            return
        spawner = self._spawner
        with spawner._lock:
            for child_id_ in self._specs:  # another call may have taken a key meanwhile
                if child_id_ in spawner._children:
                    raise ValueError(f"key {self._specs[child_id_][0].key!r} is already used")
            spawner._sent(list(self._specs.values()))
        self._sent = True


def _pick(first: Any, second: Any, default: Any) -> Any:
    if first is not None:
        return first
    return second if second is not None else default


def _retry(options: Mapping[str, Any], declared: JobType | None) -> dict[str, Any]:
    retry = options.get("retry")
    policy: Mapping[str, Any] = {"max_attempts": retry} if isinstance(retry, int) else retry or {}
    unknown = set(policy) - {"max_attempts", "initial_delay_seconds", "backoff_multiplier"}
    if unknown:
        raise ValueError(f"unknown retry fields: {', '.join(sorted(unknown))}")
    return {
        name: _pick(policy.get(name), declared and getattr(declared, name), default)
        for name, default in (
            ("max_attempts", DEFAULT_MAX_ATTEMPTS),
            ("initial_delay_seconds", DEFAULT_INITIAL_DELAY),
            ("backoff_multiplier", DEFAULT_BACKOFF),
        )
    }


_OPTIONS = frozenset(
    {"priority", "cpu_units", "memory_mb", "resources", "labels", "retry", "timeout_seconds"}
    | {"run_at", "name"}
)


def _priority(value: object) -> int:
    if value is None:
        return PRIORITY_VALUES[Priority.NORMAL]
    if isinstance(value, str):
        try:
            return PRIORITY_VALUES[Priority(value)]
        except ValueError:
            raise ValueError(f"unknown priority {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a priority is a name or an integer 0–10, not {value!r}")
    return value


def _payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as JSON will carry it (as the API would have received it), or an error."""
    if not payload:
        return {}
    found = storable.problem(dict(payload))  # before orjson, which writes NaN as null
    if found is not None:
        raise ValueError(f"the payload {found}")
    try:
        doc = orjson.loads(orjson.dumps(dict(payload)))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"a payload must be JSON: {exc}") from None
    return dict(doc)


def _spawned(
    child: ChildJob,
    declared: JobType | None,
    payload: Mapping[str, Any] | None,
    depends_on: list[uuid.UUID],
    options: Mapping[str, Any],
) -> SpawnedJob:
    """The job as the scheduler inserts it: the options given, else the type's, else smartq's
    defaults; a bad option raises ``ValueError`` in the parent, where it was written."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown job options: {', '.join(sorted(unknown))}")
    run_at = options.get("run_at")
    if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
        raise ValueError("run_at must be a datetime with a time zone")
    res = _pick(options.get("resources"), declared and declared.resources, None)
    labels = _pick(options.get("labels"), declared and declared.labels, None)
    return SpawnedJob(
        id=child.id,
        key=child.key,
        name=options.get("name") or child.key,
        job_type=child.type,
        payload=_payload(payload),
        priority=_priority(options.get("priority")),
        cpu_units=_pick(
            options.get("cpu_units"), declared and declared.cpu_units, DEFAULT_CPU_UNITS
        ),
        memory_mb=_pick(
            options.get("memory_mb"), declared and declared.memory_mb, DEFAULT_MEMORY_MB
        ),
        timeout_seconds=_pick(
            options.get("timeout_seconds"), declared and declared.timeout_seconds, None
        ),
        run_at=run_at,
        resources=resources.check_counts(res) or None if res else None,
        labels=resources.check_labels(labels) or None if labels else None,
        depends_on=depends_on,
        **_retry(options, declared),
    )
