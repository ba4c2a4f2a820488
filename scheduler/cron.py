"""Cron schedules, pure: which ticks of a cron expression in a time zone are due at ``now``.

croniter parses and steps the expression (5 fields, or 6 with a leading seconds field); it is
only ever given naive wall-clock times, so it does calendar arithmetic and nothing else. This
module maps a wall-clock tick to the instant it fires at, with one rule for daylight saving:

* a wall time that happens twice (clocks set back) fires once, at its first occurrence;
* a wall time that never happens (clocks set forward) fires once, at the instant the clocks
  jump; several such ticks of one gap collapse into that one instant.

So every tick fires at most once and a daily schedule fires exactly once every local day,
which is what cron (Vixie, cronie) does for jobs at fixed times. The price: a schedule every
minute pauses for the repeated hour of an autumn night.

What fires after downtime is :func:`due`: ticks before ``missed_before`` (when the leading
scheduler started leading) were missed, and the catch-up rule says how many of them still
fire; later ticks are on time and always fire, however late the loop reaches them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

#: Ticks that one check fires at most for one schedule, on time or caught up.
MAX_FIRES = 1000
#: The most ``max_catchup`` may be.
MAX_CATCHUP = 1000
_TINY = timedelta(microseconds=1)


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


class Overlap(enum.StrEnum):
    """What a tick does while the previous tick's run is still active."""

    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class Catchup(enum.StrEnum):
    """What fires of the ticks missed while no scheduler led."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A checked cron expression and its time zone."""

    expression: str
    zone: tzinfo
    seconds: bool  # six fields, the first one seconds

    @property
    def zone_name(self) -> str:
        return str(self.zone)


def parse(expression: str, zone: str) -> CronSpec:
    """The spec, or :class:`CronError` saying what is wrong (and nothing from croniter's
    seven-field or hashed dialects: the API promises five or six fields)."""
    text = " ".join(expression.split())
    fields = len(text.split(" ")) if text else 0
    if not text.startswith("@") and fields not in (5, 6):
        raise CronError(
            f"cron {expression!r} has {fields} fields; it needs 5 (minute hour day month "
            "weekday) or 6 (a leading seconds field, then those five)"
        )
    seconds = fields == 6
    try:
        where = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {zone!r}; use an IANA name like Europe/Paris") from None
    try:
        croniter(text, datetime(2000, 1, 1), second_at_beginning=seconds)
    except (CroniterError, ValueError, KeyError) as exc:
        raise CronError(f"invalid cron {expression!r}: {exc}") from None
    spec = CronSpec(text, where, seconds)
    if next_after(spec, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise CronError(f"cron {expression!r} never fires")
    return spec


# -- wall time ↔ instants ------------------------------------------------------------------
def _offset(at: datetime, zone: tzinfo) -> timedelta:
    off = at.astimezone(zone).utcoffset()
    assert off is not None
    return off


def _switch(lo: datetime, hi: datetime, zone: tzinfo) -> datetime:
    """The instant in ``(lo, hi]`` at which the zone's offset becomes ``hi``'s (one change
    in between; tz data changes offsets on whole seconds)."""
    target = _offset(hi, zone)
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(datetime.fromtimestamp(mid, UTC), zone) == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant a naive wall-clock tick fires at (the rule in the module docstring)."""
    first = wall.replace(tzinfo=zone, fold=0)
    at = first.astimezone(UTC)
    if at.astimezone(zone).replace(tzinfo=None) == wall:
        return at  # exists; when it exists twice, fold 0 is the first time
    # In a gap: fold 0 reads it with the offset before the jump, fold 1 with the one after.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _switch(min(at, before), max(at, before), zone)


def _wall(at: datetime, zone: tzinfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _repeat_end(at: datetime, zone: tzinfo) -> datetime | None:
    """For an instant in the second pass of a repeated hour: the wall time that hour ends at
    (walls before it fired in the first pass); None for any other instant."""
    local = at.astimezone(zone)
    if local.fold == 0:
        return None
    first = local.replace(fold=0).utcoffset()
    second = local.utcoffset()
    assert first is not None and second is not None
    if first == second:
        return None
    change = _switch(at - (first - second), at, zone)
    return (change + first).replace(tzinfo=None)


def _step(spec: CronSpec, wall: datetime, forward: bool) -> datetime | None:
    try:
        it = croniter(spec.expression, wall, second_at_beginning=spec.seconds)
        out: datetime = it.get_next(datetime) if forward else it.get_prev(datetime)
    except CroniterError:  # nothing within croniter's search horizon (50 years)
        return None
    return out


def next_after(spec: CronSpec, at: datetime) -> datetime | None:
    """The first tick firing strictly after the instant ``at`` (None: never again)."""
    end = _repeat_end(at, spec.zone)
    wall = end - _TINY if end is not None else _wall(at, spec.zone)
    while True:
        tick = _step(spec, wall, forward=True)
        if tick is None:
            return None
        fires = instant(tick, spec.zone)
        if fires > at:
            return fires
        wall = tick  # a gap's ticks collapsed onto ``at``: step over them


def latest_until(spec: CronSpec, at: datetime) -> datetime | None:
    """The last tick firing at or before the instant ``at`` (None: none in croniter's
    horizon)."""
    end = _repeat_end(at, spec.zone)
    tick = _step(spec, end if end is not None else _wall(at, spec.zone) + _TINY, forward=False)
    while tick is not None:
        fires = instant(tick, spec.zone)
        if fires <= at:  # always, but for a guard: a gap's tick fires at the jump, later
            return fires
        tick = _step(spec, tick, forward=False)
    return None


def upcoming(spec: CronSpec, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times after ``after``."""
    out: list[datetime] = []
    at: datetime | None = after
    while len(out) < n:
        at = next_after(spec, at) if at is not None else None
        if at is None:
            break
        out.append(at)
    return out


# -- what is due ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Due:
    """What one check of a schedule decided."""

    #: Ticks to fire now, oldest first.
    fire: tuple[datetime, ...]
    #: The first and last missed tick left unfired, if any were.
    missed: tuple[datetime, datetime] | None
    #: The newest tick handled (fired or left), or the old last tick when nothing was due.
    last_tick: datetime
    #: The first tick after ``last_tick`` (None: it never fires again).
    next_tick: datetime | None


def bound(catchup: Catchup, max_catchup: int) -> int:
    """How many missed ticks fire at most under ``catchup``."""
    if catchup is Catchup.NONE:
        return 0
    return 1 if catchup is Catchup.LATEST else max_catchup


def due(
    spec: CronSpec,
    last_tick: datetime,
    now: datetime,
    missed_before: datetime,
    catchup: Catchup,
    max_catchup: int,
) -> Due:
    """The ticks in ``(last_tick, now]``: those at or after ``missed_before`` fire (on time),
    of the earlier ones (missed) the newest ``bound(catchup, max_catchup)`` fire too. Walks
    back from ``now``, so a long downtime costs as many steps as it fires, not as it missed."""
    limit = bound(catchup, max_catchup)
    on_time: list[datetime] = []
    late: list[datetime] = []
    left: datetime | None = None  # the newest missed tick not fired
    newest: datetime | None = None
    tick = latest_until(spec, now)
    while tick is not None and tick > last_tick:
        newest = newest or tick
        if tick >= missed_before and len(on_time) < MAX_FIRES:
            on_time.append(tick)
        elif tick < missed_before and len(late) < limit and len(on_time) + len(late) < MAX_FIRES:
            late.append(tick)
        else:
            left = tick
            break
        tick = latest_until(spec, tick - _TINY)
    handled = newest or last_tick
    missed = None
    if left is not None:
        first = next_after(spec, last_tick)
        assert first is not None
        missed = (first, left)
    fire = tuple(reversed(on_time + late))
    return Due(fire=fire, missed=missed, last_tick=handled, next_tick=next_after(spec, handled))
