"""Why a job waits, computed from database reads with the scheduler's own pure reasons."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.capacity import Holding, holding
from models.enums import JobStatus, WorkerState
from models.monitoring import GateSnapshot
from models.tables import Worker
from models.types import utcnow
from scheduler.reasons import DependencyFacts, JobFacts, paused_reason, why_waiting
from scheduler.values import WorkerView

workers_t = Worker.__table__  # type: ignore[attr-defined]
jobs = store.jobs


async def _workers(conn: AsyncConnection) -> list[WorkerView]:
    rows = (await conn.execute(select(workers_t))).mappings().all()
    use = await holding(conn)
    controls = await store.worker_controls(conn)
    out = []
    for r in rows:
        held = use.get(r["id"], Holding())
        control = controls.get(r["id"])
        out.append(
            WorkerView(
                worker_id=r["id"],
                cpu_units=(control and control["cpu_units"]) or r["cpu_units"],
                memory_mb=(control and control["memory_mb"]) or r["memory_mb"],
                cpu_in_use=held.cpu_in_use,
                memory_in_use=held.memory_in_use,
                online=r["state"] != WorkerState.OFFLINE.value,
                draining=bool(r["draining"]) or bool(control and control["drain"]),
                job_types=frozenset(r["job_types"] or ()),
                lingering=tuple(held.lingering),
                resources=r["resources"] or {},
                resources_in_use=held.resources_in_use,
                labels=r["labels"] or {},
            )
        )
    return out


def held_by(gates: Iterable[GateSnapshot], job_type: str, tenant: str) -> str | None:
    """Why a ready job waits for flow control, from the scheduler's latest snapshot (on the
    stream every ``monitor_seconds``): its type's breaker when not closed, else its type's or
    its tenant's limit while that limit holds jobs back."""
    gates = list(gates)
    for kind, name in (("breaker", job_type), ("type", job_type), ("tenant", tenant)):
        for gate in gates:
            if gate.kind != kind or gate.name != name or not gate.reason:
                continue
            if kind == "breaker" or gate.held:
                return gate.reason
    return None


async def waiting_reason(
    conn: AsyncConnection, job: RowMapping, gates: Iterable[GateSnapshot] = ()
) -> str | None:
    """One line for a job that has not finished; ``None`` once it has."""
    status = JobStatus(job["status"])
    if status.is_final:
        return None
    if status in (JobStatus.READY, JobStatus.PENDING):
        pause = await store.pause_holding(conn, job["type"], job["batch_id"])
        if pause is not None:
            return paused_reason(
                pause["kind"], pause["name"], pause["paused_by"], pause["paused_at"].timestamp()
            )
    if status is JobStatus.READY:
        held = held_by(gates, job["type"], job["tenant"])
        if held is not None:
            return held
    deps = [
        DependencyFacts(job_id=d["id"], name=d["name"], status=JobStatus(d["status"]))
        for d in await store.unfinished_dependencies(conn, job["id"])
    ]
    ahead = 0
    workers: list[WorkerView] = []
    if status is JobStatus.READY:
        ahead = (
            await conn.execute(
                select(func.count()).where(
                    jobs.c.status == JobStatus.READY.value, jobs.c.priority > job["priority"]
                )
            )
        ).scalar_one()
        workers = await _workers(conn)
    facts = JobFacts(
        status=status,
        priority=job["priority"],
        cpu_units=job["cpu_units"],
        memory_mb=job["memory_escalated_mb"] or job["memory_mb"],
        attempts=job["attempts"],
        max_attempts=job["max_attempts"],
        run_at=job["run_at"].timestamp() if job["run_at"] else None,
        not_before=job["not_before"].timestamp() if job["not_before"] else None,
        worker_id=job["worker_id"],
        job_type=job["type"],
        resources=job["resources"] or {},
        labels=job["labels"] or {},
    )
    return why_waiting(facts, utcnow().timestamp(), deps, workers, ahead)
