"""Faults across the network of a multi-host cluster (issue 20): each scenario brings up its own
cluster (9 hosts: 2 APIs, 2 schedulers, a logger, 4 workers), submits DAG batches, injects its
fault through the proxy or the host's link, then runs the checker of tests/faults. Every count
must be 0. Run with ``scripts/cluster faults`` (marker ``cluster``; never in the default run).
"""

from __future__ import annotations

import time

import httpx
import pytest

from smartq.cluster.cluster import Cluster
from smartq.cluster.layout import DEFAULT_ENV
from tests.cluster.workload import Submitter, dag, flat, half_written, running_on
from tests.faults.checker import Counts, check
from tests.faults.cluster import Stopwatch, wait_for

pytestmark = pytest.mark.cluster
#: How soon an API must answer a request its database does not (``SMARTQ_API_DEADLINE_SECONDS``
#: and a margin for two cores).
ANSWER_WITHIN = float(DEFAULT_ENV["SMARTQ_API_DEADLINE_SECONDS"]) + 3


def _settle(c: Cluster, s: Submitter, t: Stopwatch, timeout: float = 180) -> Counts:
    counts = check(c, accepted=s.accepted, settle_timeout=timeout, quiet_timeout=30)
    t.mark("settled")
    statuses = c.rows(
        "SELECT status, count(*) AS n FROM jobs WHERE id = ANY(%s::uuid[]) GROUP BY status",
        (s.accepted,),
    )
    answers = {code: s.codes.count(code) for code in sorted(set(s.codes))}
    print(
        f"\n{t}\n{counts!r}\nstatuses {statuses}; {len(s.batches)} batches, answers {answers}, "
        f"client errors {len(s.errors)}"
    )
    assert {r["status"] for r in statuses} == {"completed"}, statuses
    assert half_written(c, s.batches) == []
    counts.assert_clean(allow_effects_unsuccessful=counts.lost_attempts)
    return counts


@pytest.mark.timeout(420)
@pytest.mark.parametrize("toxic", ["stall", "down"])
def test_worker_cut_off_from_rabbitmq(net: Cluster, toxic: str) -> None:
    """Worker w1's RabbitMQ path stalls (its connection stays open, nothing passes) or goes
    down (reset, refused) for 30 s while it runs jobs. The scheduler hears no heartbeat, puts
    w1 offline and retries its attempts elsewhere; when the path comes back w1's late reports
    are fenced, it heartbeats again and takes work. Nothing lost, run twice or held."""
    c, t = net, Stopwatch()
    s = Submitter(c)
    s.submit(dag("a", 200, seconds=0.5), key="a")
    wait_for(lambda: running_on(c, "w1") > 0, 60, "w1 to run jobs")
    t.mark("w1 busy")
    c.proxy.set("amqp-w1", **{toxic: True})
    cut = time.monotonic()
    s.start(size=10, every=1.0)
    wait_for(
        lambda: c.scalar("SELECT state FROM workers WHERE id = 'w1'") == "offline",
        20,
        "the scheduler to put w1 offline",
    )
    t.mark("w1 offline")
    time.sleep(max(0.0, 30 - (time.monotonic() - cut)))
    c.proxy.clear("amqp-w1")
    healed = c.scalar("SELECT clock_timestamp()")
    t.mark(f"{toxic} 30s, cleared")
    wait_for(
        lambda: c.scalar("SELECT state FROM workers WHERE id = 'w1'") != "offline",
        90,
        "w1 back online",
    )
    t.mark("w1 back")
    s.submit(flat("b", 40, seconds=2.0), key="b")  # more than the other three hold (24 slots)
    s.stop()
    _settle(c, s, t)
    after = "SELECT count(*) FROM side_effects WHERE worker_id = 'w1' AND ts > %s"
    assert c.scalar(after, (healed,)) > 0, "w1 took no work after it came back"


def _leader_cut_off(c: Cluster, cut: str) -> None:
    """The leading scheduler loses PostgreSQL (``cut``: ``stall`` its PG path, or
    ``partition`` its host); the standby must lead within 20 s (the lease is 5 s), the old
    leader stop deciding, and after the fault heals only one scheduler leads."""
    t = Stopwatch()
    s = Submitter(c)
    s.submit(dag("a", 150, seconds=0.5), key="a")
    wait_for(lambda: c.scalar("SELECT count(*) FROM side_effects") > 10, 60, "work under way")
    leader = c.leader()
    assert leader is not None
    standby = next(n for n in c.schedulers() if n != leader)
    t.mark(f"leader {leader}")
    if cut == "stall":
        c.proxy.set(f"pg-{leader}", stall=True)
    else:
        c.partition(leader)
    began = time.monotonic()
    s.start(size=10, every=1.0)
    try:
        wait_for(lambda: standby in c.leaders(), 20, f"the standby {standby} to take over")
        t.mark(f"takeover {time.monotonic() - began:.1f}s")
        time.sleep(5)  # the new leader works while the old one is still cut off
    finally:
        if cut == "stall":
            c.proxy.clear(f"pg-{leader}")
        else:
            c.heal(leader)
    t.mark("healed")
    wait_for(lambda: c.leaders() == [standby], 30, f"{leader} to step down for good")
    t.mark("one leader")
    s.submit(dag("b", 40), key="b")
    s.stop()
    _settle(c, s, t)
    assert c.leaders() == [standby]


@pytest.mark.timeout(420)
def test_leader_pg_path_stalls(net: Cluster) -> None:
    """A stalled path keeps the leader's server session, and so its advisory lock, open: the
    leader must notice it cannot reach PostgreSQL and the standby take over anyway."""
    _leader_cut_off(net, "stall")


@pytest.mark.timeout(420)
def test_leader_host_partitioned(net: Cluster) -> None:
    """``ip link set … down`` on the leader's host: its packets are dropped, and the proxy's
    server-side session (with the lock) stays open as with the stall."""
    _leader_cut_off(net, "partition")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("toxic", ["stall", "down"])
def test_api_cut_off_from_database(net: Cluster, toxic: str) -> None:
    """api1's PostgreSQL path stalls or goes down for 20 s. Its submits answer 503 with
    ``Retry-After`` within the API's deadline (never hang, never 500), api2 keeps accepting,
    and each batch refused is accepted whole on a retry with its key afterwards: none is
    half-written."""
    c, t = net, Stopwatch()
    s = Submitter(c)
    s.submit(dag("warm", 20), key="warm")
    c.proxy.set("pg-api1", **{toxic: True})
    t.mark(f"pg-api1 {toxic}")
    refused: dict[str, list[dict[str, object]]] = {}
    answers: list[tuple[int | str, float, str | None]] = []
    api1 = c.api_base("api1")
    s.apis = ["api2"]  # the other API goes on meanwhile
    for i in range(3):
        jobs, key = dag(f"r{i}-", 10, seed=i), f"r{i}"
        began = time.monotonic()
        try:
            r = httpx.post(
                f"{api1}/jobs/batch",
                json={"jobs": jobs},
                headers={**c.headers, "Idempotency-Key": key},
                timeout=12,
            )
            answers.append((r.status_code, time.monotonic() - began, r.headers.get("Retry-After")))
        except httpx.TimeoutException:
            answers.append(("timeout", time.monotonic() - began, None))
        refused[key] = jobs
        s.submit(dag(f"ok{i}-", 10, seed=i), key=f"ok{i}")
    time.sleep(max(0.0, 20 - t.mark("requests")))
    c.proxy.clear("pg-api1")
    t.mark("cleared")
    print(f"\napi1 answers while cut off (code, seconds, Retry-After): {answers}")
    for key, jobs in refused.items():
        s.submit(jobs, key=key)
    s.apis = ["api1"]
    s.submit(dag("after", 20), key="after")  # api1 itself serves again
    _settle(c, s, t)
    assert all(code == 503 and took < ANSWER_WITHIN and after for code, took, after in answers), (
        answers
    )


@pytest.mark.timeout(420)
def test_latency_and_resets_everywhere(net: Cluster) -> None:
    """200 ms latency both ways and occasional resets (1 % per connection and second) on every
    path — each host's PostgreSQL and RabbitMQ, and the clients' paths to the APIs — for a
    minute while batches keep coming. Leadership may move, attempts may be lost and retried,
    requests may need retries; nothing is lost, run twice or held."""
    c, t = net, Stopwatch()
    s = Submitter(c)
    s.submit(dag("a", 100, seconds=0.5), key="a")
    for path in c.proxy.paths():
        c.proxy.set(path["name"], latency_ms=200, reset_peer=0.01)
    t.mark("toxics on")
    s.start(size=10, every=1.0)
    time.sleep(60)
    resets = sum(p["resets"] for p in c.proxy.paths())
    c.proxy.clear()
    t.mark(f"a minute, {resets} resets")
    s.stop()
    s.submit(dag("b", 40), key="b")
    _settle(c, s, t, timeout=240)
    assert resets > 0
