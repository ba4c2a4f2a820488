"""Retention's pure rules: the cutoff, a purge's filter, the guard's wording, a sweep's pace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.retention import (
    FINAL,
    Budget,
    PurgeFilterError,
    Selection,
    Taken,
    cutoff,
    purge_selection,
    sweep_selection,
    why_kept,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
IDS = [uuid.uuid4() for _ in range(3)]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (30, NOW - timedelta(days=30)),
        (0.5, NOW - timedelta(hours=12)),
        (0, None),  # keep forever
        (-1, None),
    ],
)
def test_cutoff(days: float, expected: datetime | None) -> None:
    assert cutoff(NOW, days) == expected


def test_sweep_selection_takes_every_final_status_before_the_cutoff() -> None:
    assert sweep_selection(NOW, 0) is None
    sel = sweep_selection(NOW, 30)
    assert sel == Selection(statuses=FINAL, finished_before=NOW - timedelta(days=30))
    assert {"completed", "failed", "cancelled"} == FINAL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "an empty filter"),
        ({"statuses": ["running"]}, "only finished jobs can be purged"),
        ({"statuses": ["completed", "pending"], "type": "noop"}, "not pending"),
    ],
)
def test_purge_refuses_empty_and_unfinished_filters(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PurgeFilterError, match=message):
        purge_selection(**kwargs)  # type: ignore[arg-type]


def test_purge_selection_narrows_by_what_is_given() -> None:
    batch = uuid.uuid4()
    assert purge_selection(["failed"]) == Selection(statuses=frozenset({"failed"}))
    sel = purge_selection(type="noop", tenant="acme", batch_id=batch, finished_before=NOW)
    assert sel == Selection(
        statuses=FINAL, type="noop", tenant="acme", batch_id=batch, finished_before=NOW
    )


@pytest.mark.parametrize(
    ("status", "dependents", "children", "reason"),
    [
        ("completed", [], [], None),
        ("failed", [], [], None),
        ("cancelled", [], [], None),
        ("running", [], [], "the job is running: only a finished job can be deleted"),
        ("pending", IDS[:1], [], "the job is pending"),
        ("completed", IDS[:1], [], "1 unfinished job depends on it"),
        ("completed", IDS, IDS[:1], "3 unfinished jobs depend on it"),
        ("failed", [], IDS[:2], "2 jobs it spawned are still active"),
        ("cancelled", [], IDS[:1], "1 job it spawned is still active"),
    ],
)
def test_why_kept(
    status: str, dependents: list[uuid.UUID], children: list[uuid.UUID], reason: str | None
) -> None:
    got = why_kept(status, dependents, children)
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason)


def test_budget_goes_on_while_steps_come_back_full_and_stops_at_the_cap() -> None:
    budget = Budget(batch=500, cap=1_200)
    assert budget.ask() == 500
    assert budget.took(500, Taken(found=500, deleted={"completed": 500}))
    assert budget.ask() == 500
    assert budget.took(500, Taken(found=500, deleted={"failed": 500}))
    assert budget.ask() == 200  # the cap's rest
    assert not budget.took(200, Taken(found=200, deleted={"completed": 200}))
    assert budget.deleted == 1_200 and budget.steps == 3


def test_budget_stops_when_a_step_finds_fewer_than_it_asked() -> None:
    budget = Budget(batch=500, cap=10_000)
    assert not budget.took(500, Taken(found=120, deleted={"completed": 120}))
    assert not Budget(batch=5, cap=5).took(5, Taken())


def test_a_step_that_only_cleared_log_lines_is_followed_by_another() -> None:
    budget = Budget(batch=500, cap=10_000)
    assert budget.took(500, Taken(found=3, lines=5_000, logs_only=True))
    assert budget.deleted == 0
    assert not budget.took(500, Taken(found=3, deleted={"completed": 3}, lines=10))
    assert budget.deleted == 3
