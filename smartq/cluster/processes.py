"""The cluster's processes: started detached (their own session, output to a log file), known
afterwards by pid alone, so ``up``, ``status`` and ``down`` may run as separate commands."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The processes this process started, kept so they are reaped (and not warned about) here;
#: those of an earlier command are known by pid alone.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> int:
    """Start ``argv`` detached; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a child of ours that ended is reaped and counts as dead)."""
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop(pids: Sequence[int], timeout: float = 10) -> list[int]:
    """SIGTERM every pid at once, SIGKILL those left after ``timeout``; returns the killed."""
    for pid in pids:
        signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if alive(p)]
    for pid in killed:
        signal_pid(pid, signal.SIGKILL)
    for pid in pids:
        if (proc := _children.pop(pid, None)) is not None:
            proc.wait(10)
    return killed
