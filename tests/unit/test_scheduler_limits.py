"""Rate and concurrency limits as state machines, the clock passed in."""

from __future__ import annotations

import pytest

from scheduler.limits import Slots, TokenBucket, TypeLimits, parse_rate


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("5/s", 5.0), ("30/min", 0.5), ("100/h", 100 / 3600), (" 2.5 / second ", 2.5)],
)
def test_rates_parse(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["5", "5/day", "-1/s", "0/s", "five/s", ""])
def test_bad_rates_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_a_bucket_gives_its_burst_then_the_rate() -> None:
    bucket = TokenBucket(5.0)  # burst: one second's worth
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.next_at(0.0) == pytest.approx(0.2)
    assert bucket.take(0.19) is False and bucket.take(0.2) is True
    # 100 jobs at 5/s: the last goes 19 s after the first (5 at once, then one per 0.2 s)
    bucket, now = TokenBucket(5.0), 0.0
    sent: list[float] = []
    while len(sent) < 100:
        if bucket.take(now):
            sent.append(now)
        else:
            now = bucket.next_at(now)
    assert sent[-1] == pytest.approx(19.0)
    rate = (len(sent) - 5) / (sent[-1] - sent[4])
    assert rate == pytest.approx(5.0, rel=0.01)


def test_a_slow_rate_holds_at_least_one_token() -> None:
    bucket = TokenBucket(0.5)  # 30/min
    assert bucket.take(0.0) and not bucket.take(1.0)
    assert bucket.next_at(1.0) == pytest.approx(2.0)


def test_slots_are_taken_and_given_back_and_never_go_negative() -> None:
    slots = Slots(2)
    assert [slots.take(), slots.take(), slots.take()] == [True, True, False]
    slots.give_back()
    assert slots.free() and slots.take()
    for _ in range(5):
        slots.give_back()
    assert slots.running == 0
    with pytest.raises(ValueError):
        Slots(0)


def test_a_job_held_by_one_limit_takes_nothing_from_the_other() -> None:
    limits = TypeLimits("type resize", rate="1/s", max_running=2)
    assert limits.admit(0.0) is None  # a token and a slot
    held = limits.admit(0.1)
    assert held is not None and held.next_at == pytest.approx(1.0)
    assert held.reason() == "rate limited: type resize, 1/s, next slot at 1970-01-01T00:00:01.000Z"
    assert limits.slots is not None and limits.slots.running == 1  # the rate held it: no slot
    assert limits.admit(1.0) is None
    full = limits.admit(5.0)
    assert full is not None and full.next_at is None
    assert full.reason() == "concurrency limited: type resize, 2 running at most"
    assert limits.bucket is not None and limits.bucket.next_at(5.0) == 5.0  # token untouched
    limits.finished()
    assert limits.admit(5.0) is None


def test_after_a_rebuild_the_running_attempts_hold_their_slots() -> None:
    limits = TypeLimits("tenant acme", max_running=3)
    limits.restore(3)
    assert limits.admit(0.0) is not None
    limits.finished()
    assert limits.admit(0.0) is None
    unlimited = TypeLimits("type noop")
    assert all(unlimited.admit(0.0) is None for _ in range(1000))
