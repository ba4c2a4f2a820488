"""What a path of the fault proxy does to its traffic (Toxiproxy's "toxics"), as a value.

* ``latency_ms`` — every chunk waits this long, in both directions (order kept).
* ``stall`` — nothing is forwarded, nothing is closed: both TCP connections stay open, as behind
  a hung middlebox. New connections are accepted and held.
* ``reset_peer`` — the probability, per connection and second, that a connection is reset (RST
  to both ends); ``1`` resets every connection at once and every new one as it comes.
* ``down`` — the listener is closed (new connections are refused) and every open one is reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from smartq.errors import SmartqError


class ToxicError(SmartqError):
    """A toxic that does not exist, or a value it cannot take."""


@dataclass(frozen=True)
class Toxics:
    latency_ms: float = 0.0
    stall: bool = False
    reset_peer: float = 0.0
    down: bool = False

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ToxicError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if not 0 <= self.reset_peer <= 1:
            raise ToxicError(f"reset_peer is a probability (0 to 1), not {self.reset_peer}")

    @property
    def delay(self) -> float:
        """The latency in seconds."""
        return self.latency_ms / 1000

    @property
    def clean(self) -> bool:
        return self == Toxics()

    def changed(self, changes: Mapping[str, Any]) -> Toxics:
        """A copy with ``changes`` (a JSON object of some of the fields) applied."""
        known = set(asdict(self))
        unknown = set(changes) - known
        if unknown:
            raise ToxicError(f"unknown toxics {sorted(unknown)}; known: {sorted(known)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("stall", "down"):
                if not isinstance(value, bool):
                    raise ToxicError(f"{name} is true or false, not {value!r}")
                typed[name] = value
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ToxicError(f"{name} is a number, not {value!r}")
            else:
                typed[name] = float(value)
        return replace(self, **typed)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
