"""Dispatches that never reach their worker are published again, then given up."""

from __future__ import annotations

import uuid

from scheduler.reconcile import DispatchTracker

J1, J2 = uuid.UUID(int=1), uuid.UUID(int=2)


def test_a_dispatch_the_worker_lists_is_confirmed() -> None:
    t = DispatchTracker(grace=1.0)
    t.dispatched(J1, 1, "w", now=0.0)
    assert t.on_heartbeat("w", [(J1, 1)], now=5.0).republish == []
    assert len(t) == 0


def test_unlisted_dispatch_is_republished_after_grace_then_lost() -> None:
    t = DispatchTracker(grace=1.0, max_republish=2)
    t.dispatched(J1, 1, "w", now=0.0)
    assert t.on_heartbeat("w", [], now=0.5).republish == []  # still within grace
    assert t.on_heartbeat("w", [], now=1.0).republish == [(J1, 1, "w")]
    assert t.on_heartbeat("w", [], now=1.5).republish == []  # grace restarts after a resend
    assert t.on_heartbeat("w", [], now=2.0).republish == [(J1, 1, "w")]
    verdict = t.on_heartbeat("w", [], now=3.0)
    assert verdict.republish == [] and verdict.lost == [(J1, 1, "w")]
    assert len(t) == 0


def test_reports_and_other_workers() -> None:
    t = DispatchTracker(grace=1.0)
    t.dispatched(J1, 1, "a", now=0.0)
    t.dispatched(J2, 3, "b", now=0.0)
    t.settled(J1, 1)
    assert t.on_heartbeat("a", [], now=9.0).republish == []
    assert t.on_heartbeat("a", [], now=9.0).lost == []
    t.worker_gone("b")
    assert t.on_heartbeat("b", [], now=9.0).republish == [] and len(t) == 0


def test_a_dispatch_sent_again_to_another_worker_is_theirs_only() -> None:
    t = DispatchTracker(grace=1.0)
    t.dispatched(J1, 1, "a", now=0.0)
    t.dispatched(J1, 1, "b", now=0.0)
    assert len(t) == 1
    assert t.on_heartbeat("a", [], now=9.0).republish == []
    assert t.on_heartbeat("b", [], now=9.0).republish == [(J1, 1, "b")]
