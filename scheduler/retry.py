"""What happens after an attempt ends: complete, retry after a backoff, fail, or cancel.

Pure functions of the outcome and the job's policy; randomness (jitter) comes in as an injected
``random.Random`` so tests and replays stay deterministic.

Choices:

* ``failed`` and ``timed_out`` are retryable while attempts remain (a timeout is often a slow
  dependency, and the job's ``max_attempts`` is the user's budget for such bad luck); the delay is
  ``initial_delay * multiplier^(n-1)`` where ``n`` is the attempt that just failed.
* ``lost`` (the worker went away or handed the job back) retries at once, without backoff: the job
  did nothing wrong. It still counts against ``max_attempts`` so a job that kills its workers ends.
* ``handed_back`` (a worker stopping gracefully gave the job back) retries at once and does not
  count against ``max_attempts``: the attempt never had its chance. The attempt number still
  grows (it fences late reports), so ``attempts`` may then exceed ``max_attempts``.
* ``retry_requested`` retries after the job's own ``retry_after`` (no jitter) and counts against
  ``max_attempts`` too.
* ``failed_permanently`` fails at once; ``cancelled`` cancels; and once a cancel was requested any
  outcome but success cancels (no retry of a job the user stopped).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from models.enums import Outcome
from scheduler.reasons import CANCELLED_BY_USER

_RETRYABLE = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.LOST, Outcome.RETRY_REQUESTED})


class Verdict(StrEnum):
    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A job's retry budget and backoff curve, plus the scheduler-wide jitter and cap."""

    max_attempts: int = 1
    initial_delay_seconds: float = 1.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.0
    max_delay_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    verdict: Verdict
    delay: float = 0.0
    reason: str | None = None


def backoff_delay(
    policy: RetryPolicy, failed_attempt: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

    ``initial * multiplier^(n-1)``, capped at ``max_delay_seconds``, then spread by ``± jitter``
    (a fraction: 0.1 → uniform in [0.9, 1.1] * delay) when an ``rng`` is given.
    """
    exponent = max(failed_attempt - 1, 0)
    try:
        delay = policy.initial_delay_seconds * policy.backoff_multiplier**exponent
    except OverflowError:
        delay = float("inf")
    if policy.max_delay_seconds is not None:
        delay = min(delay, policy.max_delay_seconds)
    if policy.jitter > 0 and rng is not None:
        delay *= 1.0 + policy.jitter * (2.0 * rng.random() - 1.0)
    return max(delay, 0.0)


def decide(
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    cancel_requested: bool = False,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide what attempt ``attempt`` ending with ``outcome`` means for the job."""
    if outcome is Outcome.SUCCEEDED:
        return RetryDecision(Verdict.COMPLETE)
    if outcome is Outcome.CANCELLED or cancel_requested:
        return RetryDecision(Verdict.CANCEL, reason=CANCELLED_BY_USER)
    if outcome is Outcome.HANDED_BACK:
        return RetryDecision(Verdict.RETRY, reason=f"attempt {attempt} handed back; running again")
    if outcome not in _RETRYABLE:
        return RetryDecision(Verdict.FAIL, reason=f"attempt {attempt} failed (not retryable)")
    if attempt >= policy.max_attempts:
        return RetryDecision(
            Verdict.FAIL, reason=f"attempt {attempt} of {policy.max_attempts} {_verb(outcome)}"
        )
    delay = _delay_for(outcome, attempt, policy, retry_after, rng)
    return RetryDecision(
        Verdict.RETRY,
        delay=delay,
        reason=f"attempt {attempt} of {policy.max_attempts} {_verb(outcome)}; retrying",
    )


def _delay_for(
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None,
    rng: random.Random | None,
) -> float:
    if outcome is Outcome.LOST:
        return 0.0
    if outcome is Outcome.RETRY_REQUESTED:
        return max(retry_after or 0.0, 0.0)
    return backoff_delay(policy, attempt, rng)


def _verb(outcome: Outcome) -> str:
    return {
        Outcome.FAILED: "failed",
        Outcome.TIMED_OUT: "timed out",
        Outcome.LOST: "was lost",
        Outcome.RETRY_REQUESTED: "asked for a retry",
    }.get(outcome, outcome.value)
