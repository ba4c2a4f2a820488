"""``python -m bench <name> [--quick] [--runs N]``: run one benchmark; each prints one JSON line.

``all`` runs every benchmark in turn; ``smoke`` runs the quick version of each (for CI).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

#: name → "module" (its ``main``) or "module:function".
BENCHMARKS = {
    "core": "bench.core",
    "e2e": "bench.e2e",
    "api": "bench.api:main_api",
    "batch": "bench.api:main_batch",
    "latency": "bench.latency",
    "pass": "bench.sched_pass",
    "pass-flow": "bench.sched_pass:main_flow",
    "fairness": "bench.fairness",
    "dag10k": "bench.dags:main_dag10k",
    "dag1k": "bench.dags:main_dag1k",
    "chain": "bench.dags:main_chain",
    "packing": "bench.packing",
    "placement": "bench.placement",
    "memory": "bench.memory",
    "escalation": "bench.escalation",
    "spawn": "bench.spawn",
    "ws": "bench.ws",
    "auth": "bench.auth",
    "sdk": "bench.sdk",
    "ui": "bench.ui",
    "ui-log": "bench.ui:main_log",
    "fleet": "bench.fleet",
    "all": "bench.suite:main_all",
    "smoke": "bench.suite:main_smoke",
}


def entry(name: str) -> Callable[[list[str]], int]:
    module, _, function = BENCHMARKS[name].partition(":")
    found: Callable[[list[str]], int] = getattr(importlib.import_module(module), function or "main")
    return found


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        names = ",".join(BENCHMARKS)
        print(f"usage: python -m bench {{{names}}} [--quick] [--runs N]", file=sys.stderr)
        return 2
    return entry(argv[0])(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
