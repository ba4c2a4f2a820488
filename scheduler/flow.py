"""Flow control in the pass, pure: each job type's circuit breaker and limits, each tenant's
running limit, and the ready jobs they hold (issue 17).

A ready job passes three gates before placement looks for a worker for it: its type's breaker
(:mod:`scheduler.breaker`), its type's rate and concurrency limits, its tenant's concurrency
limit (:mod:`scheduler.limits`). The pass *looks* at the gates first and *takes* a token and
a slot only for a job it starts, so a job held by one limit takes nothing from another, and
a job no worker has room for takes nothing at all.

A held job stays ``ready`` (no attempt is used, nothing is written) and leaves the ready queue
for its gate's own queue, in the same order: so held jobs cost a pass nothing, and a type
limited to 5/s with 10,000 jobs waiting is not walked 5 times a second. A gate lets jobs back
into the ready queue when it may let some through: as many as it has room for, when a
token is due (a timer), when a running job it counts ends (so a slot never leaks: a dead
worker's attempts end when its lease expires), when its breaker half-opens (one probe) or
closes (all), or when an admin changes it.

Running counts per type and tenant are kept for every type and tenant, limited or not, so a
limit an admin sets on a busy type counts its running jobs at once.
"""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from models.enums import Outcome
from scheduler.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    Change,
)
from scheduler.fairshare import ReadyEntry
from scheduler.limits import TypeLimits

#: ("breaker" | "type" | "tenant" | "pause", name)
GateKey = tuple[str, str]
BREAKER, TYPE, TENANT, PAUSE = "breaker", "type", "tenant", "pause"
#: The names of pause gates: everything, a job type's, a batch's.
PAUSE_ALL = "*"


def pause_of_type(job_type: str) -> GateKey:
    return (PAUSE, f"type:{job_type}")


def pause_of_batch(batch_id: uuid.UUID | str) -> GateKey:
    return (PAUSE, f"batch:{batch_id}")


@dataclass(frozen=True, slots=True)
class TypeRule:
    """A job type's limits as they apply now (the decorator's, or an admin's override).
    ``breaker``: its breaker policy (None: the default); ``breaker_enabled=False``: none."""

    rate: str | None = None
    max_running: int | None = None
    breaker: BreakerPolicy | None = None
    breaker_enabled: bool = True


@dataclass(frozen=True, slots=True)
class GateView:
    """One gate for monitoring and for the reasons the API shows."""

    kind: str
    name: str
    limit: str | None
    running: int
    held: int
    next_at: float | None
    reason: str | None
    state: str | None = None  # a breaker's


class Flow:
    def __init__(
        self,
        breaker_policy: BreakerPolicy | None = None,
        tenant_max_running: int | None = None,
    ) -> None:
        self.breaker_policy = breaker_policy or BreakerPolicy()
        self.tenant_default = tenant_max_running
        self.type_rules: dict[str, TypeRule] = {}
        self.tenant_rules: dict[str, int | None] = {}
        self.types: dict[str, TypeLimits] = {}
        self.tenants: dict[str, TypeLimits] = {}
        self.breakers: dict[str, Breaker] = {}
        self.running_type: Counter[str] = Counter()
        self.running_tenant: Counter[str] = Counter()
        self.held: dict[GateKey, list[ReadyEntry]] = {}
        self._timers: list[tuple[float, GateKey]] = []
        self._timer_at: dict[GateKey, float] = {}
        self._wake: set[GateKey] = set()
        #: Breaker changes since the shell last took them (to persist and publish).
        self.changes: list[Change] = []
        #: Pauses in force (an admin's or a batch owner's), with the reason their jobs show.
        self.pauses: dict[GateKey, str] = {}

    # -- what the pass asks -------------------------------------------------------------
    def blocked(
        self, job_type: str, tenant: str, now: float, batch_id: uuid.UUID | None = None
    ) -> GateKey | None:
        """The gate that holds a job of ``job_type``, ``tenant`` and ``batch_id`` now, or None
        (nothing taken either way). A pause comes first: it holds whatever else would."""
        if self.pauses:
            for key in self._pause_keys(job_type, batch_id):
                if key in self.pauses:
                    return key
        breaker = self.breakers.get(job_type)
        if breaker is not None and breaker.state is not BreakerState.CLOSED:
            ok, change = breaker.may_dispatch(now)
            self._note(change)
            if not ok:
                if breaker.state is BreakerState.OPEN and not breaker.forced:
                    self._timer(breaker.probe_at(), (BREAKER, job_type))
                return (BREAKER, job_type)
        gates = ((TYPE, job_type, self.types.get(job_type)), (TENANT, tenant, self._tenant(tenant)))
        for kind, name, limits in gates:
            if limits is None:
                continue
            held = limits.blocked(now)
            if held is not None:
                key = (kind, name)
                if held.next_at is not None:
                    self._timer(held.next_at, key)
                return key
        return None

    def hold(self, key: GateKey, entry: ReadyEntry) -> None:
        heapq.heappush(self.held.setdefault(key, []), entry)

    def started(self, job_id: uuid.UUID, job_type: str, tenant: str, now: float) -> None:
        """A job was placed: it takes its tokens and slots (and is the probe, half-open)."""
        self.running_type[job_type] += 1
        self.running_tenant[tenant] += 1
        if (limits := self.types.get(job_type)) is not None:
            limits.take(now)
        if (limits := self.tenants.get(tenant)) is not None:
            limits.take(now)
        if (breaker := self.breakers.get(job_type)) is not None:
            breaker.dispatched(job_id)

    def was_running(self, job_type: str, tenant: str) -> None:
        """At a rebuild: a job that runs now (it holds its slots; no token is taken)."""
        self.running_type[job_type] += 1
        self.running_tenant[tenant] += 1
        if (limits := self.types.get(job_type)) is not None:
            limits.restore(self.running_type[job_type])
        if (limits := self.tenants.get(tenant)) is not None:
            limits.restore(self.running_tenant[tenant])

    def stopped_running(self, job_type: str, tenant: str) -> None:
        """A running job is no longer running (it ended, or its dispatch reached no one):
        its slots come back."""
        _decrement(self.running_type, job_type)
        _decrement(self.running_tenant, tenant)
        for kind, name, limits in (
            (TYPE, job_type, self.types.get(job_type)),
            (TENANT, tenant, self.tenants.get(tenant)),
        ):
            if limits is not None:
                limits.finished()
                self._wake.add((kind, name))

    def ended(self, job_id: uuid.UUID, job_type: str, outcome: Outcome, now: float) -> None:
        """An attempt of ``job_type`` ended with ``outcome``: its breaker counts it."""
        rule = self.type_rules.get(job_type)
        if rule is not None and not rule.breaker_enabled:
            return
        breaker = self.breakers.get(job_type)
        if breaker is None:
            policy = (rule.breaker if rule is not None else None) or self.breaker_policy
            breaker = self.breakers[job_type] = Breaker(job_type, policy)
        self._note(breaker.finished(job_id, outcome, now))
        if breaker.state is BreakerState.HALF_OPEN and breaker.probe is None:
            self._wake.add((BREAKER, job_type))  # the probe said nothing: another one goes

    def release(self, now: float, live: Callable[[ReadyEntry], bool]) -> list[ReadyEntry]:
        """Held entries that may go now, back for the ready queue (as many as each gate has
        room for; stale ones are dropped on the way)."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, key = heapq.heappop(timers)
            if self._timer_at.get(key) == at:
                del self._timer_at[key]
            self._wake.add(key)
        if not self._wake:
            return []
        out: list[ReadyEntry] = []
        wake, self._wake = self._wake, set()
        for key in wake:
            queue = self.held.get(key)
            if not queue:
                continue
            room = self._room(key, now)
            let = len(queue) if room is None else room
            while queue and let > 0:
                entry = heapq.heappop(queue)
                if live(entry):
                    out.append(entry)
                    let -= 1
            if not queue:
                del self.held[key]
            else:
                self._rearm(key, now)
        return out

    def set_pauses(self, pauses: Mapping[GateKey, str]) -> None:
        """Every pause in force, with its reason: a pause lifted lets its jobs back."""
        for key in set(self.pauses) - set(pauses):
            self._wake.add(key)
        self.pauses = dict(pauses)

    @staticmethod
    def _pause_keys(job_type: str, batch_id: uuid.UUID | None) -> list[GateKey]:
        keys = [(PAUSE, PAUSE_ALL), pause_of_type(job_type)]
        if batch_id is not None:
            keys.append(pause_of_batch(batch_id))
        return keys

    def next_wakeup(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def reason(self, key: GateKey, now: float) -> str | None:
        """Why a job this gate holds waits, in the words users see."""
        kind, name = key
        if kind == PAUSE:
            return self.pauses.get(key)
        if kind == BREAKER:
            breaker = self.breakers.get(name)
            return breaker.reason(now) if breaker is not None else None
        limits = self.types.get(name) if kind == TYPE else self._tenant(name)
        if limits is None:
            return None
        held = limits.blocked(now)
        return held.reason() if held is not None else None

    # -- what admins and the shell set ---------------------------------------------------
    def set_type_rules(self, rules: Mapping[str, TypeRule], now: float) -> None:
        """The limits of every type that has some (the others have none)."""
        for name in set(self.type_rules) | set(rules):
            before, after = self.type_rules.get(name), rules.get(name)
            if before == after:
                continue
            keep = self.types.pop(name, None)
            if after is not None and (after.rate or after.max_running):
                limits = TypeLimits(
                    f"type {name}", rate=after.rate, max_running=after.max_running, now=now
                )
                if keep is not None and keep.rate_text == after.rate:
                    limits.bucket = keep.bucket  # the same rate keeps its tokens
                limits.restore(self.running_type[name])
                self.types[name] = limits
            breaker = self.breakers.get(name)
            if breaker is not None and after is not None and after.breaker is not None:
                breaker.policy = after.breaker
            self._wake.add((TYPE, name))
        self.type_rules = dict(rules)

    def set_tenant_rules(self, max_running: Mapping[str, int | None], default: int | None) -> None:
        """Each tenant's running limit (absent or None: ``default``; both None: unlimited)."""
        if dict(max_running) == self.tenant_rules and default == self.tenant_default:
            return
        self.tenant_rules, self.tenant_default = dict(max_running), default
        for name in set(self.tenants) | {k[1] for k in self.held if k[0] == TENANT}:
            limits = self.tenants.get(name)
            if limits is not None and limits.max_running != self._tenant_limit(name):
                del self.tenants[name]  # made again, with the new limit, when next asked
            self._wake.add((TENANT, name))

    def force_breaker(self, job_type: str, state: BreakerState | None, now: float) -> None:
        """An admin holds ``job_type``'s breaker open or closed (None: back to counting)."""
        breaker = self.breakers.get(job_type)
        if breaker is None:
            if state is None:
                return
            breaker = self.breakers[job_type] = Breaker(job_type, self._policy(job_type))
        if breaker.forced == (state is not None) and (state is None or breaker.state is state):
            return
        self._note(breaker.force(state, now))
        self._wake.add((BREAKER, job_type))

    def restore_breaker(self, job_type: str, record: BreakerRecord) -> None:
        """At a rebuild: the breaker as the last leader left it."""
        breaker = self.breakers[job_type] = Breaker(job_type, self._policy(job_type))
        breaker.restore(record)

    def take_changes(self) -> list[Change]:
        out, self.changes = self.changes, []
        return out

    def views(self, now: float) -> list[GateView]:
        """Every gate that limits something now, for monitoring and reasons."""
        out: list[GateView] = [
            GateView(PAUSE, key[1], None, 0, len(self.held.get(key, ())), None, why)
            for key, why in sorted(self.pauses.items())
        ]
        for name, breaker in sorted(self.breakers.items()):
            if breaker.state is BreakerState.CLOSED and not breaker.forced:
                continue
            held = len(self.held.get((BREAKER, name), ()))
            next_at = breaker.probe_at() if breaker.state is BreakerState.OPEN else None
            out.append(
                GateView(
                    BREAKER,
                    name,
                    None,
                    self.running_type[name],
                    held,
                    None if breaker.forced else next_at,
                    breaker.reason(now),
                    breaker.state.value,
                )
            )
        for kind, gates in ((TYPE, self.types), (TENANT, self.tenants)):
            for name, limits in sorted(gates.items()):
                held = len(self.held.get((kind, name), ()))
                why = limits.holding(now) if held else limits.blocked(now)
                out.append(
                    GateView(
                        kind,
                        name,
                        limits.describe(),
                        limits.running,
                        held,
                        why.next_at if why is not None else None,
                        why.reason() if why is not None else None,
                    )
                )
        return out

    # -- internals ----------------------------------------------------------------------
    def _policy(self, job_type: str) -> BreakerPolicy:
        rule = self.type_rules.get(job_type)
        return (rule.breaker if rule is not None else None) or self.breaker_policy

    def _tenant_limit(self, tenant: str) -> int | None:
        limit = self.tenant_rules.get(tenant)
        return limit if limit is not None else self.tenant_default

    def _tenant(self, tenant: str) -> TypeLimits | None:
        """The tenant's gate (made on first use: most tenants get the default)."""
        limits = self.tenants.get(tenant)
        if limits is None:
            limit = self._tenant_limit(tenant)
            if limit is None:
                return None
            limits = self.tenants[tenant] = TypeLimits(f"tenant {tenant}", max_running=limit)
            limits.restore(self.running_tenant[tenant])
        return limits

    def _room(self, key: GateKey, now: float) -> int | None:
        kind, name = key
        if kind == PAUSE:
            return 0 if key in self.pauses else None
        if kind == BREAKER:
            breaker = self.breakers.get(name)
            if breaker is None:
                return None
            ok, change = breaker.may_dispatch(now)
            self._note(change)
            if breaker.state is BreakerState.CLOSED:
                return None
            return 1 if ok else 0
        limits = self.types.get(name) if kind == TYPE else self._tenant(name)
        return None if limits is None else limits.room(now)

    def _rearm(self, key: GateKey, now: float) -> None:
        """A gate still holds jobs: wake it when it may let more through."""
        kind, name = key
        if kind == PAUSE:
            return  # woken when lifted
        if kind == BREAKER:
            breaker = self.breakers.get(name)
            if breaker is not None and breaker.state is BreakerState.OPEN and not breaker.forced:
                self._timer(breaker.probe_at(), key)
            return
        limits = (self.types if kind == TYPE else self.tenants).get(name)
        if limits is not None and limits.bucket is not None:
            self._timer(max(limits.bucket.next_at(now), now + 1.0 / limits.bucket.rate), key)

    def _timer(self, at: float, key: GateKey) -> None:
        known = self._timer_at.get(key)
        if known is not None and known <= at:
            return
        self._timer_at[key] = at
        heapq.heappush(self._timers, (at, key))

    def _note(self, change: Change | None) -> None:
        """Keep a breaker's change for the shell; wake its queue, or set the probe's timer."""
        if change is None:
            return
        self.changes.append(change)
        breaker = self.breakers.get(change.job_type)
        if change.after is not BreakerState.OPEN:
            self._wake.add((BREAKER, change.job_type))
        elif breaker is not None and not breaker.forced:
            self._timer(breaker.probe_at(), (BREAKER, change.job_type))


def _decrement(counter: Counter[str], key: str) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]
