"""Many simulated workers in one process, speaking smartq's real worker protocol
(``python -m bench.fleet_sim``, started by ``bench fleet``).

Each simulated worker does on the wire what ``smartq worker`` does (worker/service.py):
consumes its own durable queue (``topology.worker_queue``, prefetch as the real worker's),
heartbeats its capacity and the attempts it runs every ``--heartbeat-seconds`` (phases spread
over the period), acks a dispatch once it took it, and reports each attempt's end on
``job.report.<job>`` (a worker's reports of one flush in one batch envelope, ahead of its
heartbeats, as the real worker's outbox sends them). A job only sleeps its payload's ``seconds`` and
succeeds; there are no log lines, so no logger is needed and reports are not held.

What is shared, so that a thousand workers fit in a few processes: one AMQP connection per
process (a channel per worker's consumer, so each keeps its own prefetch; RabbitMQ's default
``channel_max`` is 2,047 per connection), one publishing channel with confirms, and one
outbox gathering every worker's messages. Dispatches are decoded with orjson rather than
pydantic: the wire format is the same, and the process's CPU is left to the stack under test.

On SIGTERM every worker says goodbye (a ``stopped`` heartbeat: what it still runs is handed
back), and the process writes its :class:`~bench.fleet_stats.Tally` as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.fleet_stats import Tally
from models.enums import Outcome
from models.messages import AttemptFinished, Heartbeat, RunningAttempt, incarnation, unpack
from smartq import topology
from smartq.broker import BrokerError, IncomingMessage
from smartq.brokers.rabbitmq import RabbitMQBroker
from smartq.outbox import Outbox

#: The job type every simulated worker registers: the built-in ``sleep`` (worker/builtin_jobs.py),
#: which the API knows; its payload ``{"seconds": s}`` says how long, as for the real one.
JOB_TYPE = "sleep"
#: Name prefix of the probe jobs whose ready → received latency the bench measures.
PROBE_PREFIX = "probe-"
#: Queue set-ups (channel, qos, declares, binds, consume) in flight at once.
SETUP_CONCURRENCY = 32
#: How often the heartbeat clock looks for workers due to beat.
BEAT_TICK = 0.05
HOSTNAME = socket.gethostname()

#: (worker id, routing key, body)
Item = tuple[str, str, bytes]
Key = tuple[str, int]


@dataclass
class SimWorker:
    id: str
    slots: int
    memory_mb: int
    next_beat: float
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: (job id, attempt) → the attempt's resources and start.
    running: dict[Key, tuple[int, int, datetime]] = field(default_factory=dict)
    seen: set[Key] = field(default_factory=set)
    timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)

    @property
    def incarnation(self) -> str:
        return incarnation(self.started_at)

    def heartbeat(self, *, stopped: bool = False) -> Heartbeat:
        running = [
            RunningAttempt(job_id=job, attempt=n, cpu_units=cpu, memory_mb=mem)
            for (job, n), (cpu, mem, _) in self.running.items()
        ]
        return Heartbeat(
            worker_id=self.id,
            hostname=HOSTNAME,
            cpu_units=self.slots,
            memory_mb=self.memory_mb,
            job_types=[JOB_TYPE],
            running=running,
            stopped=stopped,
            started_at=self.started_at,
            ts=datetime.now(UTC),
        )


class SimFleet:
    """The simulated workers of this process (see the module docstring)."""

    def __init__(self, broker: RabbitMQBroker, args: argparse.Namespace) -> None:
        self.broker = broker
        self.heartbeat_seconds: float = args.heartbeat_seconds
        self.queue_expires: float = args.queue_expires
        now = time.monotonic()
        count: int = args.count
        self.workers = [
            SimWorker(
                id=topology.worker_key(f"{args.prefix}-{args.first + i:05d}"),
                slots=args.slots,
                memory_mb=args.memory_mb,
                next_beat=now + self.heartbeat_seconds * i / max(count, 1),
            )
            for i in range(count)
        ]
        self.tally = Tally()
        self.outbox: Outbox[Item] = Outbox(self._publish, retry_on=(BrokerError,), name="fleet")
        self.loop = asyncio.get_running_loop()
        self.beating = False

    # -- outgoing ---------------------------------------------------------------------------
    async def _publish(self, batch: list[Item]) -> None:
        """Per worker, as its own outbox would send a flush: reports in one envelope, then
        its heartbeats."""
        reports: dict[str, list[tuple[str, bytes]]] = {}
        beats: list[tuple[str, bytes]] = []
        for worker_id, key, body in batch:
            if key.startswith("job.report."):
                reports.setdefault(worker_id, []).append((key, body))
            else:
                beats.append((key, body))
        messages: list[tuple[str, bytes]] = []
        for per_worker in reports.values():
            messages += topology.batched(topology.REPORT_BATCH, per_worker)
        await self.broker.publish_many(messages + beats)

    def _beat(self, worker: SimWorker, *, stopped: bool = False) -> None:
        body = worker.heartbeat(stopped=stopped).dumps()
        self.outbox.put((worker.id, topology.heartbeat_key(worker.id), body))
        self.tally.heartbeats += 1

    async def heartbeats(self) -> None:
        """Every worker beats every period, at its own phase."""
        while True:
            now = time.monotonic()
            for worker in self.workers:
                if worker.next_beat <= now:
                    self._beat(worker)
                    worker.next_beat += self.heartbeat_seconds
            await asyncio.sleep(BEAT_TICK)

    def _finish(self, worker: SimWorker, key: Key, outcome: Outcome, error: str | None) -> None:
        held = worker.running.pop(key, None)
        worker.timers.pop(key, None)
        if held is None:
            return
        report = AttemptFinished(
            job_id=key[0],
            attempt=key[1],
            worker_id=worker.id,
            outcome=outcome,
            started_at=held[2],
            finished_at=datetime.now(UTC),
            error=error,
        )
        self.outbox.put((worker.id, topology.report_key(key[0]), report.dumps()))
        if outcome is Outcome.SUCCEEDED:
            self.tally.finishes[int(time.time())] += 1

    # -- incoming ---------------------------------------------------------------------------
    def handler(self, worker: SimWorker) -> Any:
        async def on_message(message: IncomingMessage) -> None:
            received = time.time()
            for doc in unpack(message.body):
                kind = doc.get("type") if isinstance(doc, dict) else None
                if kind == "job.dispatch":
                    self._take(worker, doc, received)
                elif kind == "job.cancel":
                    key = (doc["job_id"], int(doc["attempt"]))
                    timer = worker.timers.get(key)
                    if timer is not None:
                        timer.cancel()
                    self._finish(worker, key, Outcome.CANCELLED, doc.get("reason"))
            await message.ack()

        return on_message

    def _take(self, worker: SimWorker, doc: dict[str, Any], received: float) -> None:
        key = (doc["job_id"], int(doc["attempt"]))
        if key in worker.seen:
            self.tally.duplicates += 1
            return
        if doc.get("incarnation") not in (None, worker.incarnation):
            return  # meant for an earlier start of this id (the real worker drops it too)
        worker.seen.add(key)
        tally = self.tally
        tally.starts[int(received)] += 1
        dispatched = datetime.fromisoformat(doc["dispatched_at"]).timestamp()
        tally.pass_to_received.add((received - dispatched) * 1000)
        if str(doc.get("name", "")).startswith(PROBE_PREFIX):
            tally.probes[key[0]] = received
        started = datetime.fromtimestamp(received, UTC)
        worker.running[key] = (int(doc["cpu_units"]), int(doc["memory_mb"]), started)
        seconds = float(doc.get("payload", {}).get("seconds", 1.0))
        worker.timers[key] = self.loop.call_later(
            seconds, self._finish, worker, key, Outcome.SUCCEEDED, None
        )

    # -- life cycle -------------------------------------------------------------------------
    async def register(self) -> None:
        """Each worker's queue consumed, then its first heartbeat: it may be placed on at once."""
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(worker: SimWorker) -> None:
            queue = topology.worker_queue(worker.id, self.broker.exchange, self.queue_expires)
            async with gate:
                await self.broker.consume(
                    queue, self.handler(worker), prefetch=max(64, worker.slots * 4)
                )
            self._beat(worker)
            worker.next_beat = time.monotonic() + self.heartbeat_seconds

        await asyncio.gather(*(one(w) for w in self.workers))

    async def goodbye(self) -> None:
        """Every worker stops: timers off, a ``stopped`` heartbeat, the outbox drained."""
        for worker in self.workers:
            for timer in worker.timers.values():
                timer.cancel()
            worker.timers.clear()
            self._beat(worker, stopped=True)
        self.outbox.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.join(), 10)


async def run(args: argparse.Namespace) -> None:
    broker = RabbitMQBroker(args.amqp, exchange=args.exchange, connection_name="bench-fleet")
    await broker.connect()
    fleet = SimFleet(broker, args)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        fleet.loop.add_signal_handler(sig, stop.set)
    fleet.outbox.start()
    try:
        await fleet.register()
        beats = asyncio.create_task(fleet.heartbeats())
        await stop.wait()
        beats.cancel()
        await fleet.goodbye()
    finally:
        await asyncio.to_thread(Path(args.out).write_bytes, orjson.dumps(fleet.tally.to_json()))
        fleet.outbox.cancel()
        await broker.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_sim")
    p.add_argument("--amqp", required=True)
    p.add_argument("--exchange", required=True)
    p.add_argument("--prefix", required=True, help="worker ids are <prefix>-<n>")
    p.add_argument("--first", type=int, default=0, help="the first worker's n")
    p.add_argument("--count", type=int, required=True, help="workers in this process")
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--memory-mb", type=int, default=65_536)
    p.add_argument("--heartbeat-seconds", type=float, default=2.0)
    p.add_argument("--queue-expires", type=float, default=120.0)
    p.add_argument("--out", required=True, help="where the tally goes (JSON), at the end")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(run(parse()))
