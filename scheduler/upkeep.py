"""What the leading scheduler runs beside its passes: the probe that tells whether it can hear
anyone (see :mod:`scheduler.liveness`), the pass statistics log, and the monitoring snapshots
(see :mod:`scheduler.monitoring`). Each runs until cancelled; none is on a pass's path."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from models.messages import SchedulerProbe
from scheduler import store
from scheduler.batchfinish import BatchForecast, batch_forecasts
from scheduler.forecast import DEFAULT_LIMIT, Forecast, forecast
from scheduler.monitoring import Monitor, queue_snapshot, resource_snapshot
from scheduler.state import SchedulerState
from scheduler.timings import PassTimings
from smartq import topology
from smartq.broker import Broker

log = logging.getLogger(__name__)


async def probe(broker: Broker, clock: Callable[[], float], every: float) -> None:
    """A message to the scheduler itself through the broker, every heartbeat period."""
    while True:
        try:
            await broker.publish(topology.SCHEDULER_PROBE, SchedulerProbe(sent=clock()).dumps())
        except Exception:
            log.debug("probe not sent", extra={"action": "scheduler.probe_failed"})
        await asyncio.sleep(every)


async def pass_stats(timings: PassTimings, every: float) -> None:
    """Log where passes spent their time (see scheduler.timings), when there were any."""
    while True:
        await asyncio.sleep(every)
        figures = timings.summary()
        if figures["passes"]:
            log.info("scheduler passes", extra={"action": "scheduler.passes", **figures})


async def monitoring(
    engine: AsyncEngine,
    broker: Broker,
    monitor: Monitor,
    state: Callable[[], SchedulerState],
    clock: Callable[[], float],
    every: float,
    forecast_jobs: int = DEFAULT_LIMIT,
    batch_of: Callable[[], Mapping[uuid.UUID, uuid.UUID]] = dict,
) -> None:
    """Publish ``job.monitoring.queue`` and ``job.monitoring.resource`` every ``every``
    seconds; the finished counts are read once, at the start. ``batch_of`` gives the batch
    of each active job that has one (for the batches' predicted finishes)."""
    monitor.counted = False
    while True:
        try:
            if not monitor.counted:
                async with engine.connect() as conn:
                    monitor.start_count(await store.count_finished(conn))
            await publish_monitoring(broker, monitor, state(), clock(), forecast_jobs, batch_of())
        except Exception:
            log.warning(
                "could not publish monitoring",
                exc_info=True,
                extra={"action": "scheduler.monitoring_failed"},
            )
        await asyncio.sleep(every)


def _forecasts(state: SchedulerState, now: float, limit: int) -> list[Forecast]:
    """The predicted starts; an estimate that fails must not cost the rest of the snapshot
    (the gates the API's waiting reasons come from), so it is logged and left out."""
    try:
        return forecast(state, now, limit)
    except Exception:
        log.error(
            "could not predict starts", exc_info=True, extra={"action": "scheduler.forecast_failed"}
        )
        return []


def _batches(
    state: SchedulerState,
    batch_of: Mapping[uuid.UUID, uuid.UUID],
    now: float,
    forecasts: list[Forecast],
) -> list[BatchForecast]:
    """The batches' predicted finishes; one that fails is logged and left out, like starts."""
    try:
        return batch_forecasts(state, batch_of, now, {f.job_id: f.start for f in forecasts})
    except Exception:
        log.error(
            "could not predict batch finishes",
            exc_info=True,
            extra={"action": "scheduler.batch_forecast_failed"},
        )
        return []


async def publish_monitoring(
    broker: Broker,
    monitor: Monitor,
    state: SchedulerState,
    now: float,
    forecast_jobs: int = DEFAULT_LIMIT,
    batch_of: Mapping[uuid.UUID, uuid.UUID] | None = None,
) -> None:
    forecasts = _forecasts(state, now, forecast_jobs)
    queue = queue_snapshot(
        state.jobs.values(),
        monitor.finished,
        now,
        state.flow.views(now),
        forecasts,
        state.durations.estimates(),
        _batches(state, batch_of, now, forecasts) if batch_of else (),
    )
    resources = resource_snapshot(state.workers.values(), monitor.beats, now)
    await broker.publish_many(
        [
            (topology.MONITORING_QUEUE, queue.dumps()),
            (topology.MONITORING_RESOURCE, resources.dumps()),
        ]
    )
