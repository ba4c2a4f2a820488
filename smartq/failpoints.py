"""Named crash points for the fault-injection tests (``SMARTQ_FAILPOINTS``).

``name`` kills the process with SIGKILL the first time execution reaches that point;
``name:N`` the N-th time. Off (an empty set) in production: one set lookup per point.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Iterable

log = logging.getLogger(__name__)


class Failpoints:
    def __init__(self, specs: Iterable[str]) -> None:
        self._at: dict[str, int] = {}
        for spec in specs:
            name, _, nth = spec.partition(":")
            self._at[name.strip()] = int(nth) if nth else 1
        self._hits: Counter[str] = Counter()

    def hit(self, name: str) -> None:
        if name not in self._at:
            return
        self._hits[name] += 1
        if self._hits[name] >= self._at[name]:
            log.critical(
                "failpoint reached: killing the process",
                extra={"action": "failpoint", "failpoint": name},
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
