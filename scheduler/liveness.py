"""Which workers are alive, from what the scheduler heard (pure: the clock is an argument).

Rules:

* A worker is heard by its heartbeats; silent for longer than ``lease`` seconds, it is
  offline (:meth:`Liveness.expired` returns it once, and forgets it).
* Silence proves nothing while the scheduler cannot hear anyone: the scheduler sends itself a
  probe through the broker every heartbeat period, and while no probe has come back for
  ``deaf_after`` seconds, nobody expires. When probes come back after such a gap, every
  worker's lease starts afresh (:meth:`Liveness.probe_back`): their heartbeats were as lost as
  the probes.
* A worker known only from the database (at a rebuild) gets one lease from that moment to be
  heard (:meth:`Liveness.remember`); one that said goodbye is forgotten at once.
"""

from __future__ import annotations


class Liveness:
    def __init__(self, lease: float, deaf_after: float, now: float) -> None:
        self.lease = lease
        self.deaf_after = deaf_after
        self._last_seen: dict[str, float] = {}
        self._last_probe = now

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._last_seen

    def heard(self, worker_id: str, now: float) -> None:
        """A heartbeat of the worker arrived."""
        self._last_seen[worker_id] = now

    def remember(self, worker_id: str, now: float) -> None:
        """A worker known from elsewhere: it has a lease from ``now`` to be heard (unless it
        already has a later one)."""
        self._last_seen.setdefault(worker_id, now)

    def forget(self, worker_id: str) -> None:
        """The worker said goodbye: it can no longer expire."""
        self._last_seen.pop(worker_id, None)

    def restart(self, now: float) -> None:
        """Every lease starts afresh (a new leader: it heard nobody yet)."""
        self._last_probe = now
        self._renew(now)

    def probe_back(self, now: float) -> bool:
        """A probe came back. True when it ends a deaf gap (leases then restart)."""
        gap = now - self._last_probe > self.deaf_after
        if gap:
            self._renew(now)
        self._last_probe = now
        return gap

    def _renew(self, now: float) -> None:
        for worker_id, seen in self._last_seen.items():
            self._last_seen[worker_id] = max(seen, now)

    def deaf(self, now: float) -> bool:
        """No probe came back for ``deaf_after``: nobody can be heard right now."""
        return now - self._last_probe > self.deaf_after

    def expired(self, now: float) -> list[str]:
        """Workers silent past their lease (forgotten as they are returned); none while deaf."""
        if self.deaf(now):
            return []
        gone = sorted(w for w, seen in self._last_seen.items() if now - seen > self.lease)
        for worker_id in gone:
            del self._last_seen[worker_id]
        return gone
