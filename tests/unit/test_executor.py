"""The executor runs one attempt of real job functions and reports how it ended."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import worker.builtin_jobs  # noqa: F401  (registers the built-in types)
from models.enums import Outcome
from models.messages import (
    AttemptFinished,
    AttemptStarted,
    Dispatch,
    LogLine,
    ResourcesReleased,
)
from smartq.errors import NonRetryableError, Retry, RetryableError
from smartq.registry import Registry, job, registry
from tests.unit import isolated_jobs
from worker.context import JobContext
from worker.executor import SHUTDOWN_REASON, Executor, Report
from worker.outcomes import Ending
from worker.verdict import STILL_RUNNING, Stop, Why, end_line, stopped, why_ended

reg = Registry()
thread_events: dict[str, threading.Event] = {}


@job("add", into=reg)
def add(ctx: JobContext) -> dict[str, int]:
    ctx.log.info("adding %s and %s", ctx.payload["a"], ctx.payload["b"])
    return {"sum": ctx.payload["a"] + ctx.payload["b"]}


@job("async_add", into=reg)
async def async_add(ctx: JobContext) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"sum": ctx.payload["a"] + ctx.payload["b"]}


@job("raise", into=reg)
def raise_(ctx: JobContext) -> None:
    kind = ctx.payload["kind"]
    if kind == "value":
        raise ValueError("boom")
    if kind == "retryable":
        raise RetryableError("try again")
    if kind == "fatal":
        raise NonRetryableError("never works")
    if kind == "retry":
        raise Retry(5.0)
    raise TimeoutError("my own timeout")


@job("async_raise", into=reg)
async def async_raise(ctx: JobContext) -> None:
    raise KeyError("missing")


@job("not_json", into=reg)
def not_json(ctx: JobContext) -> dict[str, object]:
    return {"ids": {1, 2}}


@job("async_forever", into=reg)
async def async_forever(ctx: JobContext) -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        thread_events[ctx.payload["key"]].set()


@job("stubborn", timeout=0.2, into=reg)
def stubborn(ctx: JobContext) -> None:
    """Ignores the cancel flag for ``seconds``, then records what it saw."""
    time.sleep(ctx.payload["seconds"])
    if ctx.cancelled():
        thread_events[ctx.payload["key"]].set()


@job("cooperative", into=reg)
def cooperative(ctx: JobContext) -> None:
    while not ctx.sleep(0.01):
        pass
    thread_events[ctx.payload["key"]].set()


@job("quick_async", into=reg)
async def quick_async(ctx: JobContext) -> str:
    await asyncio.sleep(0.05)
    return "done"


class Collector:
    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.lines: list[LogLine] = []
        self._lock = threading.Lock()

    def report(self, report: Report) -> None:
        self.reports.append(report)

    def sink(self, line: LogLine) -> None:
        with self._lock:
            self.lines.append(line)

    def of(self, kind: type[Any]) -> list[Any]:
        return [r for r in self.reports if isinstance(r, kind)]

    def messages(self, job_id: uuid.UUID | None = None) -> list[str]:
        return [ln.message for ln in self.lines if job_id is None or ln.job_id == job_id]


def dispatch(job_type: str, payload: dict[str, Any] | None = None, **fields: Any) -> Dispatch:
    values: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "attempt": 1,
        "worker_id": "w1",
        "job_type": job_type,
        "name": f"test-{job_type}",
        "payload": payload or {},
        "cpu_units": 1,
        "memory_mb": 64,
        "dispatched_at": datetime.now(UTC),
    }
    values.update(fields)
    return Dispatch(**values)


def new_event() -> str:
    key = uuid.uuid4().hex
    thread_events[key] = threading.Event()
    return key


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def out() -> Collector:
    return Collector()


@pytest.fixture
async def executor(out: Collector) -> AsyncIterator[Executor]:
    ex = Executor(
        reg, worker_id="w1", report=out.report, log_sink=out.sink, max_threads=4, cancel_grace=0.3
    )
    yield ex
    await ex.shutdown(0)


# -- classification -------------------------------------------------------------------------


async def test_success_reports_start_result_and_log_lines(
    executor: Executor, out: Collector
) -> None:
    d = dispatch("add", {"a": 2, "b": 3}, attempt=2)
    finished = await executor.run(d)

    assert finished.outcome is Outcome.SUCCEEDED
    assert finished.result == {"sum": 5}
    assert finished.released and finished.error is None
    assert [type(r) for r in out.reports] == [AttemptStarted, AttemptFinished]
    assert out.reports[-1] == finished
    assert finished.started_at <= finished.finished_at
    assert [ln.seq for ln in out.lines] == [1, 2, 3]
    assert all((ln.job_id, ln.attempt) == (d.job_id, 2) for ln in out.lines)
    assert out.messages() == [
        "started attempt 2 on worker w1",
        "adding 2 and 3",
        out.lines[2].message,
    ]
    assert re.fullmatch(r"succeeded in \d+\.\d\ds", out.lines[2].message)
    assert executor.running() == []


async def test_async_success(executor: Executor) -> None:
    finished = await executor.run(dispatch("async_add", {"a": 1, "b": 1}))
    assert (finished.outcome, finished.result) == (Outcome.SUCCEEDED, {"sum": 2})


@pytest.mark.parametrize(
    ("kind", "outcome", "error", "retry_after"),
    [
        ("value", Outcome.FAILED, "ValueError: boom", None),
        ("retryable", Outcome.FAILED, "RetryableError: try again", None),
        ("fatal", Outcome.FAILED_PERMANENTLY, "NonRetryableError: never works", None),
        ("retry", Outcome.RETRY_REQUESTED, "Retry: retry requested in 5.0s", 5.0),
        ("timeout", Outcome.FAILED, "TimeoutError: my own timeout", None),
    ],
)
async def test_errors_are_classified(
    executor: Executor,
    out: Collector,
    kind: str,
    outcome: Outcome,
    error: str,
    retry_after: float | None,
) -> None:
    finished = await executor.run(dispatch("raise", {"kind": kind}))
    assert (finished.outcome, finished.error, finished.retry_after) == (
        outcome,
        error,
        retry_after,
    )
    end = out.lines[-1]
    assert error in end.message
    # Only an unexpected exception gets its traceback logged, at error level.
    assert ("Traceback (most recent call last)" in end.message) == (kind in {"value", "timeout"})
    if kind in {"value", "timeout", "fatal"}:
        assert end.level == "error"


async def test_async_unexpected_error_logs_traceback(executor: Executor, out: Collector) -> None:
    finished = await executor.run(dispatch("async_raise"))
    assert (finished.outcome, finished.error) == (Outcome.FAILED, "KeyError: 'missing'")
    assert out.lines[-1].level == "error"
    assert out.lines[-1].message.startswith("failed after ")
    assert "Traceback" in out.lines[-1].message and "async_raise" in out.lines[-1].message


async def test_non_json_result_fails_permanently(executor: Executor) -> None:
    finished = await executor.run(dispatch("not_json"))
    assert finished.outcome is Outcome.FAILED_PERMANENTLY
    assert finished.error is not None
    assert finished.error.startswith("result is not JSON-serialisable: ")


async def test_unknown_job_type_fails_permanently(executor: Executor, out: Collector) -> None:
    finished = await executor.run(dispatch("nope"))
    assert finished.outcome is Outcome.FAILED_PERMANENTLY
    assert "unknown job type 'nope'" in (finished.error or "")
    assert out.of(AttemptStarted) == []


# -- timeouts -------------------------------------------------------------------------------


async def test_async_timeout_cancels_the_task_at_the_deadline(executor: Executor) -> None:
    key = new_event()
    began = time.monotonic()
    finished = await executor.run(dispatch("async_forever", {"key": key}, timeout_seconds=0.3))
    took = time.monotonic() - began

    assert (finished.outcome, finished.error) == (Outcome.TIMED_OUT, "timed out after 0.3s")
    assert finished.released
    assert thread_events[key].is_set()  # the task really stopped
    assert 0.3 <= took < 1.3


async def test_thread_timeout_reports_at_once_then_releases(
    executor: Executor, out: Collector
) -> None:
    key = new_event()
    d = dispatch("stubborn", {"seconds": 0.8, "key": key})  # the type's own timeout: 0.2 s
    began = time.monotonic()
    finished = await executor.run(d)

    assert time.monotonic() - began < 0.6  # reported at the deadline, not when the thread ends
    assert (finished.outcome, finished.released) == (Outcome.TIMED_OUT, False)
    assert finished.error == "timed out after 0.2s"
    assert [r.job_id for r in executor.running()] == [d.job_id]  # still holds its resources
    assert not executor.cancel(d.job_id, 1)  # already reported: nothing left to cancel

    await eventually(lambda: bool(out.of(ResourcesReleased)))
    assert time.monotonic() - began >= 0.8
    assert [type(r) for r in out.reports] == [AttemptStarted, AttemptFinished, ResourcesReleased]
    assert executor.running() == []
    assert thread_events[key].is_set()  # the thread saw ctx.cancelled()
    assert out.messages()[-1].startswith("thread returned after")
    assert [ln.seq for ln in out.lines] == list(range(1, len(out.lines) + 1))


async def test_dispatch_timeout_overrides_the_type_default(executor: Executor) -> None:
    finished = await executor.run(
        dispatch("stubborn", {"seconds": 0.05, "key": new_event()}, timeout_seconds=5)
    )
    assert finished.outcome is Outcome.SUCCEEDED


# -- cancellation ---------------------------------------------------------------------------


async def test_cancel_async_job(executor: Executor, out: Collector) -> None:
    key = new_event()
    d = dispatch("async_forever", {"key": key})
    task = executor.submit(d)
    await eventually(lambda: bool(out.of(AttemptStarted)))

    assert not executor.cancel(d.job_id, 2)  # another attempt: fenced off
    assert not executor.cancel(uuid.uuid4(), 1)
    began = time.monotonic()
    assert executor.cancel(d.job_id, 1, reason="user asked")
    finished = await task

    assert time.monotonic() - began < 1.0
    assert (finished.outcome, finished.error, finished.released) == (
        Outcome.CANCELLED,
        "user asked",
        True,
    )
    assert thread_events[key].is_set()
    assert out.messages()[-1].startswith("cancelled after")


async def test_cancel_cooperative_thread_job(executor: Executor, out: Collector) -> None:
    key = new_event()
    d = dispatch("cooperative", {"key": key})
    task = executor.submit(d)
    await eventually(lambda: bool(out.of(AttemptStarted)))
    assert executor.cancel(d.job_id, 1)
    finished = await task

    assert (finished.outcome, finished.released) == (Outcome.CANCELLED, True)
    assert thread_events[key].is_set()
    assert out.of(ResourcesReleased) == []
    assert executor.running() == []


async def test_cancel_stubborn_thread_job_releases_later(
    executor: Executor, out: Collector
) -> None:
    d = dispatch("stubborn", {"seconds": 0.6, "key": new_event()}, timeout_seconds=10)
    task = executor.submit(d)
    await eventually(lambda: bool(out.of(AttemptStarted)))
    executor.cancel(d.job_id, 1)
    finished = await task

    assert (finished.outcome, finished.released) == (Outcome.CANCELLED, False)
    assert len(executor.running()) == 1
    await eventually(lambda: bool(out.of(ResourcesReleased)))
    assert executor.running() == []


async def test_redelivered_dispatch_runs_once(executor: Executor, out: Collector) -> None:
    d = dispatch("quick_async")
    first, second = executor.submit(d), executor.submit(d)
    assert first is second
    await first
    assert len(out.of(AttemptFinished)) == 1


# -- isolated jobs --------------------------------------------------------------------------


@pytest.fixture
async def iso(out: Collector) -> AsyncIterator[Executor]:
    ex = Executor(
        isolated_jobs.reg,
        worker_id="w1",
        report=out.report,
        log_sink=out.sink,
        max_threads=2,
        kill_grace=0.3,
    )
    yield ex
    await ex.shutdown(0)


def child_pid(out: Collector) -> int:
    for message in out.messages():
        if match := re.fullmatch(r"child pid (\d+)", message):
            return int(match.group(1))
    raise AssertionError("the child logged no pid")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_isolated_job_result_and_child_log_lines(iso: Executor, out: Collector) -> None:
    finished = await iso.run(dispatch("iso_add", {"a": 4, "b": 5}))

    assert (finished.outcome, finished.result) == (Outcome.SUCCEEDED, {"sum": 9})
    assert child_pid(out) != os.getpid()
    assert [ln.seq for ln in out.lines] == [1, 2, 3, 4]
    assert [ln.level for ln in out.lines] == ["info", "info", "warning", "info"]
    assert out.messages()[2] == "adding {'a': 4, 'b': 5}"
    assert out.messages()[3].startswith("succeeded in")


async def test_isolated_job_killed_at_deadline(iso: Executor, out: Collector) -> None:
    began = time.monotonic()
    finished = await iso.run(dispatch("iso_sleep_forever", timeout_seconds=1.0))
    took = time.monotonic() - began

    assert (finished.outcome, finished.released) == (Outcome.TIMED_OUT, True)
    assert 1.0 <= took < 2.0  # deadline + SIGTERM grace (0.3 s) + reaping
    assert gone(child_pid(out))
    assert iso.running() == []


async def test_isolated_job_cancel_sets_flag_via_sigterm(iso: Executor, out: Collector) -> None:
    d = dispatch("iso_cooperative")
    task = iso.submit(d)
    await eventually(lambda: any(m.startswith("child pid") for m in out.messages()))
    iso.cancel(d.job_id, 1)
    finished = await task

    assert (finished.outcome, finished.released) == (Outcome.CANCELLED, True)
    assert "saw the cancel flag" in out.messages()
    assert gone(child_pid(out))


async def test_isolated_errors(iso: Executor) -> None:
    fatal = await iso.run(dispatch("iso_fatal"))
    assert (fatal.outcome, fatal.error) == (
        Outcome.FAILED_PERMANENTLY,
        "NonRetryableError: bad input",
    )
    crash = await iso.run(dispatch("iso_crash"))
    assert crash.outcome is Outcome.FAILED
    assert "exited with code 3" in (crash.error or "")


async def test_isolated_function_must_be_module_level(out: Collector) -> None:
    local = Registry()

    @job("local", isolated=True, into=local)
    def local_job(ctx: JobContext) -> None:
        return None

    ex = Executor(local, worker_id="w1", report=out.report, log_sink=out.sink, max_threads=1)
    finished = await ex.run(dispatch("local"))
    assert finished.outcome is Outcome.FAILED_PERMANENTLY
    assert "module level" in (finished.error or "")
    await ex.shutdown(0)


# -- shutdown -------------------------------------------------------------------------------


async def test_shutdown_hands_back_unfinished_attempts(executor: Executor, out: Collector) -> None:
    quick = dispatch("quick_async")
    slow_async = dispatch("async_forever", {"key": new_event()})
    slow_thread = dispatch("cooperative", {"key": new_event()})
    tasks = [executor.submit(d) for d in (quick, slow_async, slow_thread)]
    await eventually(lambda: len(out.of(AttemptStarted)) == 3)

    began = time.monotonic()
    await executor.shutdown(0.3)
    assert time.monotonic() - began < 1.5
    assert all(t.done() for t in tasks)
    by_job = {f.job_id: f for f in out.of(AttemptFinished)}
    assert by_job[quick.job_id].outcome is Outcome.SUCCEEDED
    for d in (slow_async, slow_thread):
        assert (by_job[d.job_id].outcome, by_job[d.job_id].error) == (
            Outcome.HANDED_BACK,
            SHUTDOWN_REASON,
        )
        assert SHUTDOWN_REASON in out.messages(d.job_id)
    assert executor.running() == []

    late = await executor.run(dispatch("add", {"a": 1, "b": 1}))
    assert late.outcome is Outcome.HANDED_BACK  # taken no more: handed straight back


# -- the built-in job types -----------------------------------------------------------------


@pytest.fixture
async def builtin(out: Collector) -> AsyncIterator[Executor]:
    ex = Executor(registry, worker_id="w1", report=out.report, log_sink=out.sink, max_threads=2)
    yield ex
    await ex.shutdown(0)


async def test_builtin_noop_sleep_cpu(builtin: Executor) -> None:
    noop = await builtin.run(dispatch("noop"))
    assert (noop.outcome, noop.result) == (Outcome.SUCCEEDED, None)
    slept = await builtin.run(dispatch("sleep", {"seconds": 0.05}))
    assert (slept.outcome, slept.result) == (Outcome.SUCCEEDED, {"slept": 0.05})
    cpu = await builtin.run(dispatch("cpu", {"seconds": 0.05}))
    assert cpu.outcome is Outcome.SUCCEEDED and cpu.result["loops"] > 0


@pytest.mark.parametrize(
    ("payload", "attempt", "outcome"),
    [
        ({"fail_times": 2}, 1, Outcome.FAILED),
        ({"fail_times": 2}, 2, Outcome.FAILED),
        ({"fail_times": 2}, 3, Outcome.SUCCEEDED),
        ({"fail_times": 1, "retryable": False}, 1, Outcome.FAILED_PERMANENTLY),
        ({"fail_times": -1}, 9, Outcome.FAILED),
    ],
)
async def test_builtin_flaky(
    builtin: Executor, payload: dict[str, Any], attempt: int, outcome: Outcome
) -> None:
    finished = await builtin.run(dispatch("flaky", payload, attempt=attempt))
    assert finished.outcome is outcome
    if outcome is Outcome.SUCCEEDED:
        assert finished.result == {"succeeded_on_attempt": attempt}
    else:
        assert finished.error is not None and finished.error.startswith("RetryableError: ") == (
            payload.get("retryable", True)
        )


async def test_builtin_log_emits_n_lines(builtin: Executor, out: Collector) -> None:
    finished = await builtin.run(dispatch("log", {"lines": 3}))
    assert finished.result == {"lines": 3}
    assert out.messages()[1:4] == ["line 1 of 3", "line 2 of 3", "line 3 of 3"]
    assert [ln.seq for ln in out.lines] == [1, 2, 3, 4, 5]


async def test_a_job_that_returned_before_the_cancel_succeeds(
    executor: Executor, out: Collector
) -> None:
    """The function returned, then a cancel arrived before the executor woke up to see the
    return: its work happened, so the attempt succeeded (not cancelled)."""
    d = dispatch("add", {"a": 1, "b": 2})
    task = executor.submit(d)
    await asyncio.sleep(0)  # the attempt is handed to a thread
    time.sleep(0.3)  # noqa: ASYNC251  (block the loop on purpose: the thread returns unobserved)
    assert executor.cancel(d.job_id, 1)
    finished = await task
    assert finished.outcome is Outcome.SUCCEEDED


# -- the verdict, as tables -----------------------------------------------------------------

CANCEL_AT_5 = Stop(Outcome.CANCELLED, "cancelled by user", asked=5.0)
HAND_BACK_AT_5 = Stop(Outcome.HANDED_BACK, SHUTDOWN_REASON, asked=5.0)


@pytest.mark.parametrize(
    ("job_done", "returned", "stop", "stop_seen", "why"),
    [
        (True, 4.0, None, False, "done"),  # returned, nothing else happened
        (True, 4.0, CANCEL_AT_5, True, "done"),  # returned before the stop: its work happened
        (True, 5.0, CANCEL_AT_5, True, "done"),  # returned as the stop was asked
        (True, 6.0, CANCEL_AT_5, True, "stop"),  # returned after the stop: it saw the flag
        (True, 6.0, CANCEL_AT_5, False, "stop"),  # stop asked while the wait was waking up
        (True, None, CANCEL_AT_5, False, "stop"),  # a child process: no return time, stopped
        (True, None, None, False, "done"),  # a child process that ended on its own
        (False, None, CANCEL_AT_5, True, "stop"),
        (False, None, None, True, "stop"),  # the flag fired with no request recorded
        (False, None, None, False, "timeout"),
    ],
)
def test_why_an_attempt_ended(
    job_done: bool, returned: float | None, stop: Stop | None, stop_seen: bool, why: Why
) -> None:
    assert why_ended(job_done=job_done, returned=returned, stop=stop, stop_seen=stop_seen) == why


@pytest.mark.parametrize(
    ("why", "stop", "limit", "released", "ending"),
    [
        ("timeout", None, 0.3, True, Ending(Outcome.TIMED_OUT, error="timed out after 0.3s")),
        (
            "timeout",
            CANCEL_AT_5,  # the deadline is what the wait saw: it counts
            2.0,
            False,
            Ending(Outcome.TIMED_OUT, error="timed out after 2s", released=False),
        ),
        ("stop", CANCEL_AT_5, None, True, Ending(Outcome.CANCELLED, error="cancelled by user")),
        ("stop", HAND_BACK_AT_5, 1.0, True, Ending(Outcome.HANDED_BACK, error=SHUTDOWN_REASON)),
        (
            "stop",
            Stop(Outcome.LOST, "", asked=1.0),
            None,
            False,
            Ending(Outcome.LOST, error="cancelled", released=False),
        ),
        ("stop", None, None, True, Ending(Outcome.CANCELLED, error="cancelled")),
    ],
)
def test_the_ending_of_a_stopped_attempt(
    why: Why, stop: Stop | None, limit: float | None, released: bool, ending: Ending
) -> None:
    assert stopped(why, stop, limit, released=released) == ending


@pytest.mark.parametrize(
    ("ending", "level", "text"),
    [
        (Ending(Outcome.SUCCEEDED, result=1), "info", "succeeded in 1.50s"),
        (Ending(Outcome.FAILED, error="E: x"), "warning", "failed after 1.50s: E: x"),
        (
            Ending(Outcome.FAILED, error="ValueError: boom", traceback="Traceback ..."),
            "error",
            "failed after 1.50s: ValueError: boom\nTraceback ...",
        ),
        (
            Ending(Outcome.FAILED_PERMANENTLY, error="E: x"),
            "error",
            "failed permanently after 1.50s: E: x",
        ),
        (
            Ending(Outcome.RETRY_REQUESTED, error="Retry: later", retry_after=5.0),
            "warning",
            "retry requested in 5s after 1.50s: Retry: later",
        ),
        (Ending(Outcome.CANCELLED, error="by user"), "warning", "cancelled after 1.50s: by user"),
        (Ending(Outcome.TIMED_OUT, error="timed out after 1s"), "error", "timed out after 1s"),
        (
            Ending(Outcome.TIMED_OUT, error="timed out after 1s", released=False),
            "error",
            "timed out after 1s" + STILL_RUNNING,
        ),
        (Ending(Outcome.HANDED_BACK, error=SHUTDOWN_REASON), "warning", SHUTDOWN_REASON),
        (Ending(Outcome.LOST), "warning", Outcome.LOST.value),
    ],
)
def test_the_end_line_of_an_attempt(ending: Ending, level: str, text: str) -> None:
    assert end_line(ending, 1.5) == (level, text)
