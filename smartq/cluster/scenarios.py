"""The fault scenarios by name, and running them: each is a pytest test of ``tests/cluster``
(marker ``cluster``) that brings up a cluster of its own, submits a workload, injects its fault
and runs the checker of ``tests/faults``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from smartq.cluster.cluster import ROOT


@dataclass(frozen=True)
class Scenario:
    name: str
    test: str
    checks: str


SCENARIOS = (
    Scenario(
        "worker-broker",
        "test_worker_cut_off_from_rabbitmq",
        "a worker's RabbitMQ path stalls (and, separately, goes down) for 30 s, then comes "
        "back: its attempts are lost and retried elsewhere, its late reports are fenced",
    ),
    Scenario(
        "leader-stall",
        "test_leader_pg_path_stalls",
        "the leading scheduler's PostgreSQL path stalls: the standby must take over, the old "
        "leader stop deciding and be fenced when the path comes back",
    ),
    Scenario(
        "leader-partition",
        "test_leader_host_partitioned",
        "the leading scheduler's host link goes down (ip link): the standby must take over",
    ),
    Scenario(
        "api-db",
        "test_api_cut_off_from_database",
        "one API's PostgreSQL path stalls: its requests answer 503 with Retry-After, the other "
        "API serves, no batch is half-written",
    ),
    Scenario(
        "slow-network",
        "test_latency_and_resets_everywhere",
        "200 ms latency and occasional resets on every path for a minute, under load",
    ),
)


def by_name(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; scenarios: {[s.name for s in SCENARIOS]}")


def selector(names: Sequence[str]) -> str:
    """pytest's ``-k`` for ``names`` (all when empty); ``NAME[VARIANT]`` picks one variant,
    e.g. ``api-db[stall]``."""
    if not names:
        return " or ".join(s.test for s in SCENARIOS)
    parts = []
    for name in names:
        base, _, variant = name.partition("[")
        test = by_name(base).test
        parts.append(f"({test} and {variant.rstrip(']')})" if variant else test)
    return " or ".join(parts)


def run(names: Sequence[str], extra: Sequence[str] = ()) -> int:
    """Run the named scenarios (all when empty) with pytest; returns its exit code."""
    argv = [sys.executable, "-m", "pytest", "tests/cluster", "-m", "cluster", "-k", selector(names)]
    argv += ["-s", "-p", "no:cacheprovider", *extra]
    return subprocess.run(argv, cwd=ROOT, check=False).returncode
