"""The pure cron rules (scheduler.cron): parsing, fire times across daylight saving, and what
is due after downtime. Tables for the rules, hypothesis for the invariants."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scheduler import cron
from scheduler.cron import Catchup, CronError

S = timedelta(seconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "zone", "why"),
    [
        ("* * *", "UTC", "has 3 fields"),
        ("* * * * * * *", "UTC", "has 7 fields"),
        ("", "UTC", "has 0 fields"),
        ("61 * * * *", "UTC", "invalid cron"),
        ("*/0 * * * *", "UTC", "invalid cron"),
        ("a b c d e", "UTC", "invalid cron"),
        ("H * * * *", "UTC", "invalid cron"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
        ("* * * * *", "../etc/passwd", "unknown time zone"),
        ("* * * * *", "", "unknown time zone"),
    ],
)
def test_bad_expressions_and_zones_say_why(expression: str, zone: str, why: str) -> None:
    with pytest.raises(CronError, match=why):
        cron.parse(expression, zone)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", utc(2026, 1, 1, 0, 7), [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30)]),
        (
            "*/2 * * * * *",
            utc(2026, 1, 1, 0, 0, 0),
            [utc(2026, 1, 1, 0, 0, 2), utc(2026, 1, 1, 0, 0, 4)],
        ),
        ("0 9 * * 1", utc(2026, 12, 2), [utc(2026, 12, 7, 9), utc(2026, 12, 14, 9)]),
        ("@hourly", utc(2026, 1, 1, 0, 0, 1), [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        # strictly after: a tick at ``after`` itself is not next
        ("0 * * * *", utc(2026, 1, 1, 1), [utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]),
    ],
)
def test_next_fire_times_in_utc(expression: str, after: datetime, expected: list[datetime]) -> None:
    assert cron.upcoming(cron.parse(expression, "UTC"), after, 2) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # spring forward in New York (02:00 → 03:00 on 2026-03-08): 02:30 fires at the jump
        (
            "30 2 * * *",
            "America/New_York",
            utc(2026, 3, 7, 12),
            [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)],
        ),
        # fall back (02:00 → 01:00 on 2026-11-01): 01:30 fires once, the first time
        (
            "30 1 * * *",
            "America/New_York",
            utc(2026, 10, 31, 12),
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        # every 20 minutes across the repeated hour: its second pass does not fire again
        (
            "*/20 * * * *",
            "America/New_York",
            utc(2026, 11, 1, 5, 10),
            [utc(2026, 11, 1, 5, 20), utc(2026, 11, 1, 5, 40), utc(2026, 11, 1, 7, 0)],
        ),
        # from inside the second pass: the next tick is after it
        (
            "*/20 * * * *",
            "America/New_York",
            utc(2026, 11, 1, 6, 10),
            [utc(2026, 11, 1, 7, 0), utc(2026, 11, 1, 7, 20)],
        ),
        # every minute through a gap: its ticks collapse onto the jump
        (
            "* * * * *",
            "Europe/Paris",
            utc(2026, 3, 29, 0, 58),
            [utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 1)],
        ),
        # Lord Howe moves by half an hour
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            utc(2026, 10, 3, 12),
            [utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)],
        ),
    ],
)
def test_daylight_saving(
    expression: str, zone: str, after: datetime, expected: list[datetime]
) -> None:
    assert cron.upcoming(cron.parse(expression, zone), after, len(expected)) == expected


def test_latest_until_includes_the_instant_itself() -> None:
    spec = cron.parse("* * * * * *", "UTC")
    at = utc(2026, 1, 1, 12, 0, 5)
    assert cron.latest_until(spec, at) == at
    assert cron.latest_until(spec, at + timedelta(milliseconds=500)) == at
    assert cron.latest_until(spec, at - timedelta(microseconds=1)) == at - S


NOW = utc(2026, 1, 1, 12, 0, 10)
EVERY_SECOND = cron.parse("* * * * * *", "UTC")


@pytest.mark.parametrize(
    ("catchup", "bound", "fired", "missed"),
    [
        # last tick 12:00:05, leading since 12:00:08: 06 and 07 were missed
        (Catchup.NONE, 100, [8, 9, 10], (6, 7)),
        (Catchup.LATEST, 100, [7, 8, 9, 10], (6, 6)),
        (Catchup.ALL, 100, [6, 7, 8, 9, 10], None),
        (Catchup.ALL, 1, [7, 8, 9, 10], (6, 6)),
    ],
)
def test_catchup_rules(
    catchup: Catchup, bound: int, fired: list[int], missed: tuple[int, int] | None
) -> None:
    due = cron.due(EVERY_SECOND, NOW - 5 * S, NOW, NOW - 2 * S, catchup, bound)
    assert due.fire == tuple(utc(2026, 1, 1, 12, 0, s) for s in fired)
    assert due.missed == (
        None if missed is None else tuple(utc(2026, 1, 1, 12, 0, s) for s in missed)
    )
    assert due.last_tick == NOW
    assert due.next_tick == NOW + S


def test_nothing_due_keeps_the_last_tick() -> None:
    due = cron.due(EVERY_SECOND, NOW, NOW + timedelta(milliseconds=900), NOW, Catchup.ALL, 5)
    assert due.fire == ()
    assert due.missed is None
    assert due.last_tick == NOW
    assert due.next_tick == NOW + S


def test_a_long_downtime_costs_what_it_fires() -> None:
    """A day missed of a schedule every second: none fires the on-time tick only, and
    names the missed stretch from its first to its last tick."""
    last = NOW - timedelta(days=1)
    due = cron.due(EVERY_SECOND, last, NOW, NOW, Catchup.NONE, 100)
    assert due.fire == (NOW,)
    assert due.missed == (last + S, NOW - S)
    due = cron.due(EVERY_SECOND, last, NOW, NOW, Catchup.ALL, 100)
    assert len(due.fire) == 101
    assert due.fire[0] == NOW - 100 * S


ZONES = ["America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Europe/Dublin", "UTC"]
EXPRESSIONS = [
    "* * * * *",
    "*/7 * * * *",
    "30 1 * * *",
    "30 2 * * *",
    "0,30 0-3 * * *",
    "*/13 * * * * *",
    "0 */2 * * *",
    "15 2 * * 0",
]
# Around the transitions of 2026 in those zones, and a quiet day.
STARTS = [
    utc(2026, 3, 8, 5),
    utc(2026, 3, 29, 0),
    utc(2026, 10, 3, 14),
    utc(2026, 10, 25, 0),
    utc(2026, 11, 1, 4),
    utc(2026, 4, 5, 14),
    utc(2026, 6, 1),
]
spec_st = st.builds(cron.parse, st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES))
start_st = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes),
    st.sampled_from(STARTS),
    st.integers(0, 240),
)


def _is_tick(spec: cron.CronSpec, at: datetime) -> bool:
    """Whether ``at`` reads as a tick of ``spec`` on the wall, or is a jump of the clocks
    onto which a gap's ticks collapsed."""
    wall = at.astimezone(spec.zone).replace(tzinfo=None)
    if cron._step(spec, wall - timedelta(microseconds=1), forward=True) == wall:
        return True
    before = (at - S).astimezone(spec.zone).utcoffset()
    return before != at.astimezone(spec.zone).utcoffset()


def _ticks(spec: cron.CronSpec, after: datetime, until: datetime) -> list[datetime]:
    out: list[datetime] = []
    at: datetime | None = after
    while (at := cron.next_after(spec, at)) is not None and at <= until:  # type: ignore[arg-type]
        out.append(at)
    return out


@settings(max_examples=80, deadline=None)
@given(spec_st, start_st)
def test_fire_times_increase_and_are_ticks(spec: cron.CronSpec, start: datetime) -> None:
    times = cron.upcoming(spec, start, 40)
    assert times and times[0] > start
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(_is_tick(spec, t) for t in times)
    # each is the latest tick at its own instant, and the next of the one before
    for before, at in zip([start, *times], times, strict=False):
        assert cron.next_after(spec, before) == at
        assert cron.latest_until(spec, at) == at


@settings(max_examples=60, deadline=None)
@given(spec_st, start_st, st.lists(st.integers(1, 1800), min_size=1, max_size=8))
def test_checks_at_any_times_fire_every_tick_exactly_once(
    spec: cron.CronSpec, start: datetime, gaps: list[int]
) -> None:
    """However the checks fall, a leader that leads throughout fires each tick once, none
    skipped: the concatenated fires are the ticks themselves."""
    last, now, fired = start, start, []
    for gap in gaps:
        now += timedelta(seconds=gap)
        due = cron.due(spec, last, now, start, Catchup.NONE, 0)
        assert due.missed is None
        fired += due.fire
        last = due.last_tick
    expected = _ticks(spec, start, now)
    assert fired == expected[: len(fired)]
    assert len(fired) == len(expected) or len(fired) >= cron.MAX_FIRES


@settings(max_examples=60, deadline=None)
@given(
    spec_st,
    start_st,
    st.integers(1, 3 * 3600),
    st.integers(0, 3600),
    st.sampled_from(list(Catchup)),
    st.integers(1, 20),
)
def test_after_downtime_the_rule_decides_the_missed_ones(
    spec: cron.CronSpec,
    start: datetime,
    down: int,
    up: int,
    catchup: Catchup,
    max_catchup: int,
) -> None:
    back = start + timedelta(seconds=down)
    now = back + timedelta(seconds=up)
    due = cron.due(spec, start, now, back, catchup, max_catchup)
    ticks = _ticks(spec, start, now)
    assume(len([t for t in ticks if t >= back]) + max_catchup <= cron.MAX_FIRES)
    missed = [t for t in ticks if t < back]
    kept = missed[len(missed) - min(len(missed), cron.bound(catchup, max_catchup)) :]
    assert list(due.fire) == kept + [t for t in ticks if t >= back]
    left = missed[: len(missed) - len(kept)]
    assert due.missed == ((left[0], left[-1]) if left else None)
    assert due.last_tick == (ticks[-1] if ticks else start)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("hhmm", ["00:30", "01:30", "02:30", "03:00"])
def test_a_daily_schedule_fires_once_every_local_day_of_a_year(zone: str, hhmm: str) -> None:
    hour, minute = map(int, hhmm.split(":"))
    spec = cron.parse(f"{minute} {hour} * * *", zone)
    times = cron.upcoming(spec, utc(2025, 12, 31, 12), 366)
    days = [t.astimezone(ZoneInfo(zone)).date() for t in times]
    assert len(set(days)) == len(days) == 366
