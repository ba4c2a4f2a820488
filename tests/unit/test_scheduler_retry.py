"""Retry rules as tables: backoff curve, when to stop, which outcomes retry."""

from __future__ import annotations

import random

import pytest

from models.enums import Outcome
from scheduler.retry import RetryPolicy, Verdict, backoff_delay, decide


@pytest.mark.parametrize(
    ("initial", "multiplier", "failed_attempt", "expected"),
    [
        (1.0, 2.0, 1, 1.0),
        (1.0, 2.0, 2, 2.0),
        (1.0, 2.0, 3, 4.0),
        (0.5, 3.0, 3, 4.5),
        (2.0, 1.0, 5, 2.0),
        (0.0, 2.0, 4, 0.0),
        (10.0, 2.0, 1, 10.0),
    ],
)
def test_backoff_is_initial_times_multiplier_power_n_minus_1(
    initial: float, multiplier: float, failed_attempt: int, expected: float
) -> None:
    policy = RetryPolicy(5, initial, multiplier)
    assert backoff_delay(policy, failed_attempt) == pytest.approx(expected)


def test_backoff_cap_and_overflow() -> None:
    policy = RetryPolicy(5000, 1.0, 10.0, max_delay_seconds=60.0)
    assert backoff_delay(policy, 4) == 60.0
    assert backoff_delay(policy, 4000) == 60.0


@pytest.mark.parametrize("seed", range(5))
def test_jitter_stays_within_fraction(seed: int) -> None:
    policy = RetryPolicy(5, 8.0, 2.0, jitter=0.25)
    delay = backoff_delay(policy, 2, random.Random(seed))
    assert 12.0 <= delay <= 20.0


def test_jitter_needs_an_rng_to_apply() -> None:
    assert backoff_delay(RetryPolicy(5, 8.0, 2.0, jitter=0.25), 2) == 16.0


P3 = RetryPolicy(3, 1.0, 2.0)


@pytest.mark.parametrize(
    ("outcome", "attempt", "retry_after", "cancel_requested", "verdict", "delay"),
    [
        (Outcome.SUCCEEDED, 1, None, False, Verdict.COMPLETE, 0.0),
        (Outcome.SUCCEEDED, 3, None, True, Verdict.COMPLETE, 0.0),
        (Outcome.FAILED, 1, None, False, Verdict.RETRY, 1.0),
        (Outcome.FAILED, 2, None, False, Verdict.RETRY, 2.0),
        (Outcome.FAILED, 3, None, False, Verdict.FAIL, 0.0),
        (Outcome.TIMED_OUT, 1, None, False, Verdict.RETRY, 1.0),
        (Outcome.TIMED_OUT, 3, None, False, Verdict.FAIL, 0.0),
        (Outcome.FAILED_PERMANENTLY, 1, None, False, Verdict.FAIL, 0.0),
        (Outcome.RETRY_REQUESTED, 1, 7.5, False, Verdict.RETRY, 7.5),
        (Outcome.RETRY_REQUESTED, 2, None, False, Verdict.RETRY, 0.0),
        (Outcome.RETRY_REQUESTED, 3, 7.5, False, Verdict.FAIL, 0.0),
        (Outcome.LOST, 1, None, False, Verdict.RETRY, 0.0),
        (Outcome.LOST, 3, None, False, Verdict.FAIL, 0.0),
        (Outcome.CANCELLED, 1, None, False, Verdict.CANCEL, 0.0),
        (Outcome.FAILED, 1, None, True, Verdict.CANCEL, 0.0),
        (Outcome.LOST, 1, None, True, Verdict.CANCEL, 0.0),
        (Outcome.HANDED_BACK, 1, None, False, Verdict.RETRY, 0.0),
        (Outcome.HANDED_BACK, 3, None, False, Verdict.RETRY, 0.0),  # not the job's fault
        (Outcome.HANDED_BACK, 1, None, True, Verdict.CANCEL, 0.0),
    ],
)
def test_decide_table(
    outcome: Outcome,
    attempt: int,
    retry_after: float | None,
    cancel_requested: bool,
    verdict: Verdict,
    delay: float,
) -> None:
    decision = decide(
        outcome, attempt, P3, retry_after=retry_after, cancel_requested=cancel_requested
    )
    assert decision.verdict is verdict
    assert decision.delay == pytest.approx(delay)
