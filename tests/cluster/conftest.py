"""A multi-host cluster of its own per scenario (``smartq.cluster``): its own prefix, subnet,
database and exchange, so a cluster brought up by hand with ``scripts/cluster up`` is left
alone. Process logs stay under the test's ``tmp_path`` (``cluster/logs``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from smartq.cluster.cluster import Cluster
from smartq.cluster.layout import Spec
from tests.faults.jobs import SIDE_EFFECTS_DDL, SIDE_EFFECTS_URL_ENV

SPEC = Spec(
    prefix="sqt",
    subnet=1,
    database="smartq_cluster_test",
    exchange="smartq_cluster_test",
    env=(
        ("SMARTQ_IMPORTS", "tests.faults.jobs"),
        ("SMARTQ_LOG_BATCH_SECONDS", "0.02"),
        # Faults lose many attempts at once; the default breaker would rightly hold the type.
        ("SMARTQ_BREAKER_MIN_ATTEMPTS", "1000000"),
    ),
    database_url_vars=(SIDE_EFFECTS_URL_ENV,),
)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Cluster]:
    """The cluster, up, with the ``side_effects`` table; down (database dropped) after."""
    if os.geteuid() != 0:
        reason = "the cluster needs root (ip netns, veth pairs)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")  # CI runs them; it must not pass by skipping
        pytest.skip(reason)
    c = Cluster(SPEC, tmp_path / "cluster")
    try:
        took = c.up()
        print(f"\ncluster up in {took:.1f}s")
        with psycopg.connect(c.db_url, autocommit=True) as conn:
            conn.execute(SIDE_EFFECTS_DDL)
        yield c
    finally:
        c.down(drop_database=True)
