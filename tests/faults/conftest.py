"""Fixtures of the fault-injection suite: a cluster of real processes per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster


@pytest.fixture
def faults(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    """Nothing started yet: the test starts the processes it needs. On failure, the process
    logs are under ``tmp_path``."""
    with cluster(postgres_databases, tmp_path) as c:
        yield c
