"""The logger killed -9 in the middle of storing a stream of lines (issue 5, scenario 8)."""

from __future__ import annotations

import pytest

from smartq import topology
from tests.faults.checker import check, queue_depths
from tests.faults.cluster import Cluster, Stopwatch

JOBS = 20
LINES = 500
#: The executor adds "started attempt …" before the job's lines and "succeeded in …" after.
PER_ATTEMPT = LINES + 2


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_the_logger_mid_batch(faults: Cluster) -> None:
    """20 jobs × 500 lines wait in the logger's queue (a first logger declared it, then
    stopped: lines published while no logger ever ran would be dropped by RabbitMQ). A logger
    storing them in batches of 50 (so it holds 200 unacked lines, some committed and not yet
    acked) is killed -9 while lines flow, and a new one started. Every line is stored exactly
    once: per (job, attempt) the count is 502 and the sequence numbers are 1..502 with no gap
    ((job, attempt, seq) is the primary key, so count == max(seq) == 502 is full coverage)."""
    c, t = faults, Stopwatch()
    c.boot({"w1": JOBS})
    queue = topology.logger_queue(c.exchange).name
    c.wait_for(lambda: queue in queue_depths(c), 30, "the logger's queue")
    assert c.terminate("logger")[0] == 0  # its durable queue keeps the lines meanwhile
    t.mark("boot")
    ids = c.submit_batch([{"type": "log", "payload": {"lines": LINES}}] * JOBS)
    c.wait_for(lambda: set(c.statuses(ids).values()) == {"completed"}, 60, "the jobs")
    t.mark("jobs done, lines queued")
    c.start_logger("logger1", SMARTQ_LOG_BATCH_SIZE="50")
    stored = "SELECT count(*) FROM job_logs"
    c.wait_for(lambda: c.scalar(stored) >= 500, 90, "lines to flow", every=0.01)
    c.kill("logger1")
    at_kill = int(c.scalar(stored))
    t.mark(f"kill -9 at {at_kill} lines")
    assert at_kill < JOBS * PER_ATTEMPT, "the logger finished before the kill"
    c.start_logger("logger2")
    total = JOBS * PER_ATTEMPT
    c.wait_for(lambda: c.scalar(stored) >= total, 120, f"{total} lines stored", every=0.2)
    t.mark("all lines stored")
    counts = check(c, accepted=ids)
    t.mark("settled and checked")
    print(f"\n{t}\n{counts!r}")
    counts.assert_clean()
    rows = c.rows(
        "SELECT job_id::text, attempt, count(*) AS n, min(seq) AS lo, max(seq) AS hi "
        "FROM job_logs GROUP BY job_id, attempt"
    )
    assert len(rows) == JOBS
    assert {(r["attempt"], r["n"], r["lo"], r["hi"]) for r in rows} == {
        (1, PER_ATTEMPT, 1, PER_ATTEMPT)
    }
    assert {r["job_id"] for r in rows} == set(ids)
    assert not c.log_problems()
    # A flood of log lines must not delay the worker's heartbeats past its lease.
    assert "worker.worker_offline" not in c.procs.log("scheduler").replace("scheduler.", "worker.")
