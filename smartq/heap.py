"""Keep a process's long-lived objects out of the garbage collector's full passes.

A full collection walks every tracked object; in a process holding many of them for good
(the scheduler's rebuilt state, the API's imported modules, compiled statements and models) it
was a pause of 100 ms or more that landed on whatever was running: the scheduler pass or the
requests in flight. Frozen objects are never walked again, but are still freed when their last
reference goes; only reference cycles among them would linger until the process ends.
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """Collect once, then freeze what is left (again after a rebuild: unfreeze first)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
