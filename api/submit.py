"""Turning submissions into rows: job-type defaults, dependency resolution, cycle detection.

Pure functions of the request, the registry and the clock; the routes do the I/O.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import networkx as nx

from api.schemas import BatchCreate, JobCreate, priority_value
from api.store import request_hash
from models.inserts import fresh_state
from models.limits import (
    DEFAULT_BACKOFF,
    DEFAULT_CPU_UNITS,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MEMORY_MB,
)
from smartq.errors import SubmissionRejected
from smartq.registry import JobType


def new_ids(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) ids from one read of the system's random source: ``uuid4()``
    reads it once per id, a system call each, two fifths of building a 10,000-job batch."""
    raw = os.urandom(16 * n)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


def _pick(first: Any, second: Any, default: Any) -> Any:
    """The first of the three that is set. Spelled out: ``next()`` over a generator, five
    times per job, was about a third of :func:`resolve_batch`'s time for 10,000 jobs."""
    if first is not None:
        return first
    return second if second is not None else default


def _retry_fields(spec: JobCreate, job_type: JobType) -> dict[str, Any]:
    retry = spec.retry
    return {
        "max_attempts": _pick(
            retry and retry.max_attempts, job_type.max_attempts, DEFAULT_MAX_ATTEMPTS
        ),
        "initial_delay_seconds": float(
            _pick(
                retry and retry.initial_delay_seconds,
                job_type.initial_delay_seconds,
                DEFAULT_INITIAL_DELAY,
            )
        ),
        "backoff_multiplier": float(
            _pick(retry and retry.backoff_multiplier, job_type.backoff_multiplier, DEFAULT_BACKOFF)
        ),
    }


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a submission is: the caller's tenant, and who made it (the key's id; with auth
    off, what the request says in ``created_by``)."""

    tenant: str
    created_by: str | None


def _fresh(
    spec: JobCreate, batch_id: uuid.UUID | None, now: datetime, owner: Owner
) -> dict[str, Any]:
    """The state of a job nobody has taken in yet."""
    return fresh_state(
        tenant=owner.tenant,
        created_by=owner.created_by,
        batch_id=batch_id,
        idempotency_key=spec.idempotency_key,
        now=now,
    )


def job_row(
    spec: JobCreate,
    job_type: JobType,
    now: datetime,
    *,
    owner: Owner,
    depends_on: list[uuid.UUID],
    batch_id: uuid.UUID | None = None,
    key: str | None = None,
    job_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The jobs row for a submission: its own fields, else the type's defaults, else smartq's.
    ``job_id``: its id, when made beforehand (:func:`new_ids`); else a new one."""
    values: dict[str, Any] = {
        "id": job_id or uuid.uuid4(),
        "name": spec.name or key or spec.type,
        "type": spec.type,
        "payload": spec.payload,
        "priority": priority_value(spec.priority),
        "cpu_units": _pick(spec.cpu_units, job_type.cpu_units, DEFAULT_CPU_UNITS),
        "memory_mb": _pick(spec.memory_mb, job_type.memory_mb, DEFAULT_MEMORY_MB),
        "resources": _pick(spec.resources, job_type.resources, None) or None,
        "labels": _pick(spec.labels, job_type.labels, None) or None,
        **_retry_fields(spec, job_type),
        "timeout_seconds": spec.timeout_seconds
        if spec.timeout_seconds is not None
        else job_type.timeout_seconds,
        "run_at": spec.run_at,
        "key": key,
    }
    # Only a job with its own idempotency key can be replayed, so only it needs the hash.
    values["request_hash"] = (
        request_hash(
            {**values, "run_at": spec.run_at.isoformat() if spec.run_at else None}, depends_on
        )
        if spec.idempotency_key is not None
        else None
    )
    values.update(_fresh(spec, batch_id, now, owner))
    return values


@dataclass(frozen=True)
class ResolvedBatch:
    """A batch's jobs in submission order with each one's dependencies as job ids."""

    rows: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    external: set[uuid.UUID]  # existing jobs the batch depends on (must exist)


def _parse_ref(ref: str, keys: dict[str, int], owner: str) -> int | uuid.UUID:
    if ref in keys:
        return keys[ref]
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise SubmissionRejected(
            f"job {owner!r} depends on {ref!r}, which is neither a key in this batch nor a job id",
            {"job": owner, "unknown_dependency": ref},
        ) from None


def _check_acyclic(batch: BatchCreate, deps: list[list[int | uuid.UUID]]) -> None:
    """Reject a cycle among the batch's own jobs, naming it. Kahn's algorithm says "acyclic"
    in linear time without building a graph object (networkx took most of a 10,000-job
    batch's accept time just to build one); only a cyclic batch goes to networkx, and only
    with the jobs Kahn could not order, to find the cycle to name."""
    n = len(batch.jobs)
    waiting_on = [0] * n
    children: list[list[int]] = [[] for _ in range(n)]
    for i, ds in enumerate(deps):
        for d in ds:
            if isinstance(d, int):
                children[d].append(i)
                waiting_on[i] += 1
    free = [i for i in range(n) if waiting_on[i] == 0]
    ordered = 0
    while free:
        u = free.pop()
        ordered += 1
        for v in children[u]:
            waiting_on[v] -= 1
            if waiting_on[v] == 0:
                free.append(v)
    if ordered == n:
        return
    stuck = [i for i in range(n) if waiting_on[i] > 0]
    graph: nx.DiGraph[int] = nx.DiGraph()
    graph.add_edges_from((d, i) for i in stuck for d in deps[i] if isinstance(d, int))
    component = next(c for c in nx.strongly_connected_components(graph) if len(c) > 1)
    cycle = nx.find_cycle(graph.subgraph(component))
    names = [batch.jobs[u].key or f"#{u}" for u, _ in cycle]
    names.append(names[0])
    raise SubmissionRejected("dependency cycle: " + " -> ".join(names), {"cycle": names[:-1]})


def resolve_batch(
    batch: BatchCreate,
    types: dict[str, JobType],
    now: datetime,
    batch_id: uuid.UUID,
    owner: Owner,
) -> ResolvedBatch:
    """Resolve keys to ids, reject self-loops and cycles, and build every row."""
    keys = {job.key: i for i, job in enumerate(batch.jobs) if job.key is not None}
    deps: list[list[int | uuid.UUID]] = []
    for i, job in enumerate(batch.jobs):
        name = job.key or f"#{i}"
        resolved = [_parse_ref(ref, keys, name) for ref in dict.fromkeys(job.depends_on)]
        if i in resolved:
            raise SubmissionRejected(f"job {name!r} depends on itself", {"job": name})
        deps.append(resolved)
    _check_acyclic(batch, deps)
    rows: list[dict[str, Any]] = []
    ids = new_ids(len(batch.jobs))
    for i, (job, ds) in enumerate(zip(batch.jobs, deps, strict=True)):
        ext = [d for d in ds if isinstance(d, uuid.UUID)]
        # One microsecond apart: submission order is age order (FIFO within a priority).
        created = now + timedelta(microseconds=i)
        rows.append(
            job_row(
                job,
                types[job.type],
                created,
                owner=owner,
                depends_on=ext,
                batch_id=batch_id,
                key=job.key,
                job_id=ids[i],
            )
        )
    edge_rows: list[dict[str, Any]] = []
    external: set[uuid.UUID] = set()
    for i, ds in enumerate(deps):
        for d in ds:
            target = rows[d]["id"] if isinstance(d, int) else d
            if isinstance(d, uuid.UUID):
                external.add(d)
            edge_rows.append({"job_id": rows[i]["id"], "depends_on_id": target})
    return ResolvedBatch(rows=rows, edges=edge_rows, external=external)
