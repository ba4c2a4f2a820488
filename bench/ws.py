"""WebSocket fan-out: ``python -m bench ws [--quick] [--runs N]``.

Target (issue 6): 1,000 connected clients; >= 5,000 events/s delivered in all; log line →
client p99 <= 100 ms.

The real processes (``smartq api``, ``scheduler``, ``worker``, ``logger``). The workload is a
dashboard per batch: each client watches one batch (its ``job.status`` and ``job.log``
events), and each batch is watched by ``CLIENTS_PER_BATCH`` clients (its page open in a few
places). Each run:

1. connects every client (``CONNECT_CONCURRENCY`` at a time) with a filter nothing here
   matches, as a page that has opened its socket;
2. submits the batches (``POST /jobs/batch``): ``log`` jobs (``LINES`` lines, plus the worker's
   two), their ``run_at`` spread evenly over the timed window, so the load is paced by the
   scheduler's timers. The job count makes the events the clients would receive if everything
   kept up ``PER_CLIENT_RATE`` per client per second (5,500/s in all for 1,000 clients: 10 %
   over the target);
3. has every client ``set`` its filter to its batch and waits for each ``stream.subscribed``
   before the window opens (the snapshots of the waiting jobs are not counted). The first
   ``run_at`` leaves ``LEAD_S`` + ``LEAD_PER_CLIENT_S`` per client for this; a run that needs
   longer fails rather than measure a window it missed the start of;
4. counts, in every client, every ``job.status``/``job.log`` event received; a log line's
   latency is the client's ``time.time()`` on receipt − the line's ``ts`` (the worker's
   ``time.time()`` when the job logged it; same machine, same clock);
5. after the window, waits up to ``DRAIN_S`` for the lines still on their way, then closes
   the clients and waits for the jobs to finish.

Figures (median, min, max over the runs):

* ``events_per_s``: events received by all clients within the window / window (>= 5000);
* ``log_p50_ms``, ``log_p99_ms``: log line → client, over every line received, late ones
  included (p99 <= 100); ``lines_missing`` counts those never received (they are not in the
  percentiles, so a non-zero count is a failure too);
* ``dropped_clients``: clients told ``stream.dropped`` or closed with 4408 (too slow);
  ``closed_clients``: clients the server closed for any reason; each must be 0;
* ``cpu_percent_<process>``: CPU of each smartq process and of this one (``clients``) over the
  window, 100 = one core; ``client_cpu_us_per_event`` tells whether the clients kept up.

``--quick``: 50 clients, 3 s. Clients and server share the 2-core machine: the clients' own CPU
is in the figures.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import figures
from bench.e2e import batch_body, post_batch
from bench.harness import HarnessError, Stack, cpu_ms

CLIENTS = 1_000
QUICK_CLIENTS = 50
CLIENTS_PER_BATCH = 10
#: Events per second each client receives if everything keeps up.
PER_CLIENT_RATE = 5.5
#: Lines each job logs; the worker adds two of its own ("started attempt …", "succeeded in …")
#: and the scheduler two status events (running, completed).
LINES = 7
LINES_PER_JOB = LINES + 2
EVENTS_PER_JOB = LINES_PER_JOB + 2
CONNECT_CONCURRENCY = 50
#: Connected first with a filter nothing in this workload matches (no job is cancelled).
IDLE_FILTER = "?type=job.status&status=cancelled"
#: From submitting the batches to the first ``run_at``: for every client to subscribe.
LEAD_S = 2.0
LEAD_PER_CLIENT_S = 0.02
DRAIN_S = 10.0
CLOSE_TOO_SLOW = 4408


@dataclass
class Watcher:
    """One client: the batch it watches and what it received."""

    batch: int
    ws: ClientConnection | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0
    in_window: int = 0
    lines: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    dropped_notices: int = 0
    missed: int = 0
    close_code: int | None = None
    closing: bool = False


class Clients:
    """Every client of one run, read by one task each: connected (:meth:`open`), then
    watching its batch (:meth:`subscribe`), as a dashboard page that opens its socket and then
    follows the batch the user picked."""

    def __init__(self, url: str, headers: dict[str, str], count: int, batches: int) -> None:
        self.url = url
        self.headers = headers
        self.watchers = [Watcher(i % batches) for i in range(count)]
        self.window_end = float("inf")
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        await asyncio.gather(*(self._open(w, gate) for w in self.watchers))

    async def _open(self, w: Watcher, gate: asyncio.Semaphore) -> None:
        async with gate:
            w.ws = await connect(
                self.url + IDLE_FILTER,
                additional_headers=self.headers,
                ping_interval=None,
                open_timeout=120,
                close_timeout=2,
            )
            first = orjson.loads(await w.ws.recv())
            if first.get("type") != "stream.subscribed":
                raise HarnessError(f"expected stream.subscribed, got {first}")
        self._tasks.append(asyncio.create_task(self._read(w)))

    async def subscribe(self, batch_ids: list[uuid.UUID]) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(w: Watcher) -> None:
            assert w.ws is not None
            command = {"action": "set", "batch_ids": [str(batch_ids[w.batch])]}
            async with gate:
                await w.ws.send(orjson.dumps(command).decode())
                async with asyncio.timeout(60):
                    await w.subscribed.wait()

        await asyncio.gather(*(one(w) for w in self.watchers))

    async def _read(self, w: Watcher) -> None:
        assert w.ws is not None
        try:
            async for text in w.ws:
                now = time.time()
                event = orjson.loads(text)
                kind = event["type"]
                if kind == "job.log":
                    ts = datetime.fromisoformat(event["ts"]).timestamp()
                    w.latencies_ms.append((now - ts) * 1000)
                    w.lines += 1
                elif kind == "stream.dropped":
                    w.dropped_notices += 1
                    w.missed += int(event["missed"])
                    continue
                elif kind == "stream.subscribed":
                    if event["filter"]["batch_ids"]:
                        w.subscribed.set()
                    continue
                elif kind != "job.status" or event.get("snapshot"):
                    continue
                w.events += 1
                if now <= self.window_end:
                    w.in_window += 1
        except ConnectionClosed:
            pass
        if not w.closing:
            w.close_code = w.ws.close_code

    def lines(self) -> int:
        return sum(w.lines for w in self.watchers)

    async def close(self) -> None:
        for w in self.watchers:
            w.closing = True
        await asyncio.gather(
            *(w.ws.close() for w in self.watchers if w.ws is not None), return_exceptions=True
        )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def plan(clients: int, seconds: float) -> tuple[int, int]:
    """(batches, jobs) for ``clients`` receiving ``PER_CLIENT_RATE`` events/s each."""
    batches = max(1, round(clients / CLIENTS_PER_BATCH))
    watchers = clients / batches
    jobs = round(PER_CLIENT_RATE * clients * seconds / (watchers * EVENTS_PER_JOB))
    return batches, max(jobs, batches)


async def submit(
    stack: Stack, batches: int, jobs: int, t0: float, seconds: float
) -> tuple[list[uuid.UUID], list[int]]:
    """The batches and their sizes; job k runs at ``t0 + (k + ½) × seconds / jobs`` in batch
    ``k % batches``."""
    per_batch: list[list[dict[str, Any]]] = [[] for _ in range(batches)]
    for k in range(jobs):
        run_at = datetime.fromtimestamp(t0 + (k + 0.5) * seconds / jobs, UTC).isoformat()
        per_batch[k % batches].append(
            {"type": "log", "payload": {"lines": LINES}, "run_at": run_at}
        )
    conn = stack.http()
    try:
        ids = [await post_batch(conn, batch_body(js)) for js in per_batch]
    finally:
        await conn.close()
    return ids, [len(js) for js in per_batch]


def _cpu(stack: Stack) -> dict[str, float]:
    out = {name: cpu_ms(p.ps) for name, p in stack.procs.items()}
    out["clients"] = cpu_ms(psutil.Process())
    return out


async def ws_run(stack: Stack, clients: int, seconds: float) -> dict[str, float]:
    batches, jobs = plan(clients, seconds)
    group = Clients(f"ws://127.0.0.1:{stack.port}/jobs/stream", stack.headers, clients, batches)
    c0 = time.perf_counter()
    try:
        await group.open()
        connect_s = time.perf_counter() - c0
        t0 = time.time() + LEAD_S + clients * LEAD_PER_CLIENT_S
        batch_ids, sizes = await submit(stack, batches, jobs, t0, seconds)
        s0 = time.perf_counter()
        await group.subscribe(batch_ids)
        subscribe_s = time.perf_counter() - s0
        if time.time() > t0:
            raise HarnessError(f"subscribing {clients} clients took {subscribe_s:.1f} s: > lead")
        group.window_end = t0 + seconds
        await asyncio.sleep(t0 - time.time())
        cpu0 = _cpu(stack)
        await asyncio.sleep(group.window_end - time.time())
        cpu1 = _cpu(stack)
        expected_lines = sum(sizes[w.batch] * LINES_PER_JOB for w in group.watchers)
        for _ in range(round(DRAIN_S / 0.1)):  # the lines still on their way
            if group.lines() >= expected_lines:
                break
            await asyncio.sleep(0.1)
    finally:
        await group.close()
    if not await stack.wait_idle(60):
        raise TimeoutError("jobs still active 60 s after the window")
    ws = group.watchers
    latencies = [x for w in ws for x in w.latencies_ms]
    in_window = sum(w.in_window for w in ws)
    cpu_ms_used = {k: cpu1[k] - cpu0[k] for k in cpu1}
    out = {
        "events_per_s": in_window / seconds,
        "log_p50_ms": figures.percentile(latencies, 0.5),
        "log_p99_ms": figures.percentile(latencies, 0.99),
        "log_max_ms": max(latencies, default=float("nan")),
        "dropped_clients": float(
            sum(1 for w in ws if w.dropped_notices or w.close_code == CLOSE_TOO_SLOW)
        ),
        "closed_clients": float(sum(1 for w in ws if w.close_code is not None)),
        "missed_events": float(sum(w.missed for w in ws)),
        "offered_events_per_s": sum(sizes[w.batch] for w in ws) * EVENTS_PER_JOB / seconds,
        "events_in_window": float(in_window),
        "events_delivered": float(sum(w.events for w in ws)),
        "lines_expected": float(expected_lines),
        "lines_missing": float(expected_lines - len(latencies)),
        "jobs": float(jobs),
        "batches": float(batches),
        "connect_s": connect_s,
        "subscribe_s": subscribe_s,
        "client_cpu_us_per_event": cpu_ms_used["clients"] * 1000 / max(in_window, 1),
    }
    out.update({f"cpu_percent_{k}": v / seconds / 10 for k, v in cpu_ms_used.items()})
    return out


TARGETS = {
    "events_per_s": ">= 5000",
    "log_p99_ms": "<= 100",
    "dropped_clients": "<= 0",
    "closed_clients": "<= 0",
    "lines_missing": "<= 0",
}


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    clients = QUICK_CLIENTS if options.quick else CLIENTS
    seconds = 3.0 if options.quick else 20.0
    results = []
    async with Stack(worker_units=64, taps=False) as stack:
        for _ in range(runs):
            results.append(await ws_run(stack, clients, seconds))
    out: dict[str, Any] = {
        "runs": runs,
        "clients": clients,
        "clients_per_batch": CLIENTS_PER_BATCH,
        "seconds": seconds,
    }
    for key in results[0]:
        out[key] = figures.figure([r[key] for r in results], TARGETS.get(key), 2)
    return out


def main(argv: list[str]) -> int:
    return figures.run_main("ws", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
