"""The pure rules of failure classes (worker/outcomes.py: the worker classifies) and memory
escalation (scheduler/escalation.py: the scheduler sizes the retry)."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.escalation import (
    MAX_MEMORY_ESCALATIONS,
    Escalation,
    FailureClass,
    escalated_memory,
)
from worker.outcomes import classify_failure as classify


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ({}, FailureClass.ERROR),
        ({"memory_error": True}, FailureClass.MEMORY),
        (
            {"memory_killed": True, "exit_signal": signal.SIGKILL, "signal_ours": True},
            FailureClass.MEMORY,
        ),
        (
            {"timed_out": True, "exit_signal": signal.SIGKILL, "signal_ours": True},
            FailureClass.TIMEOUT,
        ),
        ({"exit_signal": signal.SIGKILL}, FailureClass.SIGNAL),
        ({"exit_signal": signal.SIGSEGV}, FailureClass.SIGNAL),
        ({"exit_signal": signal.SIGTERM, "signal_ours": True}, FailureClass.ERROR),
        ({"timed_out": True, "memory_killed": True}, FailureClass.MEMORY),
    ],
)
def test_classify(observed: dict[str, object], expected: FailureClass) -> None:
    assert classify(**observed) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_mb", "peak", "largest", "done", "expected"),
    [
        (200, 450, 8192, 0, Escalation(563)),  # 1.25 × peak beats 2 × request
        (200, 250, 8192, 0, Escalation(400)),  # 2 × request beats 1.25 × peak
        (200, None, 8192, 0, Escalation(400)),  # no peak known
        (3000, 6000, 8192, 0, Escalation(7500)),
        (5000, 6000, 8192, 0, Escalation(8192)),  # capped by the largest worker
        (200, 450, None, 0, Escalation(563)),  # no worker known: nothing caps it
        (
            4000,
            9600,
            8192,
            0,
            Escalation(None, "needs 12000 MB after a memory kill; the largest worker has 8192 MB"),
        ),
        (
            8192,
            None,
            8192,
            1,
            Escalation(None, "needs 16384 MB after a memory kill; the largest worker has 8192 MB"),
        ),
        (
            200,
            450,
            8192,
            MAX_MEMORY_ESCALATIONS,
            Escalation(None, "killed for memory after 3 memory escalations (the bound)"),
        ),
    ],
)
def test_escalated_memory(
    request_mb: int, peak: int | None, largest: int | None, done: int, expected: Escalation
) -> None:
    assert escalated_memory(request_mb, peak, largest, done) == expected


@given(
    request_mb=st.integers(1, 100_000),
    peak=st.none() | st.integers(1, 400_000),
    largest=st.integers(1, 200_000),
    done=st.integers(0, MAX_MEMORY_ESCALATIONS - 1),
)
def test_a_retry_grows_fits_and_covers_the_peak(
    request_mb: int, peak: int | None, largest: int, done: int
) -> None:
    out = escalated_memory(request_mb, peak, largest, done)
    if out.memory_mb is None:
        assert out.error is not None and "MB" in out.error
        assert request_mb >= largest or (peak is not None and 1.25 * peak > largest)
    else:
        assert request_mb < out.memory_mb <= largest
        assert peak is None or out.memory_mb >= 1.25 * peak


@given(request_mb=st.integers(1, 1000), ratio=st.floats(1.0, 3.5))
def test_two_escalations_cover_up_to_three_and_a_half_times(request_mb: int, ratio: float) -> None:
    """W7's promise: a job needing ≤ 3.5× its request succeeds within 2 extra attempts (the peak
    the watchdog sees is at most the limit it holds the child to)."""
    need = request_mb * ratio
    memory, extra = request_mb, 0
    while memory < need:
        out = escalated_memory(memory, memory, 1_000_000, extra)  # killed at its limit
        assert out.memory_mb is not None
        memory, extra = out.memory_mb, extra + 1
    assert extra <= 2
