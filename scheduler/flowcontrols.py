"""The flow-control half of the :class:`~scheduler.core.Scheduler` facade (pure): what admins
and the shell set — type limits and breakers, tenants' limits and weights, pauses — and what
monitoring reads back. The rules themselves are :mod:`scheduler.flow` and
:mod:`scheduler.fairshare`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from scheduler.breaker import BreakerRecord, BreakerState, Change
from scheduler.flow import GateKey, GateView, TypeRule
from scheduler.state import SchedulerState


class FlowControls:
    """Mixed into the scheduler, which owns ``state``."""

    state: SchedulerState

    def set_pauses(self, pauses: Mapping[GateKey, str]) -> None:
        """Every pause in force (everything, a type's, a batch's: see :mod:`scheduler.flow`)
        with the reason its jobs show; their ready jobs wait, what runs finishes."""
        self.state.flow.set_pauses(pauses)
        self.state.dirty = True

    def set_type_rules(self, rules: dict[str, TypeRule], now: float) -> None:
        """The limits and breaker policies of the types that have any."""
        self.state.flow.set_type_rules(rules, now)
        self.state.dirty = True

    def set_tenants(
        self,
        max_running: dict[str, int | None],
        weights: dict[str, float],
        default_max_running: int | None,
    ) -> None:
        """What admins set for tenants: running limits and fair-share weights."""
        self.state.flow.set_tenant_rules(max_running, default_max_running)
        self.state.ready.set_weights(weights)
        self.state.dirty = True

    def force_breaker(self, job_type: str, state: BreakerState | None, now: float) -> None:
        self.state.flow.force_breaker(job_type, state, now)
        self.state.dirty = True

    def restore_breaker(self, job_type: str, record: BreakerRecord) -> None:
        self.state.flow.restore_breaker(job_type, record)

    def breaker_records(self, job_types: Iterable[str]) -> dict[str, BreakerRecord]:
        breakers = self.state.flow.breakers
        return {t: breakers[t].record() for t in job_types if t in breakers}

    def take_breaker_changes(self) -> list[Change]:
        """Breaker changes since the last call, to persist with the pass and publish."""
        return self.state.flow.take_changes()

    def gates(self, now: float) -> list[GateView]:
        """Every breaker that is not closed and every limit, with what it holds."""
        return self.state.flow.views(now)
