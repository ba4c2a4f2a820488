"""After a fault scenario: let the system settle, then count what went wrong.

Counts (see :class:`Counts`), every one of them zero on a healthy smartq:

* ``lost`` — accepted jobs that never reached a final status (or vanished).
* ``duplicated`` — jobs with more side effects than attempts, with two side effects of one
  attempt, or with more than one ``succeeded`` attempt row.
* ``unrecorded`` — side effects of an attempt the database has no row for.
* ``stuck`` — jobs ``running`` on a worker that is offline or no longer heartbeating.
* ``open_attempts`` — attempt rows without an outcome whose job is final.
* ``busy_cpu`` / ``busy_memory`` — resources of ``running`` jobs (the database's view).
* ``held_cpu`` / ``held_memory`` / ``held_jobs`` — what the scheduler's own accounting still
  holds on workers (its ``job.monitoring.resource`` snapshot).
* ``worker_running`` — attempts live workers still report in their heartbeats.
* ``unreleased`` — attempt rows still holding capacity (``released_at`` NULL).
* ``over_budget`` — jobs with more attempts than ``max_attempts`` (hand-backs, recorded as
  ``handed_back``, are not attempts of the budget).
* ``queue_ready`` / ``queue_unacked`` — messages left in the scheduler's and logger's queues.

Two more are reported for the at-least-once bound a scenario states: ``effects_unsuccessful``
(side effects of attempts whose outcome is not ``succeeded``: the job ran to its end but the
attempt did not count, e.g. its worker died before reporting) and ``lost_attempts`` (attempt rows
with outcome ``lost``). A scenario that kills workers allows
``effects_unsuccessful <= lost_attempts``; the others allow none.

The checker reads the database, RabbitMQ (``rabbitmqctl`` for queue depths, a private queue on
the test's exchange for monitoring snapshots and heartbeats) and nothing of the processes, so
scenarios that break the scheduler, RabbitMQ or PostgreSQL can reuse it as is. What it needs of
a system is a :class:`Target`: the fault suite's :class:`~tests.faults.cluster.Cluster` is one,
and so is the multi-host :class:`smartq.cluster.cluster.Cluster` (tests/cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from models.messages import Heartbeat
from models.monitoring import ResourceMonitor
from smartq import topology
from smartq.broker import IncomingMessage
from smartq.brokers.rabbitmq import RabbitMQBroker
from tests.faults.cluster import FINAL, LEASE_SECONDS, run_coroutine


class Target(Protocol):
    """What the checker reads: the database (from where the checker runs), RabbitMQ and the
    exchange of the system under test."""

    @property
    def db_url(self) -> str: ...

    @property
    def rabbit_url(self) -> str: ...

    @property
    def exchange(self) -> str: ...


#: Counts that must be zero after every scenario.
MUST_BE_ZERO = (
    "lost",
    "duplicated",
    "unrecorded",
    "stuck",
    "open_attempts",
    "busy_cpu",
    "busy_memory",
    "held_cpu",
    "held_memory",
    "held_jobs",
    "worker_running",
    "unreleased",
    "over_budget",
    "queue_ready",
    "queue_unacked",
)


@dataclass(frozen=True)
class Counts:
    jobs: int = 0
    final: int = 0
    lost: int = 0
    duplicated: int = 0
    unrecorded: int = 0
    stuck: int = 0
    open_attempts: int = 0
    busy_cpu: int = 0
    busy_memory: int = 0
    held_cpu: int = 0
    held_memory: int = 0
    held_jobs: int = 0
    worker_running: int = 0
    unreleased: int = 0
    over_budget: int = 0
    queue_ready: int = 0
    queue_unacked: int = 0
    effects: int = 0
    effects_unsuccessful: int = 0
    lost_attempts: int = 0
    settle_seconds: float = 0.0
    #: Which jobs, workers or queues each nonzero count is about (not in the repr).
    details: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name != "details" and f.name != "settle_seconds"
        ]
        return f"Counts({', '.join(shown)}, settled in {self.settle_seconds:.1f}s)"

    def problems(self, allow_effects_unsuccessful: int = 0) -> list[str]:
        """What breaks the guarantees, with details; empty when the scenario passed."""
        out = [
            f"{name}={getattr(self, name)}: {self.details.get(name, '')}"
            for name in MUST_BE_ZERO
            if getattr(self, name)
        ]
        if self.effects_unsuccessful > allow_effects_unsuccessful:
            out.append(
                f"effects_unsuccessful={self.effects_unsuccessful} > allowed "
                f"{allow_effects_unsuccessful}: {self.details.get('effects_unsuccessful', '')}"
            )
        return out

    def assert_clean(self, allow_effects_unsuccessful: int = 0) -> None:
        problems = self.problems(allow_effects_unsuccessful)
        assert not problems, f"{self!r}\n" + "\n".join(problems)


def settle(c: Target, timeout: float) -> float:
    """Wait until no job of the database is active (or ``timeout``); returns the seconds."""
    began = time.monotonic()
    sql = "SELECT count(*) FROM jobs WHERE NOT status = ANY(%s)"
    with psycopg.connect(c.db_url, autocommit=True) as conn:
        while time.monotonic() - began < timeout:
            row = conn.execute(sql, (list(FINAL),)).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.1)
    return time.monotonic() - began


def check(
    c: Target,
    *,
    accepted: list[str] | None = None,
    settle_timeout: float = 60,
    quiet_timeout: float = 15,
    scheduler: bool = True,
) -> Counts:
    """Settle, wait (up to ``quiet_timeout``) for queues and accounting to drain, then count.

    ``accepted``: the ids the API returned (default: every job of the database). Without a
    ``scheduler``, the monitoring snapshot is not waited for (and the held counts stay 0).
    """
    settled = settle(c, settle_timeout)
    quiet = _quiet(c, quiet_timeout, scheduler)
    with psycopg.connect(c.db_url, row_factory=dict_row) as conn:
        counts, details = _database_counts(conn, accepted)
    details.update(quiet.pop("details"))
    return Counts(**counts, **quiet, settle_seconds=settled, details=details)


# -- the database ---------------------------------------------------------------------------
def _database_counts(
    conn: psycopg.Connection[Any], accepted: list[str] | None
) -> tuple[dict[str, int], dict[str, Any]]:
    jobs = {str(r["id"]): r for r in conn.execute("SELECT * FROM jobs").fetchall()}
    attempts = conn.execute("SELECT * FROM job_attempts").fetchall()
    effects = conn.execute("SELECT job_id, attempt, worker_id FROM side_effects").fetchall()
    workers = {r["id"]: r for r in conn.execute("SELECT * FROM workers").fetchall()}
    now = conn.execute("SELECT clock_timestamp() AS now").fetchone()
    assert now is not None
    wanted = accepted if accepted is not None else list(jobs)
    details: dict[str, Any] = {}

    lost = [i for i in wanted if i not in jobs or jobs[i]["status"] not in FINAL]
    details["lost"] = {i: jobs[i]["status"] if i in jobs else "missing" for i in lost[:20]}

    outcome = {(str(a["job_id"]), a["attempt"]): a["outcome"] for a in attempts}
    per_attempt = Counter((str(e["job_id"]), e["attempt"]) for e in effects)
    per_job = Counter(str(e["job_id"]) for e in effects)
    succeeded = Counter(str(a["job_id"]) for a in attempts if a["outcome"] == "succeeded")
    duplicated = sorted(
        {j for j, n in per_job.items() if j in jobs and n > jobs[j]["attempts"]}
        | {j for (j, _), n in per_attempt.items() if n > 1}
        | {j for j, n in succeeded.items() if n > 1}
    )
    details["duplicated"] = {
        j: {"effects": per_job[j], "attempts": jobs[j]["attempts"] if j in jobs else None}
        for j in duplicated[:20]
    }
    unrecorded = [key for key in per_attempt if key not in outcome]
    details["unrecorded"] = unrecorded[:20]
    unsuccessful = {
        key: outcome[key] for key in per_attempt if key in outcome and outcome[key] != "succeeded"
    }
    details["effects_unsuccessful"] = dict(Counter(unsuccessful.values()))

    stuck = [
        j
        for j, r in jobs.items()
        if r["status"] == "running" and not _alive(workers.get(r["worker_id"]), now["now"])
    ]
    details["stuck"] = {j: jobs[j]["worker_id"] for j in stuck[:20]}
    open_attempts = [
        key
        for key, out in outcome.items()
        if out is None and key[0] in jobs and jobs[key[0]]["status"] in FINAL
    ]
    details["open_attempts"] = open_attempts[:20]
    busy: Counter[str] = Counter()
    for r in jobs.values():
        if r["status"] == "running":
            busy[f"{r['worker_id']}:cpu"] += r["cpu_units"]
            busy[f"{r['worker_id']}:mem"] += r["memory_mb"]
    details["busy_cpu"] = details["busy_memory"] = dict(busy)
    unreleased = [
        (str(a["job_id"]), a["attempt"], a["worker_id"])
        for a in attempts
        if a["released_at"] is None
    ]
    details["unreleased"] = unreleased[:20]
    budget = Counter(
        str(a["job_id"])
        for a in attempts
        if a["outcome"] != "handed_back"
        and str(a["job_id"]) in jobs
        and a["attempt"] > jobs[str(a["job_id"])]["attempts_base"]
    )
    over_budget = {j: n for j, n in budget.items() if n > jobs[j]["max_attempts"]}
    details["over_budget"] = dict(list(over_budget.items())[:20])
    counts = {
        "jobs": len(wanted),
        "final": len(wanted) - len(lost),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unrecorded": len(unrecorded),
        "stuck": len(stuck),
        "open_attempts": len(open_attempts),
        "unreleased": len(unreleased),
        "over_budget": len(over_budget),
        "busy_cpu": sum(v for k, v in busy.items() if k.endswith(":cpu")),
        "busy_memory": sum(v for k, v in busy.items() if k.endswith(":mem")),
        "effects": len(effects),
        "effects_unsuccessful": sum(per_attempt[k] for k in unsuccessful),
        "lost_attempts": sum(1 for out in outcome.values() if out == "lost"),
    }
    return counts, details


def _alive(worker: dict[str, Any] | None, now: Any) -> bool:
    if worker is None or worker["state"] == "offline":
        return False
    return bool((now - worker["last_heartbeat"]).total_seconds() <= LEASE_SECONDS)


# -- RabbitMQ -------------------------------------------------------------------------------
def queue_depths(c: Target) -> dict[str, tuple[int, int]]:
    """``{queue: (ready, unacked)}`` for the queues of the test's exchange (rabbitmqctl)."""
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "name", "messages_ready", "messages_unacknowledged"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    depths = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(c.exchange + ".") and parts[1].isdigit():
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


def _quiet(c: Target, timeout: float, scheduler: bool) -> dict[str, Any]:
    """Poll until the scheduler's and logger's queues are empty and, with a scheduler, its
    latest resource snapshot and the live workers' heartbeats hold nothing."""
    return run_coroutine(_watch(c, timeout, scheduler))


async def _watch(c: Target, timeout: float, scheduler: bool) -> dict[str, Any]:
    snapshot: dict[str, ResourceMonitor] = {}
    beats: dict[str, Heartbeat] = {}

    async def on_message(message: IncomingMessage) -> None:
        with contextlib.suppress(ValueError):
            if message.routing_key == topology.MONITORING_RESOURCE:
                snapshot["last"] = ResourceMonitor.model_validate_json(message.body)
            else:
                beat = Heartbeat.model_validate_json(message.body)
                beats[beat.worker_id] = beat
        await message.ack()

    broker = RabbitMQBroker(c.rabbit_url, exchange=c.exchange)
    await broker.connect()
    spec = topology.QueueSpec(
        name=f"{c.exchange}.checker.{uuid.uuid4().hex[:8]}",
        bindings=(topology.MONITORING_RESOURCE, "worker.heartbeat.#"),
        durable=False,
        exclusive=True,
        auto_delete=True,
    )
    consumer = await broker.consume(spec, on_message, prefetch=100)
    mine = {topology.scheduler_queue(c.exchange).name, topology.logger_queue(c.exchange).name}
    began = time.monotonic()
    try:
        while True:
            snapshot.pop("last", None)
            beats.clear()
            await asyncio.sleep(1.2)  # > two monitoring intervals and two heartbeats
            depths = await asyncio.to_thread(queue_depths, c)
            result = _quiet_counts(depths, mine, snapshot.get("last"), beats, scheduler)
            clean = not any(v for k, v in result.items() if k != "details")
            if clean or time.monotonic() - began > timeout:
                return result
    finally:
        await consumer.cancel()
        await broker.close()


def _quiet_counts(
    depths: dict[str, tuple[int, int]],
    mine: set[str],
    snapshot: ResourceMonitor | None,
    beats: dict[str, Heartbeat],
    scheduler: bool,
) -> dict[str, Any]:
    ours = {q: d for q, d in depths.items() if q in mine}
    held = [w for w in (snapshot.workers if snapshot else []) if w.running_jobs or w.cpu_in_use]
    running = {w: len(b.running) for w, b in beats.items() if b.running and not b.stopped}
    missing = scheduler and snapshot is None
    return {
        "queue_ready": sum(r for r, _ in ours.values()),
        "queue_unacked": sum(u for _, u in ours.values()),
        # No snapshot at all counts as one held job: the accounting could not be checked.
        "held_jobs": sum(w.running_jobs for w in held) + (1 if missing else 0),
        "held_cpu": sum(w.cpu_in_use for w in held),
        "held_memory": sum(w.memory_in_use for w in held),
        "worker_running": sum(running.values()),
        "details": {
            "queue_ready": depths,
            "queue_unacked": depths,
            "held_jobs": "no resource snapshot" if missing else [w.worker_id for w in held],
            "held_cpu": {w.worker_id: w.cpu_in_use for w in held},
            "held_memory": {w.worker_id: w.memory_in_use for w in held},
            "worker_running": running,
        },
    }
