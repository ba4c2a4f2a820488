"""Limits and breakers in the pass (scheduler.flow through the core), the clock passed in."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from models.enums import JobStatus, Outcome
from scheduler.breaker import BreakerPolicy, BreakerRecord, BreakerState
from scheduler.core import Scheduler
from scheduler.flow import TypeRule
from scheduler.values import JobSpec


def jid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def spec(n: int, job_type: str = "a", tenant: str = "t", **kw: object) -> JobSpec:
    return JobSpec(
        id=jid(n),
        name=f"j{n}",
        type=job_type,
        tenant=tenant,
        created_at=float(n),
        **kw,  # type: ignore[arg-type]
    )


def big_worker(**kw: object) -> Scheduler:
    sched = Scheduler(**kw)  # type: ignore[arg-type]
    sched.upsert_worker("w", 1000, 1 << 30)
    return sched


def types_of(sched: Scheduler, placed: list[uuid.UUID]) -> Counter[str]:
    return Counter(sched.state.jobs[j].type for j in placed)


def run(sched: Scheduler, now: float) -> list[uuid.UUID]:
    return [p.job_id for p in sched.plan(now)]


def test_a_rate_limited_type_goes_at_its_rate_and_others_at_full_speed() -> None:
    sched = big_worker()
    sched.set_type_rules({"slow": TypeRule(rate="5/s")}, 0.0)
    sched.add_jobs([spec(i, "slow") for i in range(1, 101)], 0.0)
    sched.add_jobs([spec(i, "fast") for i in range(101, 201)], 0.0)
    first = run(sched, 0.0)
    assert types_of(sched, first) == {"fast": 100, "slow": 5}  # the burst: one second's worth
    started = len(first) - 100
    now = 0.0
    while now < 10.0:
        wake = sched.next_wakeup()
        assert wake is not None and wake > now  # the shell sleeps until the next token
        now = wake
        started += len(run(sched, now))
    assert started == pytest.approx(5 + 50, abs=1)  # 5/s for 10 s after the burst


def test_held_jobs_stay_ready_with_the_reason_and_cost_a_pass_nothing() -> None:
    sched = big_worker()
    sched.set_type_rules({"slow": TypeRule(rate="1/s")}, 0.0)
    sched.add_jobs([spec(i, "slow") for i in range(1, 1001)], 0.0)
    assert len(run(sched, 0.0)) == 1
    held = [j for j in sched.state.jobs.values() if j.status is JobStatus.READY]
    assert len(held) == 999 and len(sched.state.ready) == 0  # out of the queue
    (gate,) = sched.gates(0.5)
    assert gate.held == 999 and gate.limit == "1/s"
    assert gate.reason == "rate limited: type slow, 1/s, next slot at 1970-01-01T00:00:01.000Z"
    assert run(sched, 0.5) == []  # nothing is due: nothing is looked at
    assert len(run(sched, 1.0)) == 1


def test_max_running_gives_a_slot_back_when_an_attempt_ends() -> None:
    sched = big_worker()
    sched.set_type_rules({"a": TypeRule(max_running=3)}, 0.0)
    sched.add_jobs([spec(i) for i in range(1, 11)], 0.0)
    first = run(sched, 0.0)
    assert len(first) == 3
    assert run(sched, 1.0) == []
    sched.on_attempt_finished(first[0], 1, Outcome.SUCCEEDED, 2.0)
    assert len(run(sched, 2.0)) == 1
    (gate,) = sched.gates(2.0)
    assert gate.running == 3 and gate.reason == "concurrency limited: type a, 3 running at most"


def test_a_dead_workers_slots_come_back_when_its_lease_expires() -> None:
    sched = Scheduler()
    sched.upsert_worker("w1", 10, 10_000)
    sched.set_type_rules({"a": TypeRule(max_running=2)}, 0.0)
    sched.add_jobs([spec(i, max_attempts=3) for i in range(1, 6)], 0.0)
    assert len(run(sched, 0.0)) == 2
    sched.upsert_worker("w2", 10, 10_000, now=1.0)
    sched.worker_offline("w1", 2.0)  # its two attempts are lost, their slots free
    assert len(run(sched, 2.0)) == 2


def test_a_job_held_by_its_tenant_takes_no_token_of_its_type() -> None:
    sched = big_worker()
    sched.set_type_rules({"a": TypeRule(rate="2/s")}, 0.0)
    sched.set_tenants({"busy": 1}, {}, None)
    sched.add_jobs([spec(1, tenant="busy"), spec(2, tenant="busy"), spec(3, tenant="calm")], 0.0)
    placed = run(sched, 0.0)
    assert sorted(j.int for j in placed) == [1, 3]  # job 2: the tenant's one slot is taken
    limits = sched.state.flow.types["a"]
    assert limits.bucket is not None and limits.bucket.tokens == pytest.approx(0.0)


def test_the_tenant_default_limit_applies_to_every_tenant() -> None:
    sched = big_worker(tenant_max_running=2)
    sched.add_jobs([spec(i, tenant=f"t{i % 3}") for i in range(1, 31)], 0.0)
    placed = run(sched, 0.0)
    assert Counter(sched.state.jobs[j].tenant for j in placed) == {"t0": 2, "t1": 2, "t2": 2}


def test_a_limit_set_on_a_busy_type_counts_what_runs() -> None:
    sched = big_worker()
    sched.add_jobs([spec(i) for i in range(1, 11)], 0.0)
    first = run(sched, 0.0)
    assert len(first) == 10
    sched.add_jobs([spec(i) for i in range(11, 21)], 1.0)
    sched.set_type_rules({"a": TypeRule(max_running=10)}, 1.0)
    assert run(sched, 1.0) == []
    sched.set_type_rules({}, 2.0)  # lifted: everything held goes
    assert len(run(sched, 2.0)) == 10


POLICY = BreakerPolicy(min_attempts=4, window_seconds=60, failure_ratio=0.5, cooldown_seconds=30)


def failing(sched: Scheduler, outcome: Outcome, now: float) -> list[uuid.UUID]:
    placed = run(sched, now)
    for job_id in placed:
        sched.on_attempt_finished(job_id, sched.state.jobs[job_id].attempts, outcome, now)
    return placed


def test_a_type_failing_transiently_opens_its_breaker_then_one_probe_closes_it() -> None:
    sched = big_worker(breaker_policy=POLICY)
    sched.add_jobs([spec(i, max_attempts=5, initial_delay_seconds=0.0) for i in range(1, 5)], 0.0)
    assert len(failing(sched, Outcome.FAILED, 0.0)) == 4
    (change,) = sched.take_breaker_changes()
    assert (change.before, change.after) == (BreakerState.CLOSED, BreakerState.OPEN)
    # open: nothing goes, the jobs keep their attempts and stay waiting
    sched.add_jobs([spec(i, max_attempts=5) for i in range(5, 9)], 1.0)
    assert run(sched, 1.0) == [] and run(sched, 29.0) == []
    assert {j.attempts for j in sched.state.jobs.values() if j.status is JobStatus.READY} == {0, 1}
    (gate,) = sched.gates(2.0)
    assert gate.reason is not None and gate.reason.startswith("circuit open for type a since")
    assert "probe at 1970-01-01T00:00:30Z" in gate.reason
    assert sched.next_wakeup() == pytest.approx(30.0)
    probe = run(sched, 30.0)
    assert len(probe) == 1  # half-open: exactly one
    assert run(sched, 31.0) == []
    sched.on_attempt_finished(probe[0], sched.state.jobs[probe[0]].attempts, Outcome.SUCCEEDED, 32)
    assert [c.after for c in sched.take_breaker_changes()] == [
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    assert len(run(sched, 32.0)) == 7  # closed: every held job goes


def test_a_failed_probe_reopens_with_the_cooldown_doubled() -> None:
    sched = big_worker(breaker_policy=POLICY)
    sched.add_jobs([spec(i, max_attempts=9, initial_delay_seconds=0.0) for i in range(1, 5)], 0.0)
    failing(sched, Outcome.TIMED_OUT, 0.0)
    assert failing(sched, Outcome.LOST, 30.0) != []
    assert sched.state.flow.breakers["a"].cooldown == 60.0
    assert run(sched, 89.0) == [] and len(run(sched, 90.0)) == 1


def test_permanent_errors_and_cancellations_do_not_open_it() -> None:
    sched = big_worker(breaker_policy=POLICY)
    sched.add_jobs([spec(i) for i in range(1, 21)], 0.0)
    placed = run(sched, 0.0)
    for n, job_id in enumerate(placed):
        outcome = Outcome.FAILED_PERMANENTLY if n % 2 else Outcome.CANCELLED
        sched.on_attempt_finished(job_id, 1, outcome, 1.0)
    assert sched.take_breaker_changes() == []
    assert sched.state.flow.breakers["a"].state is BreakerState.CLOSED


def test_a_forced_breaker_holds_until_released_and_a_restored_one_stays_open() -> None:
    sched = big_worker(breaker_policy=POLICY)
    sched.force_breaker("a", BreakerState.OPEN, 0.0)
    sched.add_jobs([spec(1)], 0.0)
    assert run(sched, 1000.0) == []
    sched.force_breaker("a", None, 1000.0)
    assert len(run(sched, 1000.0)) == 1

    standby = big_worker(breaker_policy=POLICY)
    standby.restore_breaker("b", BreakerRecord(BreakerState.OPEN, 100.0, 30.0, False))
    standby.add_jobs([spec(2, "b")], 101.0)
    assert run(sched=standby, now=101.0) == []
    assert len(run(standby, 130.0)) == 1  # its probe, at the cool-down's end


def test_a_type_without_a_breaker_never_opens() -> None:
    sched = big_worker(breaker_policy=POLICY)
    sched.set_type_rules({"a": TypeRule(breaker_enabled=False)}, 0.0)
    sched.add_jobs([spec(i, max_attempts=3, initial_delay_seconds=0.0) for i in range(1, 9)], 0.0)
    failing(sched, Outcome.FAILED, 0.0)
    assert len(failing(sched, Outcome.FAILED, 0.0)) == 8


def test_a_gate_holding_jobs_keeps_its_reason_when_a_token_is_due_before_the_pass() -> None:
    sched = big_worker()
    sched.set_type_rules({"slow": TypeRule(rate="1/s")}, 0.0)
    sched.add_jobs([spec(i, "slow") for i in range(1, 4)], 0.0)
    run(sched, 0.0)
    (gate,) = sched.gates(1.5)  # a token is there; the pass that takes it has not run
    assert gate.held == 2
    assert gate.reason == "rate limited: type slow, 1/s, next slot at 1970-01-01T00:00:01.500Z"
