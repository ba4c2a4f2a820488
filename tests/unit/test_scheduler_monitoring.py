"""Monitoring snapshots from the core's state (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from models.enums import JobStatus, WorkerState
from models.messages import Heartbeat
from models.monitoring import QueueMonitor
from scheduler.core import Scheduler
from scheduler.monitoring import Monitor, queue_snapshot, resource_snapshot
from scheduler.upkeep import publish_monitoring
from scheduler.values import JobSpec, Transition
from smartq.brokers.memory import InMemoryBroker


def spec(n: int, priority: int = 5, created: float = 100.0, **kw: object) -> JobSpec:
    return JobSpec(id=uuid.UUID(int=n), name=f"j{n}", priority=priority, created_at=created, **kw)  # type: ignore[arg-type]


def beat(worker: str, ts: float) -> Heartbeat:
    when = datetime.fromtimestamp(ts, UTC)
    return Heartbeat(
        worker_id=worker,
        hostname="h",
        cpu_units=4,
        memory_mb=1024,
        job_types=[],
        running=[],
        started_at=when,
        ts=when,
        cpu_percent=12.5,
        rss_mb=80.0,
    )


def test_queue_snapshot_counts_active_and_finished() -> None:
    core = Scheduler()
    core.add_jobs(
        [
            spec(1, priority=8, created=100),
            spec(2, priority=5, created=90),
            spec(3, created=50, depends_on=(uuid.UUID(int=1),)),
        ],
        now=110,
    )
    snap = queue_snapshot(core.state.jobs.values(), {"completed": 7}, now=120)
    assert snap.jobs_by_status["ready"] == 2 and snap.jobs_by_status["blocked"] == 1
    assert snap.jobs_by_status["completed"] == 7 and snap.jobs_by_status["failed"] == 0
    assert snap.ready_by_priority == {8: 1, 5: 1}
    assert snap.oldest_ready_wait_seconds == 30  # job 2, ready since it was created at 90


def test_resource_snapshot_and_states() -> None:
    core = Scheduler()
    core.upsert_worker("w1", 4, 1024)
    core.upsert_worker("w2", 2, 512)
    core.add_jobs([spec(1, cpu_units=3, memory_mb=256)], now=100)
    core.plan(100)
    core.worker_offline("w2", 100)
    core.upsert_worker("gone", 1, 1)
    core.worker_offline("gone", 100)
    beats = {"w1": beat("w1", 100), "gone": beat("gone", 0)}
    snap = resource_snapshot(core.state.workers.values(), beats, now=1000)
    by_id = {w.worker_id: w for w in snap.workers}
    assert set(by_id) == {"w1"}  # w2 never heartbeat, "gone" was last heard long ago
    w1 = by_id["w1"]
    assert (w1.state, w1.cpu_in_use, w1.memory_in_use, w1.running_jobs) == (
        WorkerState.BUSY,
        3,
        256,
        1,
    )
    assert (w1.cpu_percent, w1.rss_mb) == (12.5, 80.0)


def test_monitor_counts_final_transitions_after_the_start_count() -> None:
    m = Monitor()
    m.start_count({"completed": 10})
    j = uuid.UUID(int=1)
    m.record(
        [
            Transition(j, JobStatus.RUNNING, JobStatus.COMPLETED, 1),
            Transition(j, JobStatus.RUNNING, JobStatus.RETRYING, 1),
            Transition(j, JobStatus.BLOCKED, JobStatus.CANCELLED, 0),
        ],
        [beat("w1", 5)],
    )
    assert m.finished == {"completed": 11, "cancelled": 1}
    assert m.beats["w1"].cpu_percent == 12.5


class Kept(InMemoryBroker):
    """Keeps what is published."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, bytes]] = []

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, mandatory: bool = False
    ) -> None:
        self.sent.extend(messages)


async def test_the_queue_snapshot_carries_the_batches_predicted_finishes() -> None:
    """Published the way the scheduler does it: a batch of a chain 1 → 2 (10 s each by the
    default prediction) on a worker from t=0 is predicted to finish at 20."""
    core = Scheduler()
    core.upsert_worker("w", 1, 1024)
    core.add_jobs([spec(1, created=0.0), spec(2, created=0.0, depends_on=(uuid.UUID(int=1),))], 0.0)
    core.plan(0.0)
    broker = Kept()
    batch = uuid.uuid4()
    of = {uuid.UUID(int=1): batch, uuid.UUID(int=2): batch}
    await publish_monitoring(broker, Monitor(), core.state, 5.0, batch_of=of)
    (queue,) = [QueueMonitor.model_validate_json(b) for k, b in broker.sent if "queue" in k]
    (only,) = queue.batch_forecasts
    assert (only.batch_id, only.finish_at.timestamp(), only.jobs_left) == (batch, 20.0, 2)
