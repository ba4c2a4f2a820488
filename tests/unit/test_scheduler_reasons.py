"""``why_waiting`` and the other reason strings, as tables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from models.enums import JobStatus
from scheduler.reasons import (
    DependencyFacts,
    JobFacts,
    iso,
    never_fits_reason,
    upstream_reason,
    why_waiting,
)
from scheduler.values import WorkerView

NOW = 1_795_000_000.0  # 2026-11-18
W8 = WorkerView("w1", 8, 8192)
W8_BUSY = WorkerView("w2", 8, 8192, cpu_in_use=6, memory_in_use=1024)
W4_FULL = WorkerView("w3", 4, 4096, cpu_in_use=4, memory_in_use=4096)
W_DRAINING = WorkerView("w4", 16, 16384, draining=True)
W_OFFLINE = WorkerView("w5", 16, 16384, online=False)


def _dep(name: str, status: JobStatus) -> DependencyFacts:
    return DependencyFacts(uuid.uuid4(), name, status)


READY = JobStatus.READY
CASES: list[tuple[str, JobFacts, Sequence[DependencyFacts], Sequence[WorkerView], int, str]] = [
    (
        "dependencies",
        JobFacts(JobStatus.BLOCKED),
        [_dep("extract", JobStatus.RUNNING), _dep("clean", JobStatus.BLOCKED)],
        [W8],
        0,
        "waiting for 2 dependencies: extract (running), clean (blocked)",
    ),
    (
        "one dependency",
        JobFacts(JobStatus.BLOCKED),
        [_dep("extract", JobStatus.RETRYING)],
        [W8],
        0,
        "waiting for 1 dependency: extract (retrying)",
    ),
    (
        "many dependencies are counted",
        JobFacts(JobStatus.BLOCKED),
        [_dep(f"d{i}", JobStatus.READY) for i in range(7)],
        [W8],
        0,
        "waiting for 7 dependencies: d0 (ready), d1 (ready), d2 (ready), d3 (ready), "
        "d4 (ready) and 2 more",
    ),
    (
        "backoff",
        JobFacts(JobStatus.RETRYING, attempts=1, max_attempts=3, not_before=NOW + 3),
        [],
        [W8],
        0,
        f"retrying: backoff ends at {iso(NOW + 3)} (attempt 2 of 3)",
    ),
    (
        "run_at",
        JobFacts(JobStatus.BLOCKED, run_at=NOW + 3600),
        [],
        [W8],
        0,
        f"scheduled: run_at {iso(NOW + 3600)}",
    ),
    (
        "no room now",
        JobFacts(READY, cpu_units=4),
        [],
        [W8_BUSY, W4_FULL, WorkerView("w9", 8, 8192, cpu_in_use=7)],
        0,
        "needs 4 cpu_units; most free on any worker is 2 (3 workers)",
    ),
    (
        "no memory now",
        JobFacts(READY, cpu_units=1, memory_mb=8000),
        [],
        [W8_BUSY],
        0,
        "needs 8000 memory_mb; most free on any worker is 7168 (1 worker)",
    ),
    (
        "never fits cpu",
        JobFacts(READY, cpu_units=16),
        [],
        [W8, W4_FULL, W_OFFLINE],
        0,
        "no worker could ever fit it: needs 16 cpu_units, largest worker has 8",
    ),
    (
        "never fits memory",
        JobFacts(READY, cpu_units=1, memory_mb=10_000),
        [],
        [W8],
        0,
        "no worker could ever fit it: needs 10000 memory_mb, largest worker has 8192",
    ),
    ("no worker", JobFacts(READY), [], [], 0, "no worker is online"),
    ("only offline", JobFacts(READY), [], [W_OFFLINE], 0, "no worker is online"),
    (
        "only draining",
        JobFacts(READY),
        [],
        [W_DRAINING, W_OFFLINE],
        0,
        "no worker is accepting jobs (1 draining)",
    ),
    ("higher priority", JobFacts(READY), [], [W8], 12, "12 jobs of higher priority are ahead"),
    ("one ahead", JobFacts(READY), [], [W8], 1, "1 job of higher priority is ahead"),
    ("next pass", JobFacts(READY), [], [W8], 0, "ready: waiting for the next scheduling pass"),
    (
        "running",
        JobFacts(JobStatus.RUNNING, attempts=2, max_attempts=3, worker_id="w1"),
        [],
        [W8],
        0,
        "running on worker w1 (attempt 2 of 3)",
    ),
    ("final", JobFacts(JobStatus.COMPLETED), [], [], 0, "finished: completed"),
    (
        "pending",
        JobFacts(JobStatus.PENDING),
        [],
        [W8],
        0,
        "pending: not yet taken in by the scheduler",
    ),
]


@pytest.mark.parametrize(
    ("job", "deps", "workers", "ahead", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_why_waiting(
    job: JobFacts,
    deps: Sequence[DependencyFacts],
    workers: Sequence[WorkerView],
    ahead: int,
    expected: str,
) -> None:
    assert why_waiting(job, NOW, deps, workers, ahead) == expected


def test_expired_backoff_falls_through_to_capacity() -> None:
    job = JobFacts(JobStatus.RETRYING, attempts=1, max_attempts=3, not_before=NOW - 1)
    assert why_waiting(job, NOW, [], [W8]) == "ready: waiting for the next scheduling pass"


def test_iso_format() -> None:
    assert iso(0.0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (JobStatus.FAILED, "boom", "upstream job extract ({id}) failed: boom"),
        (JobStatus.FAILED, None, "upstream job extract ({id}) failed"),
        (JobStatus.FAILED, "first\nsecond", "upstream job extract ({id}) failed: first"),
        (JobStatus.CANCELLED, None, "upstream job extract ({id}) was cancelled"),
    ],
)
def test_upstream_reason(status: JobStatus, error: str | None, expected: str) -> None:
    job_id = uuid.UUID(int=7)
    assert upstream_reason("extract", job_id, status, error) == expected.format(id=job_id)


def test_never_fits_needs_both_on_one_worker() -> None:
    workers = [WorkerView("a", 16, 1024), WorkerView("b", 2, 65536)]
    assert never_fits_reason(8, 4096, workers) == (
        "no worker could ever fit it: needs 8 cpu_units and 4096 memory_mb; "
        "no single worker has both"
    )
    assert never_fits_reason(2, 4096, workers) is None
