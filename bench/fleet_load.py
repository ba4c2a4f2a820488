"""What ``bench fleet`` does around the simulated workers: keeps the queue fed, samples the
stack once a second, and reads the scheduler's log.

* :class:`Feeder`: ``POST /jobs/batch`` of 1,000 jobs (as ``bench e2e`` submits), from a few
  connections at once, whenever fewer than ``backlog`` jobs wait (pending, ready or blocked,
  counted through the partial index ``ix_jobs_active``). Each batch carries probe pairs
  ``pair-a → probe-b``, ``b`` at high priority: ``b`` becomes ready in the pass that takes in
  ``a``'s end (``a.finished_at`` is that pass's clock) and goes ahead of the queue, so its
  dispatch waits for the scheduler, not for a free slot.
* :class:`Sampler`: live workers of the phase (``workers.state`` idle or busy), scheduler RSS
  (psutil), and whether every simulated-worker process is alive; :class:`CpuWindow`: CPU by
  kind of process over the measured window.
* :func:`scheduler_log`: the ``scheduler.passes`` statistics and the workers it put offline
  (``scheduler.worker_offline``), from its JSON log, inside a time window.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.e2e import batch_body, post_batch
from bench.fleet_sim import JOB_TYPE, PROBE_PREFIX
from bench.harness import Stack, cpu_ms

BATCH = 1_000
#: Concurrent ``POST /jobs/batch`` requests while the backlog is short.
POSTERS = 2
WAITING = "SELECT count(*) FROM jobs WHERE status IN ('blocked', 'pending', 'ready')"

PROBE_READY = """
SELECT b.id::text, extract(epoch FROM a.finished_at)
FROM jobs b
JOIN job_dependencies e ON e.job_id = b.id
JOIN jobs a ON a.id = e.depends_on_id
WHERE b.id = ANY(%s::uuid[]) AND a.finished_at IS NOT NULL
"""


def fleet_batch(probes: int, seconds: float) -> bytes:
    """One batch of jobs sleeping ``seconds`` on average: ``probes`` pairs ``pair-a<i> →
    probe-b<i>`` and plain jobs to 1,000. Their run times are spread evenly over 0.5–1.5 ×
    ``seconds``: jobs of one length, started together by a pass, all end together and the
    fleet moves in waves (every slot free at once, then none)."""
    jobs: list[dict[str, Any]] = []
    for i in range(probes):
        jobs.append({"key": f"a{i}", "name": f"pair-a{i}"})
        jobs.append(
            {
                "key": f"b{i}",
                "name": f"{PROBE_PREFIX}b{i}",
                "priority": "high",
                "depends_on": [f"a{i}"],
            }
        )
    jobs += [{"name": "fleet"} for _ in range(BATCH - len(jobs))]
    for i, job in enumerate(jobs):
        spread = round(seconds * (0.5 + i / BATCH), 3)
        job.update(type=JOB_TYPE, payload={"seconds": spread}, cpu_units=1, memory_mb=64)
    return batch_body(jobs)


@dataclass
class Feeder:
    stack: Stack
    job_seconds: float
    backlog: int
    probes: int = 10
    submitted: int = 0
    body: bytes = b""

    async def run(self) -> None:
        self.body = fleet_batch(self.probes, self.job_seconds)
        await asyncio.gather(*(self._poster() for _ in range(POSTERS)))

    async def _poster(self) -> None:
        conn = self.stack.http()
        try:
            while True:
                (waiting,) = (await self.stack.fetch(WAITING))[0]
                if int(waiting) >= self.backlog:
                    await asyncio.sleep(0.05)
                    continue
                await post_batch(conn, self.body)
                self.submitted += BATCH
        finally:
            await conn.close()


@dataclass
class Sampler:
    stack: Stack
    prefix: str
    sims: Sequence[subprocess.Popen[bytes]]
    live: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    dead_sims: int = 0

    async def live_now(self) -> int:
        rows = await self.stack.fetch(
            "SELECT count(*) FROM workers WHERE id LIKE %s AND state IN ('idle', 'busy')",
            (self.prefix + "-%",),
        )
        return int(rows[0][0])

    def rss(self) -> float:
        with contextlib.suppress(psutil.Error):
            return float(self.stack.procs["scheduler"].ps.memory_info().rss) / (1024 * 1024)
        return float("nan")

    async def run(self) -> None:
        while True:
            self.live.append(await self.live_now())
            self.rss_mb.append(self.rss())
            self.dead_sims = max(self.dead_sims, sum(p.poll() is not None for p in self.sims))
            await asyncio.sleep(1.0)


class CpuWindow:
    """CPU of each kind of process between two marks, in cores."""

    def __init__(self, stack: Stack, sims: list[subprocess.Popen[bytes]]) -> None:
        self.stack = stack
        self.sims = [psutil.Process(p.pid) for p in sims]

    async def read(self) -> dict[str, float]:
        procs = self.stack.procs
        out = {name: cpu_ms(p.ps) for name, p in procs.items()}
        out["simulated_workers"] = sum(cpu_ms(p) for p in self.sims)
        with contextlib.suppress(Exception):
            out["postgres"] = await self.stack._backend_cpu()
        rabbit = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]
        out["rabbitmq"] = sum(cpu_ms(p) for p in rabbit)
        out["machine"] = sum(psutil.cpu_times()[:3]) * 1000  # user + nice + system
        return out

    async def mark(self) -> None:
        self._t, self._start = time.perf_counter(), await self.read()

    async def cores(self) -> dict[str, float]:
        now, elapsed = await self.read(), (time.perf_counter() - self._t) * 1000
        return {k: round((v - self._start.get(k, 0.0)) / elapsed, 2) for k, v in now.items()}


@dataclass
class SchedulerLog:
    passes: list[dict[str, Any]]
    offline: list[str]


def scheduler_log(path: Path, start: float, end: float, prefix: str) -> SchedulerLog:
    """The ``scheduler.passes`` lines logged in ``[start, end]`` (epoch seconds) and the
    phase's workers the scheduler marked offline then."""
    passes: list[dict[str, Any]] = []
    offline: list[str] = []
    for raw in path.read_bytes().splitlines():
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # a line that is not the JSON log (a traceback's continuation)
        if not isinstance(doc, dict) or "ts" not in doc:
            continue
        ts = datetime.fromisoformat(doc["ts"]).timestamp()
        if not start <= ts <= end:
            continue
        action = doc.get("action")
        if action == "scheduler.passes":
            passes.append(doc)
        elif action == "scheduler.worker_offline" and str(doc.get("worker")).startswith(prefix):
            offline.append(str(doc["worker"]))
    return SchedulerLog(passes, offline)


async def probe_ready(stack: Stack, job_ids: list[str]) -> dict[str, float]:
    """When each probe became ready: its parent's ``finished_at`` (the scheduler's pass)."""
    if not job_ids:
        return {}
    rows = await stack.fetch(PROBE_READY, (job_ids,))
    return {str(job): float(at) for job, at in rows}
