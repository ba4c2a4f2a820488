"""An isolated job is held to its memory_mb by the worker's watchdog, and every failure is
classified on its report (real child processes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from models.enums import FailureClass, Outcome
from models.messages import AttemptFinished
from tests.unit import isolated_jobs
from tests.unit.test_executor import Collector, dispatch
from worker.executor import Executor


def watching(out: Collector, every: float = 0.05) -> Executor:
    """An executor of the isolated test types whose watchdog samples every ``every`` s."""
    sinks = {"report": out.report, "log_sink": out.sink}
    return Executor(isolated_jobs.reg, worker_id="w1", max_threads=2, memory_watch=every, **sinks)


@pytest.fixture
def out() -> Collector:
    return Collector()


@pytest.fixture
async def iso(out: Collector) -> AsyncIterator[Executor]:
    ex = watching(out)
    yield ex
    await ex.shutdown(0)


async def test_a_job_over_its_memory_is_killed_for_memory(iso: Executor) -> None:
    began = time.monotonic()
    finished = await iso.run(dispatch("iso_memory", {"mb": 400, "seconds": 5}, memory_mb=120))

    assert (finished.outcome, finished.failure_class) == (Outcome.FAILED, FailureClass.MEMORY)
    assert finished.peak_memory_mb is not None and finished.peak_memory_mb > 120
    assert "killed for memory" in (finished.error or "")
    assert "over the 120 MB it asked for" in (finished.error or "")
    assert time.monotonic() - began < 4  # killed as it grew, not at the end of its 5 s


async def test_a_job_within_its_memory_succeeds_with_its_peak(iso: Executor) -> None:
    finished = await iso.run(dispatch("iso_memory", {"mb": 64, "seconds": 0.1}, memory_mb=256))

    assert finished.outcome is Outcome.SUCCEEDED and finished.failure_class is None
    assert finished.result == {"mb": 64, "seconds": 0.1}
    assert finished.peak_memory_mb is not None and 64 < finished.peak_memory_mb <= 256


async def test_without_the_watchdog_nothing_holds_it(out: Collector) -> None:
    ex = watching(out, every=0)
    try:
        finished = await ex.run(dispatch("iso_memory", {"mb": 200, "seconds": 0}, memory_mb=64))
    finally:
        await ex.shutdown(0)
    assert finished.outcome is Outcome.SUCCEEDED
    assert finished.peak_memory_mb is not None and finished.peak_memory_mb > 200  # its own


@pytest.mark.parametrize(
    ("job_type", "fields", "outcome", "kind", "words"),
    [
        ("iso_self_kill", {}, Outcome.FAILED, FailureClass.SIGNAL, "killed by signal SIGKILL"),
        ("iso_memory_error", {}, Outcome.FAILED, FailureClass.MEMORY, "MemoryError"),
        ("iso_crash", {}, Outcome.FAILED, FailureClass.ERROR, "exited with code 3"),
        ("iso_fatal", {}, Outcome.FAILED_PERMANENTLY, FailureClass.ERROR, "bad input"),
        (
            "iso_sleep_forever",
            {"timeout_seconds": 0.5},
            Outcome.TIMED_OUT,
            FailureClass.TIMEOUT,
            "timed out",
        ),
        ("iso_add", {"payload": {"a": 1, "b": 2}}, Outcome.SUCCEEDED, None, None),
    ],
)
async def test_every_ending_is_classified(
    iso: Executor,
    job_type: str,
    fields: dict[str, object],
    outcome: Outcome,
    kind: FailureClass | None,
    words: str | None,
) -> None:
    payload = fields.pop("payload", None)
    finished = await iso.run(dispatch(job_type, payload, **fields))  # type: ignore[arg-type]

    assert (finished.outcome, finished.failure_class) == (outcome, kind)
    assert words is None or words in (finished.error or "")


@pytest.mark.parametrize(
    "payload",
    [{}, {"mb": "300"}, {"mb": 1.5}, {"mb": -1}, {"mb": True}, {"mb": 1, "seconds": "x"}],
)
async def test_the_memory_type_refuses_a_bad_payload(
    iso: Executor, payload: dict[str, object]
) -> None:
    finished = await iso.run(dispatch("iso_memory", payload))

    assert finished.outcome is Outcome.FAILED_PERMANENTLY
    assert (finished.error or "").startswith("NonRetryableError: memory: '")


def test_an_old_report_without_a_class_still_decodes() -> None:
    old = (
        b'{"v": 1, "type": "attempt.finished", "job_id": "00000000-0000-0000-0000-000000000001",'
        b' "attempt": 1, "worker_id": "w", "outcome": "failed",'
        b' "started_at": "2026-12-02T10:00:00Z", "finished_at": "2026-12-02T10:00:01Z"}'
    )
    report = AttemptFinished.model_validate_json(old)
    assert (report.failure_class, report.peak_memory_mb) == (None, None)
