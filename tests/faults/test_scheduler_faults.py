"""The scheduler dies at the worst moments, or two run at once (issue 5, scenarios 4 and 5)."""

from __future__ import annotations

import time

import pytest

from tests.faults.checker import check
from tests.faults.cluster import Cluster, Stopwatch


def _jobs(n: int, prefix: str, seconds: float = 0.05) -> list[dict[str, object]]:
    return [
        {
            "key": f"{prefix}{i}",
            "type": "side_effect",
            "payload": {"seconds": seconds},
            "retry": {"max_attempts": 3, "initial_delay_seconds": 0.1},
        }
        for i in range(n)
    ]


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("failpoint", ["after_commit_before_publish", "after_publish_before_ack"])
def test_kill_9_the_scheduler_at_a_failpoint(faults: Cluster, failpoint: str) -> None:
    """The scheduler is killed -9 at its 5th pass that reaches the failpoint, under load:
    after commit before publish, dispatches the database says are running were never sent;
    after publish before ack, the inputs it acted on come back. A restarted scheduler (no
    failpoint) re-publishes what is running (workers ignore what they already took) and
    replays the inputs harmlessly: every job completes exactly once."""
    c, t = faults, Stopwatch()
    c.procs.start("scheduler", "scheduler", env={"SMARTQ_FAILPOINTS": f"{failpoint}:5"})
    c.boot({"w1": 16}, scheduler=False)
    t.mark("boot")
    ids = c.submit_batch(_jobs(150, "a"))
    proc = c.procs.running["scheduler"]
    c.wait_for(lambda: proc.poll() is not None, timeout=60, what="the failpoint to kill it")
    assert proc.returncode == -9
    del c.procs.running["scheduler"]
    t.mark("killed at failpoint")
    time.sleep(0.5)
    c.start_scheduler()
    counts = check(c, accepted=ids, settle_timeout=90)
    t.mark("settled")
    print(f"\n{failpoint}: {t}\n{counts!r}")
    assert set(c.statuses(ids).values()) == {"completed"}
    counts.assert_clean()
    once = c.rows(
        "SELECT job_id, count(*) AS n FROM side_effects GROUP BY job_id HAVING count(*) > 1"
    )
    assert once == [], "a job ran twice"
    assert c.scalar("SELECT max(attempts) FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)) == 1


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_two_schedulers_one_leads_and_the_standby_takes_over(faults: Cluster) -> None:
    """Two schedulers at once: one leads (advisory lock), the other waits. No attempt is
    dispatched twice. Killing the leader -9 hands over within seconds and the new leader
    finishes the work, including jobs submitted after the kill."""
    c, t = faults, Stopwatch()
    c.procs.start("sched-a", "scheduler")
    c.procs.start("sched-b", "scheduler")
    c.boot({"w1": 16}, scheduler=False)
    t.mark("boot")
    first = c.submit_batch(_jobs(120, "a"))
    c.wait_for(
        lambda: any(s == "completed" for s in c.statuses(first).values()),
        timeout=60,
        what="work to start",
    )
    leaders = [n for n in ("sched-a", "sched-b") if "leader.acquired" in c.procs.log(n)]
    assert len(leaders) == 1, leaders
    leader = leaders[0]
    standby = "sched-b" if leader == "sched-a" else "sched-a"
    assert "leader.standby" in c.procs.log(standby)
    c.kill(leader)
    killed = time.monotonic()
    t.mark(f"kill -9 {leader}")
    c.wait_for(
        lambda: "leader.acquired" in c.procs.log(standby), timeout=30, what="the standby to lead"
    )
    takeover = time.monotonic() - killed
    t.mark(f"takeover {takeover:.1f}s")
    second = c.submit_batch(_jobs(30, "b"))
    counts = check(c, accepted=first + second, settle_timeout=90)
    t.mark("settled")
    print(f"\n{t}\n{counts!r}")
    assert takeover < 10
    assert set(c.statuses(first + second).values()) == {"completed"}
    counts.assert_clean()
    twice = c.rows("SELECT job_id FROM side_effects GROUP BY job_id HAVING count(*) > 1")
    assert twice == [], "an attempt was dispatched twice"
    assert c.scalar("SELECT max(attempts) FROM jobs") == 1


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_frozen_leader_loses_the_lead_and_is_fenced_when_it_wakes(faults: Cluster) -> None:
    """The leader is frozen (SIGSTOP) under load: its database sessions stay open, so a lock
    tied to the session alone would be held for ever. Its lease runs out, the standby takes
    over and finishes the work; thawed, the old leader finds it no longer leads and goes back
    to waiting without writing anything: no attempt runs twice."""
    c, t = faults, Stopwatch()
    lease = {"SMARTQ_LEADER_LEASE_SECONDS": "3"}
    c.procs.start("sched-a", "scheduler", env=lease)
    c.wait_for(lambda: "leader.acquired" in c.procs.log("sched-a"), timeout=60, what="a leader")
    c.procs.start("sched-b", "scheduler", env=lease)
    c.boot({"w1": 16}, scheduler=False)
    c.wait_for(lambda: "leader.standby" in c.procs.log("sched-b"), timeout=60, what="a standby")
    t.mark("boot")
    first = c.submit_batch(_jobs(120, "a", seconds=0.2))
    c.wait_for(
        lambda: any(s == "completed" for s in c.statuses(first).values()),
        timeout=60,
        what="work to start",
    )
    c.freeze("sched-a")
    frozen = time.monotonic()
    t.mark("SIGSTOP sched-a")
    c.wait_for(
        lambda: "leader.acquired" in c.procs.log("sched-b"), timeout=30, what="the standby to lead"
    )
    takeover = time.monotonic() - frozen
    t.mark(f"takeover {takeover:.1f}s")
    second = c.submit_batch(_jobs(30, "b"))
    c.thaw("sched-a")
    c.wait_for(
        lambda: "leader.lost" in c.procs.log("sched-a"), timeout=30, what="the old leader to yield"
    )
    t.mark("old leader yielded")
    counts = check(c, accepted=first + second, settle_timeout=90)
    t.mark("settled")
    print(f"\n{t}\n{counts!r}")
    assert takeover < 3 + 5
    assert c.alive("sched-a"), "the old leader should wait as a standby, not crash"
    assert set(c.statuses(first + second).values()) == {"completed"}
    counts.assert_clean()
    twice = c.rows("SELECT job_id FROM side_effects GROUP BY job_id HAVING count(*) > 1")
    assert twice == [], "an attempt was dispatched twice"
