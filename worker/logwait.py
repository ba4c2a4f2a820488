"""Holding an attempt's final report until the logger confirms its lines are stored, so an
attempt's end is never visible (on the stream or in the database) before its logs are.

The lines went out before the report, on the worker's log lane (flushed when a report is
held rather than after its linger); so once the report is sent, the lines are in every stream
queue ahead of the status event it causes, and in the database before the status is. A
worker that dies meanwhile loses the report as it would have lost it a moment before: the
scheduler's lease covers that. Reports come through the executor's hand-off, so everything
here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable

from models.messages import AttemptFinished, LogsStored, RunningAttempt

log = logging.getLogger("worker.service")
Key = tuple[uuid.UUID, int]
#: Confirmations kept for reports not held yet, at most.
EARLY_KEPT = 20_000


class ReportHold:
    """``send`` publishes a report; ``flush_lines`` sends the log lane now; ``wait_seconds``
    is read at each report (a setting that may change while the worker runs)."""

    def __init__(
        self,
        send: Callable[[AttemptFinished], None],
        flush_lines: Callable[[], None],
        wait_seconds: Callable[[], float],
    ) -> None:
        self._send = send
        self._flush_lines = flush_lines
        self._wait_seconds = wait_seconds
        #: Reports waiting for their confirmation, each with the timer that sends it anyway.
        self._held: dict[Key, tuple[AttemptFinished, asyncio.TimerHandle]] = {}
        self._none_held = asyncio.Event()
        self._none_held.set()
        #: Confirmations that came before their report was held: the last line may go out with
        #: the log lane's own flush while the report is still on its way from a job thread.
        self._early: OrderedDict[Key, int] = OrderedDict()
        #: False after a wait ended unconfirmed: reports stop waiting (a missing logger would
        #: otherwise add the whole wait to every job) until a confirmation comes again.
        self._logger_answers = True
        #: False once the worker stopped consuming (its confirmations could not arrive).
        self._holding = True

    def report(self, report: AttemptFinished) -> None:
        """Send ``report`` now, or once the logger confirms its attempt's lines."""
        wait = self._wait_seconds()
        if report.log_seq <= 0 or wait <= 0 or not self._logger_answers or not self._holding:
            self._send(report)
            return
        key = (report.job_id, report.attempt)
        if self._early.pop(key, 0) >= report.log_seq:
            self._send(report)
            return
        timer = asyncio.get_running_loop().call_later(wait, self._release, key, True)
        self._held[key] = (report, timer)
        self._none_held.clear()
        self._flush_lines()

    def stored(self, doc: LogsStored) -> None:
        """The logger's confirmation: send the reports it covers."""
        if not self._logger_answers:
            self._logger_answers = True
            log.info(
                "the logger confirms stored lines again; reports wait for it",
                extra={"action": "worker.logs_confirmed_again"},
            )
        for done in doc.attempts:
            key = (done.job_id, done.attempt)
            held = self._held.get(key)
            if held is None:
                self._early[key] = done.seq
                if len(self._early) > EARLY_KEPT:
                    self._early.popitem(last=False)
            elif done.seq >= held[0].log_seq:
                self._release(key)

    def attempts(self, running: set[Key]) -> list[RunningAttempt]:
        """Held attempts not in ``running``: still this worker's until their report is sent
        (a heartbeat without them would make the scheduler suspect them lost); they hold
        nothing."""
        return [
            RunningAttempt(job_id=r.job_id, attempt=r.attempt, cpu_units=0, memory_mb=0)
            for key, (r, _) in self._held.items()
            if key not in running
        ]

    async def settle(self, timeout: float) -> None:
        """For a stopping worker: wait up to ``timeout`` for the held reports' confirmations
        (while it still consumes); :meth:`stop_holding` sends the rest."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_held.wait(), timeout)

    def stop_holding(self) -> None:
        """No confirmation can arrive any more: send what is held, and report at once."""
        self._holding = False
        for key in list(self._held):
            self._release(key, timed_out=True)

    def _release(self, key: Key, timed_out: bool = False) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        report, timer = held
        timer.cancel()
        if timed_out and self._logger_answers:
            self._logger_answers = False
            log.warning(
                "the logger did not confirm an attempt's log lines in time; reporting anyway, "
                "and not waiting for it until it confirms again (an attempt's end may then be "
                "visible before its last lines are)",
                extra={
                    "action": "worker.logs_unconfirmed",
                    "job_id": str(report.job_id),
                    "attempt": report.attempt,
                    "seconds": self._wait_seconds(),
                },
            )
        self._send(report)
        if not self._held:
            self._none_held.set()
