"""The Dask side of ``python -m bench dask``, run by the peer's own venv (see bench/peers.py).

Not imported by smartq: it needs only the standard library, ``dask``, ``distributed`` and
``psutil``. It starts one ``LocalCluster`` (one worker process with ``--threads`` threads, no
dashboard), then reads one JSON command a line on stdin and answers one JSON line on stdout:

* ``{"op": "map", "jobs": n, "chunk": c}``: ``client.map`` of a no-op over ``n`` items, ``c``
  at a time (the batched submits of smartq's side), then ``wait`` for all;
* ``{"op": "graph", "nodes": [[key, [parent, ...]], ...]}``: one ``client.submit`` a node, its
  parents' futures as arguments (parents come before children), then ``wait`` for all;
* ``{"op": "quit"}``.

Each answer has ``elapsed_s`` (first submit → ``wait`` returned, on the client) and ``cpu_ms``:
user + system CPU of each process of the cluster over the command (the client and the scheduler
share the driver's process, as ``LocalCluster`` runs its scheduler in the process that made it),
counted until the scheduler has forgotten every task of the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

import psutil
from dask import config
from distributed import Client, LocalCluster, wait


def noop(*_: object) -> None:
    """The job: nothing (its arguments are its parents' results)."""
    return None


def own_cpu_ms(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system) * 1000


class Peer:
    """A running cluster, its processes by role and the commands it answers."""

    def __init__(self, threads: int) -> None:
        config.set({"distributed.worker.daemon": False, "logging.distributed": "error"})
        self.cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )
        self.client = Client(self.cluster)
        self.me = psutil.Process()
        worker_pids = set(self.client.run(os.getpid).values())
        self.roles: dict[int, str] = {self.me.pid: "client+scheduler"}
        for child in self.me.children(recursive=True):
            self.roles[child.pid] = "worker" if child.pid in worker_pids else "nanny+other"

    def cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        procs = [self.me, *self.me.children(recursive=True)]
        for proc in procs:
            role = self.roles.get(proc.pid, "nanny+other")
            out[role] = out.get(role, 0.0) + own_cpu_ms(proc)
        return out

    def _forgotten(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
                return
            time.sleep(0.01)
        raise TimeoutError("the scheduler still holds tasks")

    def map(self, jobs: int, chunk: int) -> float:
        t0 = time.perf_counter()
        futures: list[Any] = []
        for start in range(0, jobs, chunk):
            futures += self.client.map(noop, range(start, min(jobs, start + chunk)), pure=False)
        wait(futures)
        elapsed = time.perf_counter() - t0
        if any(f.status != "finished" for f in futures):
            raise RuntimeError("not every task finished")
        del futures
        return elapsed

    def graph(self, nodes: list[tuple[str, list[str]]]) -> float:
        token = uuid.uuid4().hex[:8]
        t0 = time.perf_counter()
        futures: dict[str, Any] = {}
        for key, parents in nodes:
            args = [futures[p] for p in parents]
            futures[key] = self.client.submit(noop, *args, key=f"{key}-{token}", pure=False)
        wait(list(futures.values()))
        elapsed = time.perf_counter() - t0
        if any(f.status != "finished" for f in futures.values()):
            raise RuntimeError("not every task finished")
        del futures
        return elapsed

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        before = self.cpu()
        if command["op"] == "map":
            elapsed = self.map(int(command["jobs"]), int(command["chunk"]))
            jobs = int(command["jobs"])
        else:
            nodes = [(str(k), [str(p) for p in ps]) for k, ps in command["nodes"]]
            elapsed = self.graph(nodes)
            jobs = len(nodes)
        self._forgotten()
        after = self.cpu()
        cpu = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
        return {"jobs": jobs, "elapsed_s": elapsed, "cpu_ms": cpu}

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="dask_driver")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    peer = Peer(args.threads)
    try:
        versions = {"dask": sys.modules["dask"].__version__}
        versions["distributed"] = sys.modules["distributed"].__version__
        print(json.dumps({"ready": True, "versions": versions, "roles": peer.roles}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            print(json.dumps(peer.answer(command)), flush=True)
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
