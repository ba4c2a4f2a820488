"""smartq beside Dask distributed, same run: ``python -m bench dask [--quick] [--runs N]``.

Both sides stay up for the whole run with 8 worker slots each: smartq's Stack (bench/harness.py)
with one worker of 8 CPU units, and a Dask ``LocalCluster`` with one worker process of 8 threads
(the same shape: one process, 8 jobs at a time), from a venv made once (bench/peers.py). Each
workload runs ``--runs`` times per side, the sides alternating (smartq first in even runs, Dask
first in odd ones), so a noisy neighbour hits both alike:

* ``noop5k``: 5,000 no-op jobs, submitted 1,000 at a time (smartq: ``POST /jobs/batch``; Dask:
  ``client.map``); seconds from the first submit until all finished, and jobs/s;
* ``dag1k``: a layered DAG of 10 × 100 no-op jobs, 3 parents each (the graph of
  ``bench dag1k``, seed = the run); smartq in one batch, Dask one future a node with its parents'
  futures as arguments; seconds from submit until all finished;
* ``chain``: 1,000 no-op jobs, each depending on the one before.

Each row gives both sides' medians with min–max, ``ratio`` = smartq / Dask of the seconds of the
runs side by side (median, min–max; above 1 smartq is slower), and CPU-ms per job of every
process of each side over that row's runs. smartq: api, scheduler, worker, logger, PostgreSQL's
backends of its database, RabbitMQ (machine-wide) and the bench's own process as the client.
Dask: the driver (client and scheduler in one process), the worker, the nanny. smartq's end is
the last ``finished_at`` (its scheduler's clock); Dask's is when ``wait`` returned.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench import dags, e2e, figures
from bench.harness import Stack
from bench.peers import DaskPeer

SLOTS = 8
CHUNK = 1_000
#: A run of one side: seconds, jobs, CPU-ms by process.
Run = tuple[float, int, dict[str, float]]


@dataclass
class Side:
    """One side's figures over a row's runs."""

    seconds: list[float] = field(default_factory=list)
    jobs: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def add(self, seconds: float, jobs: int, cpu: dict[str, float]) -> None:
        self.seconds.append(seconds)
        self.jobs += jobs
        for name, ms in cpu.items():
            self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + ms

    def cpu_per_job(self) -> dict[str, float]:
        n = max(self.jobs, 1)
        out = {name: round(ms / n, 3) for name, ms in sorted(self.cpu_ms.items())}
        out["total"] = round(sum(self.cpu_ms.values()) / n, 3)
        if "rabbitmq" in self.cpu_ms:
            # RabbitMQ's CPU is machine-wide: on a shared machine others' traffic counts too.
            out["total_without_rabbitmq"] = round(out["total"] - out["rabbitmq"], 3)
        return out


@dataclass(frozen=True)
class Workload:
    name: str
    #: run index → smartq's batch (a list of jobs); Dask gets the same graph.
    build: Callable[[int], list[dict[str, Any]]]
    flat: bool


def client_cpu_ms() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system) * 1000


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


async def smartq_run(stack: Stack, load: Workload, seed: int) -> Run:
    jobs = load.build(seed)
    before = {**await stack.cpu_now(), "client": client_cpu_ms()}
    if load.flat:
        seconds = (await e2e.one_run(stack, len(jobs), min(CHUNK, len(jobs))))["elapsed_s"]
    else:
        seconds = (await dags.dag_run(stack, jobs))["completed_s"]
    after = {**await stack.cpu_now(), "client": client_cpu_ms()}
    return seconds, len(jobs), delta(before, after)


async def dask_run(peer: DaskPeer, load: Workload, seed: int) -> Run:
    jobs = load.build(seed)
    if load.flat:
        command: dict[str, Any] = {"op": "map", "jobs": len(jobs), "chunk": min(CHUNK, len(jobs))}
    else:
        command = {"op": "graph", "nodes": [[j["key"], j["depends_on"]] for j in jobs]}
    answer = await peer.command(command)
    return float(answer["elapsed_s"]), int(answer["jobs"]), dict(answer["cpu_ms"])


def workloads(quick: bool) -> list[Workload]:
    flat = 1_000 if quick else 5_000
    return [
        Workload("noop5k", lambda _: [{"type": "noop"}] * flat, True),
        Workload("dag1k", lambda seed: dags.layered(3 if quick else 10, 100, 3, seed), False),
        Workload("chain", lambda seed: dags.chain(50 if quick else 1_000, seed), False),
    ]


async def one_row(stack: Stack, peer: DaskPeer, load: Workload, runs: int) -> dict[str, Any]:
    smartq, dask = Side(), Side()
    ratios: list[float] = []
    for i in range(runs):
        for side in (smartq, dask) if i % 2 == 0 else (dask, smartq):
            go = smartq_run(stack, load, i) if side is smartq else dask_run(peer, load, i)
            side.add(*await go)
        ratios.append(smartq.seconds[-1] / dask.seconds[-1])
    return row(load, smartq, dask, ratios)


def row(load: Workload, smartq: Side, dask: Side, ratios: list[float]) -> dict[str, Any]:
    jobs = smartq.jobs // max(len(smartq.seconds), 1)
    out: dict[str, Any] = {"jobs": jobs}
    for name, side in (("smartq", smartq), ("dask", dask)):
        out[name] = {"seconds": figures.figure(side.seconds, digits=3)}
        if load.flat:
            out[name]["jobs_per_s"] = figures.figure([jobs / s for s in side.seconds], digits=0)
        out[name]["cpu_ms_per_job"] = side.cpu_per_job()
    out["ratio"] = figures.figure(ratios, digits=2)
    return out


def show(rows: dict[str, dict[str, Any]]) -> None:
    """The rows as text on stderr (stdout keeps its one JSON line)."""

    def span(f: dict[str, float]) -> str:
        return f"{f['median']:g} ({f['min']:g}–{f['max']:g})"

    for name, r in rows.items():
        s, d = r["smartq"], r["dask"]
        print(
            f"{name:7} {r['jobs']:>5} jobs  smartq {span(s['seconds'])} s  "
            f"dask {span(d['seconds'])} s  smartq/dask {span(r['ratio'])}  "
            f"CPU-ms/job smartq {s['cpu_ms_per_job']['total']:g} dask "
            f"{d['cpu_ms_per_job']['total']:g}",
            file=sys.stderr,
        )


async def run(options: figures.Options) -> dict[str, Any]:
    runs = options.pick(3, 1)
    rows: dict[str, dict[str, Any]] = {}
    async with Stack(worker_units=SLOTS) as stack, DaskPeer(SLOTS) as peer:
        for load in workloads(options.quick):
            rows[load.name] = await one_row(stack, peer, load, runs)
        versions = peer.hello.get("versions", {})
    show(rows)
    slots = f"smartq: 1 worker × {SLOTS} CPU units; dask: LocalCluster, 1 worker × {SLOTS} threads"
    return {"runs": runs, "slots": slots, "dask_versions": versions, "rows": rows}


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    options = figures.parse(argv, "dask")
    figures.emit("dask", options, asyncio.run(run(options)), started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
