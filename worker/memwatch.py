"""The memory watchdog of an isolated job: its child process (and whatever that starts) is held
to the attempt's ``memory_mb``.

Choices:

* RSS, summed over the child and its descendants, sampled every ``every`` seconds (0.05 by
  default) from ``/proc`` through psutil: it works on any Linux, cgroup v1 or v2, root or not.
  ``RLIMIT_AS`` is no substitute (it limits address space, and CPython reserves far more than it
  touches), and ``memory.max`` needs a delegated cgroup v2 tree.
* RSS counts what the process has resident, the interpreter's own ~30 MB included: the memory
  a machine really gives it, as Slurm's and Kubernetes' accounting count it.
* Above the limit the whole tree gets SIGKILL: a job over its memory cannot be asked to stop
  politely, it is taking memory from its neighbours. The sample that crossed is the peak the
  scheduler sizes the retry from; between samples a job may briefly overshoot, which only makes
  the next ask larger.
* The list of descendants is refreshed every :data:`TREE_SECONDS` (a scan of every process),
  their RSS at every sample (one small read each).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time

import psutil

#: How often the descendants of the child are looked for again.
TREE_SECONDS = 0.5
_MB = 1 << 20


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:  # gone, a zombie, or not ours to read
        return 0


class MemoryWatch:
    """Samples the RSS of process ``pid`` and its descendants every ``every`` seconds in a
    thread of its own, and kills them all once it is above ``limit_mb``."""

    def __init__(self, pid: int, limit_mb: int, every: float) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.every = every
        #: The largest sample, in MB (rounded up).
        self.peak_mb = 0
        #: Set before the kill is sent, so whoever reaps the child knows why it died.
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"smartq-memwatch-{pid}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the child is gone); returns once the thread has."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        tree: list[psutil.Process] = [root]
        rescan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= rescan:
                tree = [root, *self._descendants(root)]
                rescan = now + TREE_SECONDS
            used = math.ceil(sum(_rss(p) for p in tree) / _MB)
            self.peak_mb = max(self.peak_mb, used)
            if used > self.limit_mb:
                self.killed = True
                self._kill(tree)
                return
            self._stop.wait(self.every)

    @staticmethod
    def _descendants(root: psutil.Process) -> list[psutil.Process]:
        try:
            return list(root.children(recursive=True))
        except psutil.Error:
            return []

    def _kill(self, tree: list[psutil.Process]) -> None:
        for process in [*self._descendants(tree[0]), *tree]:
            with contextlib.suppress(psutil.Error):
                process.kill()
