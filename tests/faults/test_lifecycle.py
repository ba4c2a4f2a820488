"""Worker life-cycle faults (issue 12): the one-process mode restarted under load, a worker
restarted under the same id with stale dispatches in its queue, and dispatches racing a
SIGTERM drain. Each ends with the checker's counts: lost 0, duplicated 0, stuck 0, held 0,
attempts within max_attempts."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import Procs, free_port, wait_ready
from tests.faults.checker import check
from tests.faults.cluster import FAST_ENV, LEASE_SECONDS, Cluster, Stopwatch


def _side_effects(
    n: int, seconds: float, attempts: int = 3, key: str = "j"
) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{key}{i}",
            "type": "side_effect",
            "payload": {"seconds": seconds},
            "retry": {"max_attempts": attempts, "initial_delay_seconds": 0.1},
        }
        for i in range(n)
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_restart_the_one_process_mode_under_load(tmp_path: Path) -> None:
    """``smartq dev`` on its embedded default, stopped with Ctrl-C while 40 one-second jobs
    run and wait, then started again on the same data: every job completes within its
    budget, nothing is dispatched to the previous run's worker, and that worker is offline."""
    db = tmp_path / "dev.sqlite3"
    env = {
        **FAST_ENV,
        "SMARTQ_IMPORTS": "",
        "SMARTQ_SQLITE_PATH": str(db),
        "SMARTQ_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    procs = Procs(env, tmp_path)
    procs.env.pop("SMARTQ_DATABASE_URL", None)
    procs.env.pop("SMARTQ_BROKER_URL", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ("dev", "--port", str(port), "--cpu-units", "8", "--memory-mb", "4096")
    try:
        procs.start("dev-1", *args)
        wait_ready(base, timeout=90)
        jobs = [
            {
                "key": f"s{i}",
                "type": "sleep",
                "payload": {"seconds": 1.0},
                "retry": {"max_attempts": 3, "initial_delay_seconds": 0.1},
            }
            for i in range(40)
        ]
        r = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=30)
        assert r.status_code == 201, r.text
        ids = [j["id"] for j in r.json()["jobs"]]
        time.sleep(1.5)  # some finished, eight running, the rest waiting
        assert procs.stop("dev-1", signal.SIGINT) == 0
        procs.start("dev-2", *args)
        wait_ready(base, timeout=90)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = httpx.get(f"{base}/jobs", params={"limit": 500}, timeout=10).json()["items"]
            if {j["status"] for j in got} == {"completed"} and len(got) == len(ids):
                break
            time.sleep(0.2)
        workers = httpx.get(f"{base}/workers", timeout=10).json()
    finally:
        for name in list(procs.running):
            procs.stop(name, signal.SIGINT)
    with sqlite3.connect(db) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
        rows = conn.execute(
            "SELECT job_id, attempt, worker_id, outcome, released_at FROM job_attempts"
        ).fetchall()
    assert statuses == {"completed": 40}, statuses
    per_job: dict[str, list[tuple[int, str, str]]] = {}
    for job_id, attempt, worker_id, outcome, _ in rows:
        per_job.setdefault(job_id, []).append((attempt, worker_id, outcome))
    for job_id, history in per_job.items():
        counted = [h for h in history if h[2] != "handed_back"]
        assert len(counted) <= 3 and len(history) <= 4, (job_id, history)
        assert [h[2] for h in history].count("succeeded") == 1, history
        assert "lost" not in {h[2] for h in history}, history
    assert all(r[4] is not None for r in rows), "an attempt still holds capacity"
    states = {w["id"]: w["state"] for w in workers}
    # The first run said goodbye; the second one is live.
    assert sorted(s == "offline" for s in states.values()) == [False, True], states
    logs = "".join(p.read_text() for p in tmp_path.glob("dev-*.log"))
    assert "scheduler.unroutable" not in logs


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_restarted_under_the_same_id_runs_nothing_stale(faults: Cluster) -> None:
    """``w-c`` is killed -9 with two attempts running; two more are dispatched to it before
    its lease runs out and wait in its queue. All four run on ``w-a`` after the lease. ``w-c``
    started again under the same id must not run them again, nor touch their closed attempts."""
    c, t = faults, Stopwatch()
    c.boot({"w-c": 4})
    first = c.submit_batch(_side_effects(2, 5.0, key="a"))
    c.wait_for(lambda: set(c.statuses(first).values()) == {"running"}, 30, "two running")
    c.kill("w-c")
    t.mark("w-c killed")
    stale = c.submit_batch(_side_effects(2, 0.2, key="b"))  # placed on w-c: it looks alive
    c.wait_for(lambda: set(c.statuses(stale).values()) == {"running"}, 10, "dispatched to dead w-c")
    c.start_worker("w-a", 4)
    counts = check(c, accepted=first + stale, settle_timeout=60)
    t.mark("settled on w-a")
    closed = c.rows("SELECT job_id, attempt, outcome, finished_at FROM job_attempts ORDER BY 1, 2")
    c.start_worker("w-c", 4)  # its queue still holds the two stale dispatches
    time.sleep(2.0)
    t.mark("w-c back")
    print(f"\n{t}\n{counts!r}")
    counts.assert_clean(allow_effects_unsuccessful=counts.lost_attempts)
    assert counts.lost_attempts == 4
    assert c.rows(
        "SELECT job_id, attempt, outcome, finished_at FROM job_attempts ORDER BY 1, 2"
    ) == (closed), "an attempt changed after the restart"
    assert c.scalar("SELECT count(*) FROM side_effects WHERE worker_id = 'w-c'") == 0
    assert (
        c.scalar("SELECT count(*) FROM job_attempts WHERE worker_id = 'w-c' AND outcome <> 'lost'")
        == 0
    )
    logs = (c.procs.logdir / "w-c.log").read_text()
    assert logs.count('"worker.stale_dispatch"') + logs.count("worker.stale_dispatch") >= 2
    assert not c.log_problems()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_quick_restart_under_the_same_id_ends_what_it_held_at_once(faults: Cluster) -> None:
    """Killed -9 and back within a second: its first heartbeat names a new start, so the
    scheduler ends the two attempts the old process held at once, not after the lease."""
    c = faults
    c.procs.env["SMARTQ_WORKER_LEASE_SECONDS"] = "30"  # the lease must not be what saves it
    c.boot({"w-c": 4})
    ids = c.submit_batch(_side_effects(2, 3.0))
    c.wait_for(lambda: set(c.statuses(ids).values()) == {"running"}, 30, "two running")
    c.kill("w-c")
    began = time.monotonic()
    c.start_worker("w-c", 4)
    counts = check(c, accepted=ids, settle_timeout=60)
    took = time.monotonic() - began
    print(f"\nsettled {took:.1f}s after the kill; {counts!r}")
    counts.assert_clean(allow_effects_unsuccessful=counts.lost_attempts)
    assert took < 20, "waited for the lease"
    lost = c.rows("SELECT error FROM job_attempts WHERE outcome = 'lost'")
    assert len(lost) == 2 and all("restarted" in r["error"] for r in lost), lost
    assert not c.log_problems()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dispatches_racing_a_sigterm_drain_are_handed_back_at_once(faults: Cluster) -> None:
    """Short jobs stream in while ``w1`` is stopped with SIGTERM: whatever reaches it during
    its drain is handed back at once and runs on ``w2``; nothing waits out the lease (no
    attempt is ``lost``) and nothing runs twice."""
    c, t = faults, Stopwatch()
    c.boot({"w1": 4, "w2": 4})
    ids: list[str] = []
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set() and n < 30:
            ids.extend(c.submit_batch(_side_effects(10, 0.05 + (n % 4) * 0.05, key=f"f{n}_")))
            n += 1
            time.sleep(0.1)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(1.0)
    code, took = c.terminate("w1")
    t.mark(f"w1 exited {code} after {took:.1f}s")
    feeder.join(30)
    stop.set()
    counts = check(c, accepted=ids, settle_timeout=90)
    t.mark("settled")
    print(f"\n{t}\n{counts!r}")
    assert code == 0
    counts.assert_clean()
    assert counts.lost_attempts == 0, "a dispatch waited out the lease"
    latest = c.rows("SELECT state FROM workers WHERE id = 'w1'")
    assert latest == [{"state": "offline"}]
    assert (
        max(
            r["waited"]
            for r in c.rows(
                "SELECT extract(epoch FROM a.started_at - j.created_at) AS waited "
                "FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE a.outcome = 'succeeded' "
                "AND a.attempt > 1"
            )
            or [{"waited": 0}]
        )
        < LEASE_SECONDS + 10
    )
    assert not c.log_problems()
