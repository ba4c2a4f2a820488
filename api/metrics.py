"""``GET /metrics`` figures, computed by each API process from what it sees.

Counters and histograms come from the job status events of the stream this process consumes
(every API process consumes all of them, so each reports the whole system: aggregate replicas
with ``max``, not ``sum``) — except ``smartq_jobs_submitted_total``, which counts this process's
own submissions (aggregate with ``sum``). Gauges (jobs by status, ready queue, workers) come
from the scheduler's latest monitoring snapshots, and stored log lines from the loggers'.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, never the global one.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.enums import JobStatus, WorkerState
from models.messages import JobStatusEvent
from models.monitoring import BreakerChanged, LoggerMonitor, QueueMonitor, ResourceMonitor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
_FINAL = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class Snapshots:
    """The latest monitoring snapshots this process received."""

    def __init__(self) -> None:
        self.queue: QueueMonitor | None = None
        self.resources: ResourceMonitor | None = None
        self.loggers: dict[str, LoggerMonitor] = {}
        #: Each job type's breaker as last heard (a ``breaker.state`` event or a snapshot).
        self.breakers: dict[str, str] = {}

    def observe(self, event: QueueMonitor | ResourceMonitor | LoggerMonitor) -> None:
        if isinstance(event, QueueMonitor):
            self.queue = event
            open_now = {g.name: g.state for g in event.gates if g.kind == "breaker" and g.state}
            for name in self.breakers:
                self.breakers[name] = open_now.get(name, "closed")
            self.breakers.update(open_now)
        elif isinstance(event, ResourceMonitor):
            self.resources = event
        else:
            self.loggers[event.logger_id] = event

    @property
    def log_lines_stored(self) -> int:
        """Lines stored by every logger process seen (each counts since its own start)."""
        return sum(m.lines_stored for m in self.loggers.values())


class _SnapshotCollector(Collector):
    def __init__(self, snapshots: Snapshots) -> None:
        self._s = snapshots

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield from self._workers()
        stored = CounterMetricFamily(
            "smartq_log_lines_stored", "Log lines stored by the logger processes."
        )
        stored.add_metric([], self._s.log_lines_stored)
        yield stored

    def _queue(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily("smartq_jobs", "Jobs by status.", labels=["status"])
        ready = GaugeMetricFamily(
            "smartq_ready_queue_depth", "Ready jobs waiting for a worker.", labels=["priority"]
        )
        oldest = GaugeMetricFamily(
            "smartq_oldest_ready_wait_seconds", "How long the oldest ready job has waited."
        )
        q = self._s.queue
        if q is not None:
            for status, n in sorted(q.jobs_by_status.items()):
                by_status.add_metric([status], n)
            for priority, n in sorted(q.ready_by_priority.items()):
                ready.add_metric([str(priority)], n)
            oldest.add_metric([], q.oldest_ready_wait_seconds or 0.0)
        yield from (by_status, ready, oldest)
        breaker = GaugeMetricFamily(
            "smartq_breaker_state",
            "A job type's circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["type"],
        )
        for name, state in sorted(self._s.breakers.items()):
            breaker.add_metric([name], _BREAKER_VALUE.get(state, 0))
        held = GaugeMetricFamily(
            "smartq_jobs_held",
            "Ready jobs a breaker or a limit holds back, by gate (breaker, type, tenant).",
            labels=["gate", "name"],
        )
        running = GaugeMetricFamily(
            "smartq_limit_running",
            "Running jobs a type's or tenant's concurrency limit counts.",
            labels=["gate", "name"],
        )
        for gate in q.gates if q is not None else []:
            held.add_metric([gate.kind, gate.name], gate.held)
            if gate.kind != "breaker":
                running.add_metric([gate.kind, gate.name], gate.running)
        yield from (breaker, held, running)

    def _workers(self) -> Iterator[Metric]:
        label = ["worker"]
        families = {
            "cpu_units": GaugeMetricFamily(
                "smartq_worker_cpu_units", "Worker capacity in cpu_units.", labels=label
            ),
            "memory_mb": GaugeMetricFamily(
                "smartq_worker_memory_mb", "Worker capacity in MB.", labels=label
            ),
            "cpu_in_use": GaugeMetricFamily(
                "smartq_worker_cpu_units_in_use", "cpu_units held by running jobs.", labels=label
            ),
            "memory_in_use": GaugeMetricFamily(
                "smartq_worker_memory_mb_in_use", "MB held by running jobs.", labels=label
            ),
            "running_jobs": GaugeMetricFamily(
                "smartq_worker_running_jobs", "Jobs running on the worker.", labels=label
            ),
        }
        up = GaugeMetricFamily(
            "smartq_worker_state", "1 for the worker's current state.", labels=["worker", "state"]
        )
        r = self._s.resources
        for w in r.workers if r is not None else []:
            for attr, family in families.items():
                family.add_metric([w.worker_id], getattr(w, attr))
            for state in WorkerState:
                up.add_metric([w.worker_id, state.value], 1.0 if w.state is state else 0.0)
        yield from families.values()
        yield up


class Metrics:
    """The Prometheus figures of one API app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.snapshots = Snapshots()
        r, by_type = self.registry, ["type"]
        self.submitted = Counter(
            "smartq_jobs_submitted", "Jobs submitted through this API process.", by_type, registry=r
        )
        self.finished = {
            status: Counter(f"smartq_jobs_{name}", f"Jobs {name}.", by_type, registry=r)
            for status, name in _FINAL.items()
        }
        self.fast_submits = Counter(
            "smartq_api_fast_submits",
            "POST /jobs requests served without FastAPI's request machinery (api/fastpath.py).",
            registry=r,
        )
        self.refused = Counter(
            "smartq_api_refused",
            "Requests refused for now, with Retry-After, by why: a tenant's submit_rate or "
            "max_active_jobs (429), no database connection free in time (overloaded, 503), or "
            "no answer within the request's deadline (deadline, 503).",
            ["reason"],
            registry=r,
        )
        self.retried = Counter(
            "smartq_jobs_retried", "Attempts after the first (retries).", by_type, registry=r
        )
        self.queued = Histogram(
            "smartq_job_queued_seconds",
            "From submission to the first start.",
            by_type,
            buckets=_SECONDS,
            registry=r,
        )
        self.run = Histogram(
            "smartq_job_run_seconds",
            "How long an attempt ran.",
            by_type,
            buckets=_SECONDS,
            registry=r,
        )
        self.log_lines = Counter(
            "smartq_log_lines_streamed", "Log lines seen on the live stream.", registry=r
        )
        self.breaker_transitions = Counter(
            "smartq_breaker_transitions",
            "Changes of a job type's circuit breaker, by the state it went to.",
            ["type", "to"],
            registry=r,
        )
        r.register(_SnapshotCollector(self.snapshots))

    def breaker_changed(self, event: BreakerChanged) -> None:
        self.snapshots.breakers[event.job_type] = event.state
        self.breaker_transitions.labels(event.job_type, event.state).inc()

    def job_status(self, event: JobStatusEvent) -> None:
        """Count one status event (the stream hub drops duplicates and stale ones first)."""
        job_type = event.job_type or "unknown"
        final = self.finished.get(event.status)
        if final is not None:
            final.labels(job_type).inc()
        if event.status is JobStatus.RUNNING and event.attempt > 1:
            self.retried.labels(job_type).inc()
        if event.queued_seconds is not None:
            self.queued.labels(job_type).observe(event.queued_seconds)
        if event.run_seconds is not None:
            self.run.labels(job_type).observe(event.run_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
