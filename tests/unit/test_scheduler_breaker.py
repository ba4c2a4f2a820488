"""The circuit breaker of a job type as a state machine: every transition, the clock passed in."""

from __future__ import annotations

import pytest

from models.enums import Outcome
from scheduler.breaker import Breaker, BreakerPolicy, BreakerRecord, BreakerState

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
POLICY = BreakerPolicy(
    min_attempts=4, window_seconds=60, failure_ratio=0.5, cooldown_seconds=30,
    max_cooldown_seconds=100,
)  # fmt: skip


def feed(breaker: Breaker, outcomes: list[Outcome], start: float = 0.0) -> list[BreakerState]:
    """Each outcome one second apart; the state after each."""
    states = []
    for i, outcome in enumerate(outcomes):
        breaker.finished(f"job-{start + i}", outcome, start + i)
        states.append(breaker.state)
    return states


S, F = Outcome.SUCCEEDED, Outcome.FAILED


@pytest.mark.parametrize(
    ("outcomes", "after"),
    [
        ([F, F, F], CLOSED),  # fewer than min_attempts: never opens
        ([F, F, F, F], OPEN),
        ([S, S, F, F], OPEN),  # 2 of 4 is the ratio
        ([S, S, S, F], CLOSED),
        ([Outcome.TIMED_OUT, Outcome.LOST, F, S], OPEN),  # timeouts and lost attempts count
        # a tenant's bad payloads, cancellations, requested retries, hand-backs count as nothing
        ([Outcome.FAILED_PERMANENTLY] * 10, CLOSED),
        ([Outcome.CANCELLED, Outcome.RETRY_REQUESTED, Outcome.HANDED_BACK, F, F, F], CLOSED),
    ],
)
def test_what_opens_a_closed_breaker(outcomes: list[Outcome], after: BreakerState) -> None:
    breaker = Breaker("resize", POLICY)
    assert feed(breaker, outcomes)[-1] is after


def test_only_the_window_counts() -> None:
    breaker = Breaker("resize", POLICY)
    feed(breaker, [F, F, F])  # at 0, 1, 2
    breaker.finished("late", F, 100.0)  # the three have left the 60 s window
    assert breaker.state is CLOSED
    feed(breaker, [F, F, F], start=101.0)
    assert breaker.state is OPEN


def test_open_holds_everything_until_the_cooldown_then_one_probe() -> None:
    breaker = Breaker("resize", POLICY)
    feed(breaker, [F, F, F, F])  # opens at 3
    assert breaker.opened_at == 3 and breaker.probe_at() == 33
    assert breaker.may_dispatch(32.9) == (False, None)
    reason = breaker.reason(10)
    assert reason is not None and "circuit open for type resize since" in reason
    assert "probe at 1970-01-01T00:00:33Z" in reason
    allowed, change = breaker.may_dispatch(33)
    assert allowed and change is not None and (change.before, change.after) == (OPEN, HALF)
    breaker.dispatched("probe-1")
    assert breaker.may_dispatch(34) == (False, None)  # exactly one probe
    breaker.finished("job-0", S, 35)  # an attempt from before it opened: not the probe
    assert breaker.state is HALF and breaker.may_dispatch(35)[0] is False


@pytest.mark.parametrize(
    ("probe_outcome", "state", "cooldown", "may_dispatch"),
    [
        (S, CLOSED, 30, True),  # recovered: closed, cool-down reset
        (F, OPEN, 60, False),  # still broken: open again, cool-down doubled
        (Outcome.TIMED_OUT, OPEN, 60, False),
        (Outcome.FAILED_PERMANENTLY, HALF, 30, True),  # says nothing: another probe goes
        (Outcome.CANCELLED, HALF, 30, True),
    ],
)
def test_the_probe_decides(
    probe_outcome: Outcome, state: BreakerState, cooldown: float, may_dispatch: bool
) -> None:
    breaker = Breaker("resize", POLICY)
    feed(breaker, [F, F, F, F])
    breaker.may_dispatch(40)
    breaker.dispatched("probe")
    breaker.finished("probe", probe_outcome, 41)
    assert (breaker.state, breaker.cooldown) == (state, cooldown)
    assert breaker.may_dispatch(42)[0] is may_dispatch


def test_failed_probes_double_the_cooldown_up_to_the_most() -> None:
    breaker = Breaker("resize", POLICY)
    feed(breaker, [F, F, F, F])
    cooldowns = []
    now = 3.0
    for _ in range(4):
        now = breaker.probe_at()
        assert breaker.may_dispatch(now)[0]
        breaker.dispatched(f"probe-{now}")
        breaker.finished(f"probe-{now}", F, now + 1)
        cooldowns.append(breaker.cooldown)
    assert cooldowns == [60, 100, 100, 100]
    breaker.may_dispatch(breaker.probe_at())
    breaker.dispatched("last")
    breaker.finished("last", S, breaker.probe_at() + 1)
    assert breaker.state is CLOSED and breaker.cooldown == 30
    assert feed(breaker, [F, F, F], start=1000)[-1] is CLOSED  # a fresh window after closing


def test_an_admin_forces_it_open_or_closed_until_released() -> None:
    breaker = Breaker("resize", POLICY)
    change = breaker.force(OPEN, 5)
    assert change is not None and (change.before, change.after) == (CLOSED, OPEN)
    assert breaker.may_dispatch(10_000) == (False, None)  # no cool-down ends a forced open
    reason = breaker.reason(6)
    assert reason is not None and "forced by an admin" in reason
    breaker.force(CLOSED, 10)
    assert feed(breaker, [F] * 10, start=11)[-1] is CLOSED  # forced closed: failures ignored
    released = breaker.force(None, 30)
    assert released is None and not breaker.forced  # already closed; counting again
    assert feed(breaker, [F] * 4, start=31)[-1] is OPEN
    with pytest.raises(ValueError, match="half-open"):
        breaker.force(HALF, 40)


def test_its_state_survives_a_failover_and_a_half_open_one_probes_once_more() -> None:
    breaker = Breaker("resize", POLICY)
    feed(breaker, [F, F, F, F])
    standby = Breaker("resize", POLICY)
    standby.restore(breaker.record())
    assert standby.record() == BreakerRecord(OPEN, 3, 30, False)
    assert standby.may_dispatch(20)[0] is False
    standby.may_dispatch(33)
    standby.dispatched("probe")  # the leader dies with the probe running
    again = Breaker("resize", POLICY)
    again.restore(standby.record())
    assert again.state is OPEN  # the probe may have run anywhere: one new probe, no more
    assert again.may_dispatch(34)[0] is True
    again.dispatched("probe-2")
    assert again.may_dispatch(35)[0] is False


@pytest.mark.parametrize(
    "bad",
    [
        {"min_attempts": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"cooldown_seconds": 0},
        {"cooldown_seconds": 60, "max_cooldown_seconds": 30},
    ],
)
def test_a_policy_that_cannot_work_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


def test_the_window_keeps_its_failure_count_as_attempts_leave_it() -> None:
    breaker = Breaker("t", BreakerPolicy(min_attempts=4, window_seconds=10, failure_ratio=0.5))
    for i in range(3):  # three failures at 0-2 s: too few to count
        assert breaker.finished(i, Outcome.FAILED, float(i)) is None
    for i in range(6):  # six successes at 14-19 s: the failures have left the window
        assert breaker.finished(10 + i, Outcome.SUCCEEDED, 14.0 + i) is None
    opened_at = None
    for n in range(1, 7):  # failures at 20 s: 1/7 ... 6/12 failed
        change = breaker.finished(20 + n, Outcome.FAILED, 20.0)
        if change is not None:
            opened_at = n
    assert opened_at == 6 and breaker.state is BreakerState.OPEN  # 6 of 12 = 50 %
