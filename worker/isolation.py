"""Run an ``isolated=True`` job in a child process that can be killed at its deadline.

The child imports the job function by ``module:qualname`` (so it must be a module-level
function) and talks to the parent over one pipe: ``("log", level, message, ts)``,
``("progress", fraction, message)`` and ``("spawn", JobsSpawned)`` tuples, then one
``("end", Ending, maxrss_mb)``. A reader thread in the parent forwards the log lines to the
attempt's log (so they get their seq numbers there, after the parent's "started" line) and, once
the pipe closes and the child is reaped, resolves :attr:`ChildRun.ended`. A
:class:`~worker.memwatch.MemoryWatch` holds the child to the attempt's memory; a child that dies
without a result is classified by how (:func:`worker.outcomes.classify_failure`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import multiprocessing
import resource
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from models.enums import FailureClass, Outcome
from smartq.errors import ConfigurationError
from smartq.outbox import LoopHandoff
from smartq.registry import registry
from worker.context import AttemptLog, CancelFlag, JobContext, make_job_logger
from worker.memwatch import MemoryWatch
from worker.outcomes import Ending, call_sync, classify_failure, describe
from worker.spawn import Spawner

logger = logging.getLogger(__name__)

#: How long to wait for a killed child's pipe to close and for it to be reaped.
REAP_TIMEOUT = 5.0


def mp_context(method: str | None = None) -> BaseContext:
    """``forkserver`` where the platform has it (cheap children that still start clean, with
    this module preloaded), else ``spawn``. Never ``fork``: the worker has threads."""
    if method is None:
        available = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in available else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Only takes effect before the fork server starts; later calls are harmless.
        context.set_forkserver_preload([__name__])
    return context


def import_path(func: Callable[..., Any]) -> tuple[str, str]:
    """``(module, qualname)`` by which a child process can find ``func`` again."""
    module, qualname = func.__module__, func.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigurationError(
            f"isolated job function {module}.{qualname} must be defined at module level"
        )
    if _resolve(module, qualname) is not func:
        raise ConfigurationError(f"isolated job function is not importable as {module}.{qualname}")
    return module, qualname


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class ChildRun:
    """One attempt in one child process; :attr:`ended` resolves when the child is gone.

    ``memory_mb``: the RSS it is held to, sampled every ``watch_every`` seconds (None or 0:
    not watched)."""

    def __init__(
        self,
        context: BaseContext,
        log: AttemptLog,
        target: tuple[str, str],
        job: dict[str, Any],
        memory_mb: int | None = None,
        watch_every: float = 0.0,
    ) -> None:
        self.ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._handoff = LoopHandoff()
        self._handoff.bind()
        self._log = log
        self._memory_mb = memory_mb if watch_every > 0 else None
        self._watch_every = watch_every
        self._watch: MemoryWatch | None = None
        #: This worker sent the child a signal (a timeout, a cancel, a hand-back).
        self._signalled = False
        self._receiver, self._sender = context.Pipe(duplex=False)
        self._process = context.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(self._sender, target[0], target[1], job),
            name=f"smartq-job-{job['job_id']}-{job['attempt']}",
            daemon=True,  # dies with the worker rather than outliving it unsupervised
        )

    def start(self) -> None:
        """Blocking (it sends the child its arguments): call it through a thread."""
        self._process.start()
        self._sender.close()  # the pipe reports EOF once the child's end is the only one
        if self._memory_mb is not None:
            self._watch = MemoryWatch(self._process.pid, self._memory_mb, self._watch_every)
            self._watch.start()
        threading.Thread(
            target=self._read, name=f"{self._process.name}-reader", daemon=True
        ).start()

    async def stop(self, grace: float) -> None:
        """SIGTERM (the child's ctx.cancelled() becomes true), then SIGKILL after ``grace``."""
        if self.ended.done():
            return
        self._signalled = True
        self._process.terminate()
        done, _ = await asyncio.wait({self.ended}, timeout=grace)
        if not done:
            self._process.kill()
        await asyncio.wait({self.ended}, timeout=REAP_TIMEOUT)

    @property
    def memory_killed(self) -> bool:
        """The watchdog killed the child for going over its memory."""
        return self._watch is not None and self._watch.killed

    def _read(self) -> None:
        ending: Ending | None = None
        maxrss = 0
        try:
            while True:
                message = self._receiver.recv()
                if message[0] == "log":
                    self._log.write(message[1], message[2], message[3])
                elif message[0] == "progress":
                    self._log.progress(message[1], message[2])
                elif message[0] == "spawn":
                    self._log.spawned(message[1])
                elif message[0] == "end":
                    ending, maxrss = message[1], message[2]
        except (EOFError, OSError):
            pass
        except Exception:  # a message cut short by SIGKILL
            logger.warning(
                "bad message from job child process",
                exc_info=True,
                extra={"action": "child_message_error"},
            )
        finally:
            self._receiver.close()
        self._process.join(REAP_TIMEOUT)
        peak = maxrss
        if self._watch is not None:
            self._watch.stop()
            peak = max(peak, self._watch.peak_mb)
        if ending is None:
            ending = self._died()
        if peak:
            ending = dataclasses.replace(ending, peak_memory_mb=peak)
        self._handoff.resolve(self.ended, ending)  # dropped if the loop closed: nobody waits

    def _died(self) -> Ending:
        """The ending of a child that left no result: killed for memory, by a signal, or it
        exited."""
        code = self._process.exitcode
        signum = -code if code is not None and code < 0 else None
        kind = classify_failure(
            memory_killed=self.memory_killed, exit_signal=signum, signal_ours=self._signalled
        )
        if kind is FailureClass.MEMORY:
            assert self._watch is not None
            error = (
                f"killed for memory: its processes used {self._watch.peak_mb} MB, "
                f"over the {self._watch.limit_mb} MB it asked for"
            )
        elif signum is not None:
            error = f"job process killed by signal {_signal_name(signum)}"
        else:
            error = f"job process exited with code {code} without a result"
        return Ending(Outcome.FAILED, error=error, failure_class=kind)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def child_main(conn: Connection, module: str, qualname: str, job: dict[str, Any]) -> None:
    """Entry point of the child process."""
    lock = threading.Lock()

    def send(item: tuple[Any, ...]) -> None:
        with lock:  # the job may log from its own threads
            conn.send(item)

    def write(level: str, message: str, ts: datetime) -> None:
        send(("log", level, message, ts))

    ctx = JobContext(
        job_id=uuid.UUID(job["job_id"]),
        attempt=job["attempt"],
        name=job["name"],
        job_type=job["job_type"],
        worker_id=job["worker_id"],
        payload=job["payload"],
        log=make_job_logger(f"{job['job_id']}.{job['attempt']}", write),
        cancel_flag=CancelFlag(),
        report_progress=lambda fraction, message: send(("progress", fraction, message)),
        spawner=Spawner(
            uuid.UUID(job["job_id"]),
            job["attempt"],
            job["worker_id"],
            lambda jobs: send(("spawn", jobs)),
            registry,
        ),
    )
    signal.signal(signal.SIGTERM, lambda _signum, _frame: ctx.cancel_flag.set())
    try:
        func = _resolve(module, qualname)
    except Exception as exc:
        ending = Ending(
            Outcome.FAILED_PERMANENTLY,
            error=f"cannot import {module}.{qualname}: {describe(exc)}",
        )
    else:
        ending = call_sync(func, ctx)
    # The high-water mark of its own RSS (kB on Linux): a peak between the watchdog's samples.
    send(("end", ending, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
    conn.close()
