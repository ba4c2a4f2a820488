"""Scheduler memory with a big table: ``python -m bench memory [--quick] [--runs N]``.

1,000,000 jobs in the table, 100,000 of them waiting (ready heads, blocked chains; seeded with
COPY). Each run starts the real ``smartq scheduler`` (no worker, so nothing runs), samples its
RSS every 50 ms while it rebuilds its state and for 3 s after (a few passes), then stops it.

* ``peak_rss_mb``: the most RSS seen (target <= 300);
* ``settled_rss_mb``: RSS at the end of the run;
* ``rebuild_s``: start → the "scheduler state rebuilt" log line.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import psutil

from bench import figures, harness, seed
from smartq import topology

SETTLE_S = 3.0


def one_run(env: dict[str, str], log: Path, timeout: float) -> dict[str, float]:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [harness.SMARTQ, "scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    proc = psutil.Process(popen.pid)
    t0 = time.perf_counter()
    peak = 0.0
    rebuilt: float | None = None
    rss = 0.0
    try:
        while time.perf_counter() - t0 < timeout:
            if popen.poll() is not None:
                raise harness.HarnessError(f"scheduler exited: {log.read_text()[-2000:]}")
            rss = proc.memory_info().rss / 2**20
            peak = max(peak, rss)
            if rebuilt is None and "scheduler state rebuilt" in log.read_text(errors="replace"):
                rebuilt = time.perf_counter() - t0
            if rebuilt is not None and time.perf_counter() - t0 > rebuilt + SETTLE_S:
                break
            time.sleep(0.05)
        else:
            raise TimeoutError("the scheduler did not rebuild in time")
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    assert rebuilt is not None
    return {"peak_rss_mb": peak, "settled_rss_mb": rss, "rebuild_s": rebuilt}


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    total, waiting = (10_000, 1_000) if options.quick else (1_000_000, 100_000)
    token = uuid.uuid4().hex[:10]
    exchange = f"smartq_bench_{token}"
    db_url = harness.create_database(token)
    workdir = Path(tempfile.mkdtemp(prefix="smartq-bench-"))
    try:
        env = harness.smartq_env(db_url, exchange, {"SMARTQ_LOG_LEVEL": "INFO"})
        await asyncio.to_thread(harness.migrate, env)
        seeded = await asyncio.to_thread(seed.seed, db_url, total - waiting, waiting)
        results = [
            await asyncio.to_thread(one_run, env, workdir / f"scheduler-{i}.log", 300)
            for i in range(runs)
        ]
    finally:
        harness.drop_database(db_url)
        await _cleanup(exchange)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "runs": runs,
        "jobs": total,
        "waiting": waiting,
        "seed_s": round(seeded.seconds, 1),
        "peak_rss_mb": figures.figure([r["peak_rss_mb"] for r in results], "<= 300", 1),
        "settled_rss_mb": figures.figure([r["settled_rss_mb"] for r in results], digits=1),
        "rebuild_s": figures.figure([r["rebuild_s"] for r in results], digits=2),
    }


async def _cleanup(exchange: str) -> None:
    async with await aio_pika.connect(harness.AMQP_URL) as conn:
        channel = await conn.channel()
        await channel.queue_delete(topology.scheduler_queue(exchange).name)
        await channel.queue_delete(topology.logger_queue(exchange).name)
        await channel.exchange_delete(exchange)


def main(argv: list[str]) -> int:
    return figures.run_main("memory", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
