"""``@smartq.job(rate_limit=..., max_running=..., breaker=...)``: checked at import, carried
in heartbeats, merged with an admin's override by the scheduler (issue 17)."""

from __future__ import annotations

import pytest

import smartq
from models.messages import Heartbeat, TypeFlow
from scheduler.breaker import BreakerState
from scheduler.flow import TypeRule
from scheduler.flowconfig import FlowConfig, Override
from smartq.errors import ConfigurationError
from smartq.registry import Registry
from smartq.settings import Settings
from worker.service import type_flow


def _noop(ctx: object) -> None:
    return None


def test_the_decorator_refuses_what_the_scheduler_could_not_use() -> None:
    reg = Registry()
    for bad in (
        {"rate_limit": "fast"},
        {"rate_limit": "0/s"},
        {"max_running": 0},
        {"max_running": 2.5},
        {"breaker": "yes"},
    ):
        with pytest.raises(ConfigurationError):
            smartq.job("t", into=reg, **bad)(_noop)
    with pytest.raises(ValueError):
        smartq.BreakerPolicy(failure_ratio=0)


def test_heartbeats_carry_only_the_types_that_declare_something() -> None:
    reg = Registry()
    smartq.job("plain", into=reg)(_noop)
    smartq.job("paced", into=reg, rate_limit="5/s", max_running=3)(_noop)
    smartq.job("unguarded", into=reg, breaker=False)(_noop)
    policy = smartq.BreakerPolicy(min_attempts=4, cooldown_seconds=3)
    smartq.job("touchy", into=reg, breaker=policy)(_noop)
    flows = type_flow(reg)
    assert set(flows) == {"paced", "unguarded", "touchy"}
    assert flows["paced"] == TypeFlow(rate_limit="5/s", max_running=3)
    assert flows["unguarded"].breaker_enabled is False
    assert flows["touchy"].breaker is not None and flows["touchy"].breaker["min_attempts"] == 4


def beat(flows: dict[str, TypeFlow]) -> Heartbeat:
    return Heartbeat.model_validate(
        {
            "worker_id": "w",
            "hostname": "h",
            "cpu_units": 1,
            "memory_mb": 1,
            "job_types": list(flows),
            "running": [],
            "started_at": "2026-12-02T00:00:00Z",
            "ts": "2026-12-02T00:00:00Z",
            "type_flow": {k: v.model_dump() for k, v in flows.items()},
        }
    )


def test_an_admins_override_wins_field_by_field_and_null_falls_back() -> None:
    config = FlowConfig(Settings())
    config.heard([beat({"resize": TypeFlow(rate_limit="5/s", max_running=3)})])
    assert config.rules() == {"resize": TypeRule(rate="5/s", max_running=3)}
    config.overrides = {"resize": Override("1/s", None, None)}
    assert config.rules() == {"resize": TypeRule(rate="1/s", max_running=3)}
    config.overrides = {"other": Override(None, 2, BreakerState.OPEN)}
    rules = config.rules()
    assert rules["other"] == TypeRule(max_running=2) and rules["resize"].rate == "5/s"
