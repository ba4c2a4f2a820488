"""Monitoring snapshots built from the core's state and the workers' last heartbeats.

Pure: the scheduler service calls these on a timer (``monitor_seconds``), never on every pass,
and publishes the results as ``job.monitoring.queue`` and ``job.monitoring.resource``.

Jobs by status never scans the jobs table: active statuses come from the core (one O(active)
walk per interval); finished statuses are a grouped count read once when the scheduler starts,
then incremented by the final transitions it decides (:meth:`Monitor.record`). A job the API
cancels before the scheduler took it in is only counted at the next count (a new leader).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from models.enums import FINAL_STATUSES, JobStatus, WorkerState
from models.messages import Heartbeat
from models.monitoring import (
    BatchFinishForecast,
    GateSnapshot,
    QueueMonitor,
    ResourceMonitor,
    StartForecast,
    TypeDuration,
    WorkerSnapshot,
)
from scheduler.batchfinish import BatchForecast
from scheduler.durations import TypeEstimate
from scheduler.flow import GateView
from scheduler.forecast import Forecast
from scheduler.state import JobRecord
from scheduler.values import Transition
from scheduler.workers import WorkerRecord

#: An offline worker stays in the resource snapshot this long after its last heartbeat.
KEEP_OFFLINE_SECONDS = 600.0


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def ready_since(job: JobRecord) -> float:
    """When a ready job could first have run: the latest of submission, ``run_at`` and the end
    of its last backoff (the core does not record the moment it became ready)."""
    return max(job.created_at, job.run_at or 0.0, job.not_before or 0.0)


def queue_snapshot(
    jobs: Iterable[JobRecord],
    finished: Mapping[str, int],
    now: float,
    gates: Iterable[GateView] = (),
    forecasts: Iterable[Forecast] = (),
    durations: Iterable[TypeEstimate] = (),
    batches: Iterable[BatchForecast] = (),
) -> QueueMonitor:
    """Jobs by status (every status present, 0 included), ready jobs by priority, and how long
    the oldest ready job has waited. O(active jobs)."""
    by_status: Counter[str] = Counter()
    by_priority: Counter[int] = Counter()
    oldest: float | None = None
    for job in jobs:
        by_status[job.status.value] += 1
        if job.status is JobStatus.READY:
            by_priority[job.priority] += 1
            since = ready_since(job)
            if oldest is None or since < oldest:
                oldest = since
    counts = {s.value: by_status.get(s.value, 0) for s in JobStatus}
    for status in FINAL_STATUSES:
        counts[status.value] = finished.get(status.value, 0)
    return QueueMonitor(
        ts=_dt(now),
        jobs_by_status=counts,
        ready_by_priority=dict(sorted(by_priority.items(), reverse=True)),
        oldest_ready_wait_seconds=None if oldest is None else max(0.0, now - oldest),
        gates=[
            GateSnapshot(
                kind=g.kind,
                name=g.name,
                limit=g.limit,
                running=g.running,
                held=g.held,
                next_at=None if g.next_at is None else _dt(g.next_at),
                reason=g.reason,
                state=g.state,
            )
            for g in gates
        ],
        forecasts=[
            StartForecast(job_id=f.job_id, start_at=_dt(f.start), late_at=_dt(f.late))
            for f in forecasts
        ],
        durations=[
            TypeDuration(
                job_type=d.job_type, seconds=d.seconds, p90_seconds=d.p90_seconds, runs=d.runs
            )
            for d in durations
        ],
        batch_forecasts=[
            BatchFinishForecast(
                batch_id=b.batch_id,
                finish_at=_dt(b.finish),
                late_at=_dt(b.late),
                jobs_left=b.jobs_left,
            )
            for b in batches
        ],
    )


def worker_state(worker: WorkerRecord) -> WorkerState:
    if not worker.online:
        return WorkerState.OFFLINE
    if worker.draining:
        return WorkerState.DRAINING if worker.holds else WorkerState.DRAINED
    return WorkerState.BUSY if worker.holds else WorkerState.IDLE


def worker_snapshot(worker: WorkerRecord, beat: Heartbeat | None) -> WorkerSnapshot:
    return WorkerSnapshot(
        worker_id=worker.id,
        state=worker_state(worker),
        cpu_units=worker.cpu_total,
        memory_mb=worker.mem_total,
        cpu_in_use=worker.cpu_used,
        memory_in_use=worker.mem_used,
        running_jobs=len(worker.holds),
        cpu_percent=beat.cpu_percent if beat else None,
        rss_mb=beat.rss_mb if beat else None,
        last_heartbeat=beat.ts if beat else None,
    )


def resource_snapshot(
    workers: Iterable[WorkerRecord],
    beats: Mapping[str, Heartbeat],
    now: float,
    keep_offline: float = KEEP_OFFLINE_SECONDS,
) -> ResourceMonitor:
    """Every online worker, and offline ones heard from within ``keep_offline`` seconds."""
    out = []
    for worker in workers:
        beat = beats.get(worker.id)
        if not worker.online and (beat is None or now - beat.ts.timestamp() > keep_offline):
            continue
        out.append(worker_snapshot(worker, beat))
    out.sort(key=lambda w: w.worker_id)
    return ResourceMonitor(ts=_dt(now), workers=out)


@dataclass
class Monitor:
    """What the scheduler keeps beside the core for monitoring: finished-job counters and each
    worker's last heartbeat. ``counted`` says whether the start-up count was read."""

    finished: Counter[str] = field(default_factory=Counter)
    beats: dict[str, Heartbeat] = field(default_factory=dict)
    counted: bool = False

    def record(self, transitions: Iterable[Transition], beats: Iterable[Heartbeat]) -> None:
        """Count the final transitions of a committed pass; keep the newest heartbeats."""
        for t in transitions:
            if t.to_status in FINAL_STATUSES:
                self.finished[t.to_status.value] += 1
        for beat in beats:
            self.beats[beat.worker_id] = beat

    def forget(self, deleted: Mapping[str, int]) -> None:
        """Jobs retention deleted are no longer held by the database."""
        for status, n in deleted.items():
            self.finished[status] = max(0, self.finished[status] - n)

    def start_count(self, counts: Mapping[str, int]) -> None:
        """Start from the finished jobs the database holds (transitions recorded while the
        count ran are taken as included in it)."""
        self.finished = Counter(counts)
        self.counted = True
