"""What the scheduler's flow control is told (issue 17), for the shell: the limits and breaker
policies workers declare for their types (``@smartq.job``, in heartbeats: the scheduler runs no
user code), what admins set (``tenants``, ``job_type_limits``: read at a rebuild and polled
every ``limits_poll_seconds``), and the breakers' state (``breakers``: restored at a rebuild,
written in the transaction of each pass that changed one, so a standby keeps an open breaker
open).

An admin's override wins over the decorator field by field (``rate_limit``, ``max_running``);
NULL falls back to the decorator's value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.messages import Heartbeat, TypeFlow
from models.monitoring import BreakerChanged, PauseChanged
from models.tables import BreakerRow, JobTypeLimits, Pause, Tenant, WorkerControl
from scheduler.breaker import BreakerRecord, BreakerState, Change
from scheduler.core import Scheduler
from scheduler.flow import PAUSE, PAUSE_ALL, GateKey, TypeRule, pause_of_batch, pause_of_type
from scheduler.reasons import paused_reason
from scheduler.workers import Control
from smartq import topology
from smartq.flowspec import BreakerPolicy
from smartq.settings import Settings

log = logging.getLogger(__name__)
tenants_t = Tenant.__table__  # type: ignore[attr-defined]
limits_t = JobTypeLimits.__table__  # type: ignore[attr-defined]
breakers_t = BreakerRow.__table__  # type: ignore[attr-defined]
controls_t = WorkerControl.__table__  # type: ignore[attr-defined]
pauses_t = Pause.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Override:
    rate_limit: str | None
    max_running: int | None
    breaker_force: BreakerState | None


def default_policy(settings: Settings) -> BreakerPolicy:
    return BreakerPolicy(
        min_attempts=settings.breaker_min_attempts,
        window_seconds=settings.breaker_window_seconds,
        failure_ratio=settings.breaker_failure_ratio,
        cooldown_seconds=settings.breaker_cooldown_seconds,
        max_cooldown_seconds=max(
            settings.breaker_max_cooldown_seconds, settings.breaker_cooldown_seconds
        ),
    )


class FlowConfig:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.declared: dict[str, TypeFlow] = {}
        self.overrides: dict[str, Override] = {}
        self.tenant_max_running: dict[str, int | None] = {}
        self.weights: dict[str, float] = {}
        #: What admins set on workers (drain, size), by worker id.
        self.controls: dict[str, Control] = {}
        #: Pauses in force: (kind, name) → (by, since).
        self.pauses: dict[tuple[str, str], tuple[str | None, datetime]] = {}
        self._applied_pauses: dict[tuple[str, str], tuple[str | None, datetime]] = {}
        #: ``pause.changed`` events of what the core was given, to publish with a pass.
        self.pause_events: list[tuple[str, bytes]] = []
        #: Something changed that the core has not been given yet.
        self.changed = True

    # -- what comes in ------------------------------------------------------------------
    def heard(self, beats: Iterable[Heartbeat]) -> None:
        """Heartbeats: the types' declarations (the latest heartbeat's win)."""
        for beat in beats:
            for name, flow in beat.type_flow.items():
                if self.declared.get(name) != flow:
                    self.declared[name] = flow
                    self.changed = True

    async def read(self, conn: AsyncConnection) -> None:
        """What admins set, from the database."""
        overrides = {
            r["name"]: Override(
                r["rate_limit"],
                r["max_running"],
                BreakerState(r["breaker_force"]) if r["breaker_force"] else None,
            )
            for r in (await conn.execute(select(limits_t))).mappings()
        }
        rows = list((await conn.execute(select(tenants_t))).mappings())
        running = {r["name"]: r["max_running"] for r in rows if r["max_running"] is not None}
        weights = {r["name"]: float(r["weight"]) for r in rows if r["weight"] is not None}
        controls = {
            r["worker_id"]: Control(bool(r["drain"]), r["cpu_units"], r["memory_mb"])
            for r in (await conn.execute(select(controls_t))).mappings()
        }
        pauses = {
            (r["kind"], r["name"]): (r["paused_by"], r["paused_at"])
            for r in (await conn.execute(select(pauses_t))).mappings()
        }
        read = (overrides, running, weights, controls, pauses)
        known = (self.overrides, self.tenant_max_running, self.weights, self.controls, self.pauses)
        if read != known:
            self.overrides, self.tenant_max_running, self.weights, self.controls = read[:4]
            self.pauses = pauses
            self.changed = True

    # -- what the core is given ---------------------------------------------------------
    def rules(self) -> dict[str, TypeRule]:
        out: dict[str, TypeRule] = {}
        for name in set(self.declared) | set(self.overrides):
            flow = self.declared.get(name, TypeFlow())
            override = self.overrides.get(name)
            rule = TypeRule(
                rate=(override.rate_limit if override and override.rate_limit else None)
                or flow.rate_limit,
                max_running=(override.max_running if override else None) or flow.max_running,
                breaker=_policy(name, flow.breaker),
                breaker_enabled=flow.breaker_enabled,
            )
            if rule != TypeRule():
                out[name] = rule
        return out

    def apply(self, core: Scheduler, now: float) -> None:
        """Give the core what changed (called at the start of a pass)."""
        if not self.changed:
            return
        self.changed = False
        core.set_type_rules(self.rules(), now)
        core.set_tenants(self.tenant_max_running, self.weights, self.settings.tenant_max_running)
        core.control_workers(self.controls)
        core.set_pauses(
            {
                _gate(kind, name): paused_reason(kind, name, by, at.timestamp())
                for (kind, name), (by, at) in self.pauses.items()
            }
        )
        self._announce_pauses(now)
        forced = {name: o.breaker_force for name, o in self.overrides.items() if o.breaker_force}
        for name, breaker in list(core.state.flow.breakers.items()):
            if breaker.forced and name not in forced:
                core.force_breaker(name, None, now)  # an admin released it
        for name, state in forced.items():
            core.force_breaker(name, state, now)

    def _announce_pauses(self, now: float) -> None:
        before, after = self._applied_pauses, self.pauses
        for key in sorted(set(before) | set(after)):
            if before.get(key) == after.get(key):
                continue
            kind, name = key
            by, at = after.get(key) or (None, datetime.fromtimestamp(now, UTC))
            event = PauseChanged(kind=kind, name=name, paused=key in after, by=by, ts=at)
            self.pause_events.append((topology.MONITORING_PAUSE, event.dumps()))
            log.info(
                "%s %s %s",
                "paused" if key in after else "resumed",
                kind,
                name,
                extra={"action": "scheduler.pause", "pause_kind": kind, "pause_name": name},
            )
        self._applied_pauses = dict(after)

    def take_pause_events(self) -> list[tuple[str, bytes]]:
        out, self.pause_events = self.pause_events, []
        return out


def _gate(kind: str, name: str) -> GateKey:
    if kind == "type":
        return pause_of_type(name)
    if kind == "batch":
        return pause_of_batch(name)
    return (PAUSE, PAUSE_ALL)


def _policy(name: str, fields: dict[str, float] | None) -> BreakerPolicy | None:
    if not fields:
        return None
    try:
        values: dict[str, Any] = dict(fields)
        if "min_attempts" in values:
            values["min_attempts"] = int(values["min_attempts"])
        return BreakerPolicy(**values)
    except (TypeError, ValueError):
        log.warning(
            "a worker declared a breaker policy the scheduler cannot use; the default applies",
            extra={"action": "scheduler.bad_breaker_policy", "job_type": name},
        )
        return None


# -- the breakers' state ------------------------------------------------------------------
async def restore_breakers(conn: AsyncConnection, core: Scheduler) -> int:
    """At a rebuild: each breaker as the last leader left it; how many."""
    rows = list((await conn.execute(select(breakers_t))).mappings())
    for r in rows:
        opened = r["opened_at"]
        core.restore_breaker(
            r["job_type"],
            BreakerRecord(
                BreakerState(r["state"]),
                opened.timestamp() if opened is not None else None,
                float(r["cooldown_seconds"]),
                bool(r["forced"]),
            ),
        )
    return len(rows)


def breaker_rows(core: Scheduler, changes: list[Change]) -> list[dict[str, Any]]:
    """The ``breakers`` rows a pass writes for its changes (the latest state of each type)."""
    records = core.breaker_records({c.job_type for c in changes})
    return [
        {
            "job_type": name,
            "state": record.state.value,
            "opened_at": _dt(record.opened_at),
            "cooldown_seconds": record.cooldown,
            "forced": record.forced,
        }
        for name, record in sorted(records.items())
    ]


async def poll(engine: AsyncEngine, config: FlowConfig, wake: Callable[[], None]) -> None:
    """Read what admins set every ``limits_poll_seconds``; a change wakes a pass (which
    applies it: the core changes only inside a pass)."""
    while True:
        await asyncio.sleep(config.settings.limits_poll_seconds)
        try:
            async with engine.connect() as conn:
                await config.read(conn)
        except Exception:
            log.warning(
                "could not read the flow-control settings",
                exc_info=True,
                extra={"action": "scheduler.flow_config_failed"},
            )
            continue
        if config.changed:
            wake()


def announce(core: Scheduler, changes: list[Change]) -> list[tuple[str, bytes]]:
    """Log each breaker change; its ``breaker.state`` events, to publish with the pass."""
    breakers = core.state.flow.breakers
    out = []
    for change in changes:
        log.info(
            "circuit breaker %s: %s",
            change.after.value,
            change.why,
            extra={
                "action": "scheduler.breaker",
                "job_type": change.job_type,
                "state": change.after.value,
                "before": change.before.value,
            },
        )
        breaker = breakers.get(change.job_type)
        probe = None
        if breaker is not None and change.after is BreakerState.OPEN and not breaker.forced:
            probe = _dt(breaker.probe_at())
        event = BreakerChanged(
            job_type=change.job_type,
            state=change.after.value,
            before=change.before.value,
            ts=_dt(change.at) or datetime.now(UTC),
            why=change.why,
            forced=breaker.forced if breaker is not None else False,
            probe_at=probe,
        )
        out.append((topology.MONITORING_BREAKER, event.dumps()))
    return out


def _dt(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)
