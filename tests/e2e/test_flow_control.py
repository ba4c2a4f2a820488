"""Limits and circuit breakers with real processes on PostgreSQL and RabbitMQ (issue 17)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster

IMPORTS = "tests.faults.jobs,tests.e2e.flowjobs"


@pytest.fixture
def flow(postgres_databases: PostgresDatabases, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(postgres_databases, tmp_path, SMARTQ_IMPORTS=IMPORTS) as c:
        yield c


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A file whose presence says the environment the ``fragile`` types need is down."""
    path = tmp_path / "down"
    path.touch()
    return path


def submit(c: Cluster, jobs: list[dict[str, Any]]) -> list[str]:
    return c.submit_batch([{"key": f"k{i}", **job} for i, job in enumerate(jobs)])


def reason(c: Cluster, job_id: str) -> str:
    with c.client() as http:
        got = http.get(f"/jobs/{job_id}")
        assert got.status_code == 200, got.text
        return str(got.json().get("waiting_reason"))


def metric(c: Cluster, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` on ``GET /metrics``, None when absent."""
    with c.client() as http:
        got = http.get("/metrics")
        assert got.status_code == 200, got.text
    for family in text_string_to_metric_families(got.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def started_at(c: Cluster, ids: list[str]) -> list[float]:
    rows = c.rows(
        "SELECT extract(epoch FROM started_at) AS t FROM job_attempts "
        "WHERE job_id = ANY(%s::uuid[]) ORDER BY started_at",
        (ids,),
    )
    return [float(r["t"]) for r in rows]


@pytest.mark.timeout(180)
def test_a_type_limited_to_5_a_second_goes_at_5_while_another_runs_at_full_speed(
    flow: Cluster,
) -> None:
    c = flow
    c.boot({"w1": 32})
    paced = submit(c, [{"type": "paced"} for _ in range(100)])
    free = submit(c, [{"type": "noop"} for _ in range(200)])
    c.wait_for(
        lambda: set(c.statuses(free).values()) == {"completed"}, timeout=30, what="the noops"
    )
    free_done = time.time()
    held = [j for j, s in c.statuses(paced).items() if s == "ready"]
    assert len(held) > 50, "the limit held the paced jobs back while the others ran"
    # the last submitted goes last (age order): it waits ~20 s, so it is still held now
    assert paced[-1] in held
    # the reason comes from the scheduler's snapshot, published every SMARTQ_MONITOR_SECONDS
    # (0.5 s here): on a loaded machine the one the API holds may be a period or two old
    c.wait_for(
        lambda: reason(c, paced[-1]).startswith("rate limited: type paced, 5/s, next slot at "),
        timeout=5,
        what="the rate limit's reason",
    )
    c.wait_for(
        lambda: set(c.statuses(paced).values()) == {"completed"}, timeout=60, what="paced jobs"
    )
    starts = started_at(c, paced)
    assert len(starts) == 100  # one attempt each
    after_burst = starts[5:]  # the first second's worth goes at once
    rate = (len(after_burst) - 1) / (after_burst[-1] - after_burst[0])
    assert 4.5 <= rate <= 5.5, f"{rate:.2f} jobs/s"
    assert free_done < after_burst[-1] - 10, "the noops did not wait for the paced type"


RETRY = {"max_attempts": 20, "initial_delay_seconds": 0.2, "backoff_multiplier": 1.0}


def failing_until_open(c: Cluster, job_type: str, broken: Path, n: int = 8) -> list[str]:
    """``n`` jobs of ``job_type`` failing while ``broken`` exists, until its breaker opens."""
    job = {"type": job_type, "payload": {"broken": str(broken)}, "retry": RETRY}
    ids = submit(c, [job] * n)
    c.wait_for(
        lambda: c.scalar("SELECT state FROM breakers WHERE job_type = %s", (job_type,)) == "open",
        timeout=30,
        what="the breaker to open",
    )
    return ids


@pytest.mark.timeout(180)
def test_a_type_failing_transiently_opens_its_breaker_keeps_attempts_and_one_probe_closes_it(
    flow: Cluster, broken: Path
) -> None:
    c = flow
    c.boot({"w1": 8})
    ids = failing_until_open(c, "fragile", broken)
    attempts = c.scalar("SELECT count(*) FROM job_attempts")
    time.sleep(1.5)  # within the 3 s cool-down: nothing of the type is dispatched
    assert c.scalar("SELECT count(*) FROM job_attempts") == attempts
    statuses = c.statuses(ids)
    assert "failed" not in statuses.values()  # no job went to the dead letters
    waiting = [j for j, s in statuses.items() if s == "ready"]
    # (on a slow machine the 3 s cool-down may end meanwhile: one of them is then the probe)
    reasons = [reason(c, j) for j in waiting[:3]]
    assert any(r.startswith("circuit open for type fragile since") for r in reasons), reasons
    c.wait_for(  # the breaker.state event reaches the API's /metrics
        lambda: (
            (metric(c, "smartq_breaker_transitions_total", type="fragile", to="open") or 0) >= 1
        ),
        timeout=10,
        what="the open breaker on /metrics",
    )
    assert metric(c, "smartq_breaker_state", type="fragile") in (1, 2)  # (a probe may run)
    broken.unlink()  # the environment recovers: the probe succeeds and closes it
    c.wait_for(lambda: set(c.statuses(ids).values()) == {"completed"}, timeout=60, what="recovery")
    assert c.scalar("SELECT state FROM breakers WHERE job_type = 'fragile'") == "closed"
    c.wait_for(
        lambda: metric(c, "smartq_breaker_state", type="fragile") == 0, timeout=10, what="metric"
    )
    assert metric(c, "smartq_breaker_transitions_total", type="fragile", to="closed") == 1
    probes = c.scalar(
        "SELECT count(*) FROM job_attempts a JOIN breakers b ON b.job_type = 'fragile' "
        "WHERE a.started_at >= b.opened_at AND a.started_at < b.opened_at + interval '3 s'"
    )
    assert probes == 0, "an attempt started while the breaker was open"
    assert c.scalar("SELECT max(attempts) FROM jobs") < 20  # attempts were kept


@pytest.mark.timeout(120)
def test_permanent_errors_do_not_open_the_breaker(flow: Cluster) -> None:
    c = flow
    c.boot({"w1": 8})
    ids = submit(c, [{"type": "picky", "payload": {"n": i}} for i in range(30)])
    c.wait_for(lambda: set(c.statuses(ids).values()) == {"failed"}, timeout=60, what="the failures")
    assert c.scalar("SELECT count(*) FROM breakers WHERE job_type = 'picky'") == 0


@pytest.mark.timeout(180)
def test_the_standby_keeps_an_open_breaker_open_after_the_leader_is_killed(
    flow: Cluster, broken: Path
) -> None:
    c = flow
    c.boot({"w1": 8})
    c.procs.start("standby", "scheduler")
    ids = failing_until_open(c, "fragile_slow", broken)
    broken.unlink()  # it would succeed now, but the breaker holds it for its cool-down
    c.kill("scheduler")
    later = submit(c, [{"type": "fragile_slow", "payload": {"broken": str(broken)}}] * 2)
    ok = submit(c, [{"type": "noop"}] * 5)
    c.wait_for(  # the standby leads: other types run
        lambda: set(c.statuses(ok).values()) == {"completed"}, timeout=60, what="the standby"
    )
    attempts = c.scalar(
        "SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
        "WHERE j.type = 'fragile_slow'"
    )
    time.sleep(2)
    assert (
        c.scalar(
            "SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
            "WHERE j.type = 'fragile_slow'"
        )
        == attempts
    )
    assert set(c.statuses(later).values()) == {"ready"}
    assert c.scalar("SELECT state FROM breakers WHERE job_type = 'fragile_slow'") == "open"
    assert "failed" not in c.statuses(ids).values()
