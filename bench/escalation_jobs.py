"""The job type ``bench escalation`` needs beside the built-ins (its processes import this
module through ``SMARTQ_IMPORTS``): an isolated job that kills itself with a signal."""

from __future__ import annotations

import os
import signal

from smartq.registry import job
from worker.context import JobContext


@job("bench_self_kill", isolated=True)
def self_kill(ctx: JobContext) -> None:
    """SIGKILLs its own process: a signal its worker did not send."""
    os.kill(os.getpid(), signal.SIGKILL)
