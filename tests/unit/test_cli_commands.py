"""The user CLI's pure parts, as tables: DAG files, payloads, what ``explain`` concludes (from
the scheduler's own reason wording), the watch's tracker, exit codes, plain rendering; and the
mistakes ``smartq submit`` refuses before it talks to any server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from models.enums import JobStatus
from scheduler.reasons import never_fits_reason, type_missing_reason, upstream_reason
from scheduler.values import WorkerView
from smartq import errors
from smartq.callbacks import EVENT_NAMES
from smartq.cli import app
from smartq.client.events import StatusEvent
from smartq.commands import dagfile
from smartq.commands.explain import Verdict, explain_doc
from smartq.commands.output import Bar, OutputFormat, Printer, age, plain_table, took
from smartq.commands.session import ExitCode, exit_code
from smartq.commands.submit import read_payload
from smartq.commands.tracker import Tracker
from smartq.commands.view import PlainView, status_words
from smartq.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]

# -- DAG files ----------------------------------------------------------------------------------


def test_the_example_dag_parses_with_its_keys_and_options() -> None:
    dag = dagfile.read(str(ROOT / "examples" / "dag.yaml"))
    assert dag.name == "etl-example"
    assert [j.key for j in dag.jobs] == ["extract", "clean", "report", "load"]
    load = dag.jobs[-1]
    assert load.depends_on == ["clean", "report"]
    assert load.options == {"cpu_units": 2, "memory_mb": 512}


def test_a_list_of_jobs_in_json_and_keys_filled_past_the_given_ones() -> None:
    text = '[{"type": "log"}, {"key": "log", "type": "noop"}, {"type": "log", "depends_on": "log"}]'
    dag = dagfile.parse(dagfile.load(text, "dag.json"), "dag.json")
    assert dag.name is None
    assert [j.key for j in dag.jobs] == ["log.2", "log", "log.3"]
    assert dag.jobs[2].depends_on == ["log"]


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([], "no jobs"),
        ({"name": "x"}, "no jobs"),
        ({"jobs": [{"type": "a"}], "nmae": "x"}, "unknown field 'nmae' at the top"),
        ([{"key": "a"}], "job 'a': needs a 'type'"),
        (["noop"], "job 1: a job is a mapping"),
        ([{"type": "a", "dependson": []}], "job 1: unknown field 'dependson'"),
        ([{"type": "a", "payload": [1]}], "'payload' must be a mapping"),
        ([{"key": "a", "type": "a"}, {"key": "a", "type": "b"}], "key 'a' is used by two jobs"),
        ([{"key": "b", "type": "a", "depends_on": ["nope"]}], "depends on 'nope', which is no key"),
        ([{"type": "a", "depends_on": [1]}], "'depends_on' must be a list"),
        ({"jobs": [{"type": "a"}], "callbacks": "http://x"}, "'callbacks' must be a list"),
        ({"jobs": [{"type": "a"}], "callbacks": [{"events": []}]}, "callback 1: needs a 'url'"),
        ({"jobs": [{"type": "a"}], "callbacks": [{"url": "u", "event": "x"}]}, "field 'event'"),
        ({"jobs": [{"type": "a"}], "callbacks": [{"url": "u", "events": []}]}, "'events' must"),
    ],
)
def test_dag_file_mistakes_are_named(doc: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=r"dag\.yaml") as refused:
        dagfile.parse(doc, "dag.yaml")
    assert says in str(refused.value)


def test_a_dag_file_may_ask_for_callbacks() -> None:
    doc = {
        "callbacks": [
            {"url": "https://hooks.example.com/a", "events": ["batch.started", "job.failed"]},
            {"url": "https://hooks.example.com/b", "events": "batch.finished"},
            {"url": "https://hooks.example.com/c"},
        ],
        "jobs": [{"type": "a"}],
    }
    dag = dagfile.parse(doc, "dag.yaml")
    assert dag.callbacks == [
        {"url": "https://hooks.example.com/a", "events": ["batch.started", "job.failed"]},
        {"url": "https://hooks.example.com/b", "events": ["batch.finished"]},
        {"url": "https://hooks.example.com/c", "events": list(EVENT_NAMES)},
    ]
    assert dagfile.parse([{"type": "a"}], "f").callbacks == []


def test_a_dependency_on_an_existing_job_id_is_left_to_the_server() -> None:
    existing = str(uuid.uuid4())
    dag = dagfile.parse([{"type": "a", "depends_on": [existing]}], "f")
    assert dag.jobs[0].depends_on == [existing]


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    bad = tmp_path / "dag.yaml"
    bad.write_text("jobs: [ {type: a\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        dagfile.read(str(bad))
    with pytest.raises(ConfigurationError, match="cannot read the DAG file"):
        dagfile.read(str(tmp_path / "missing.yaml"))


# -- payloads -----------------------------------------------------------------------------------


def test_payloads_inline_or_from_a_file(tmp_path: Path) -> None:
    assert read_payload(None) == {}
    assert read_payload('{"seconds": 1}') == {"seconds": 1}
    path = tmp_path / "p.json"
    path.write_text('{"lines": 3}')
    assert read_payload(f"@{path}") == {"lines": 3}
    for bad, says in [("{bad", "not valid JSON"), ("[1]", "must be a JSON object")]:
        with pytest.raises(ConfigurationError, match=says):
            read_payload(bad)
    with pytest.raises(ConfigurationError, match="cannot read the payload file"):
        read_payload(f"@{tmp_path / 'none.json'}")


# -- explain ------------------------------------------------------------------------------------

WORKER = WorkerView("w1", cpu_units=4, memory_mb=2048, job_types=frozenset({"sleep"}))
FAILED_DEP = {"id": "d1", "name": "extract", "status": "failed", "waiting_reason": None}


def _job(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": "j", "status": status, "attempts": 1, **fields}


@pytest.mark.parametrize(
    ("doc", "deps", "verdict"),
    [
        (_job("ready", waiting_reason=never_fits_reason(64, 256, [WORKER])), [], Verdict.NEVER),
        (_job("ready", waiting_reason=type_missing_reason("cpu", [WORKER])), [], Verdict.NEVER),
        (
            _job("ready", waiting_reason="ready: waiting for the next scheduling pass"),
            [],
            Verdict.WAITING,
        ),
        (
            _job("blocked", waiting_reason="waiting for 1 dependency: extract (failed)"),
            [FAILED_DEP],
            Verdict.NEVER,
        ),
        (
            _job("blocked", waiting_reason="waiting for 1 dependency: extract (running)"),
            [],
            Verdict.WAITING,
        ),
        (
            _job("running", waiting_reason="running on worker w1 (attempt 1 of 3)"),
            [],
            Verdict.RUNNING,
        ),
        (_job("completed"), [], Verdict.COMPLETED),
        (_job("failed", error="boom"), [], Verdict.FAILED),
        (_job("cancelled", status_reason="cancelled by user"), [], Verdict.CANCELLED),
        (
            _job(
                "cancelled", status_reason=upstream_reason("x", uuid.uuid4(), JobStatus.FAILED, "e")
            ),
            [],
            Verdict.NEVER,
        ),
    ],
)
def test_explain_reads_the_schedulers_reasons(
    doc: dict[str, Any], deps: list[dict[str, Any]], verdict: Verdict
) -> None:
    found = explain_doc(doc, deps)
    assert found.verdict is verdict, found
    assert (found.verdict.exit_code == ExitCode.NEVER_RUNS) is (verdict is Verdict.NEVER)


def test_explain_of_a_job_cancelled_upstream_says_what_to_retry() -> None:
    upstream = uuid.uuid4()
    reason = upstream_reason("extract", upstream, JobStatus.FAILED, "boom")
    found = explain_doc(_job("cancelled", status_reason=reason), [])
    assert found.summary.startswith("it ended: cancelled: upstream job extract")
    assert found.advice == f"smartq retry {upstream} --with-descendants runs it and this job again"


# -- the watch's tracker ------------------------------------------------------------------------


def _event(
    job_id: uuid.UUID, status: JobStatus, attempt: int, error: str | None = None
) -> StatusEvent:
    raw = {"job_id": str(job_id), "status": status.value, "attempt": attempt}
    return StatusEvent(job_id, status, attempt, None, error, None, "w1", False, raw)


def test_the_tracker_keeps_the_newest_status_and_the_failures() -> None:
    t = Tracker(clock=lambda: 100.0)
    a, b = uuid.uuid4(), uuid.uuid4()
    t.read({"id": str(a), "key": "a", "type": "flaky", "status": "ready", "attempts": 0})
    t.read({"id": str(b), "key": "b", "type": "noop", "status": "blocked", "attempts": 0})
    assert t.saw(_event(a, JobStatus.RUNNING, 1)) is not None
    assert t.progressed({"job_id": str(a), "attempt": 1, "fraction": 0.5, "message": "half"})
    assert t.saw(_event(a, JobStatus.RETRYING, 1, "boom")) is not None
    assert t.saw(_event(a, JobStatus.RUNNING, 1)) is None  # older than retrying
    running = t.saw(_event(a, JobStatus.RUNNING, 2))
    assert running is not None and running.job.fraction is None  # a new attempt's progress
    assert t.progressed({"job_id": str(a), "attempt": 1, "fraction": 0.9}) is None
    assert [j.label for j in t.running()] == ["a"]
    t.saw(_event(a, JobStatus.FAILED, 2, "boom again"))
    t.saw(_event(b, JobStatus.CANCELLED, 0))
    assert t.done and not t.succeeded
    assert [(f.label, f.attempt, f.status) for f in t.failures] == [
        ("a", 1, JobStatus.RETRYING),
        ("a", 2, JobStatus.FAILED),
    ]
    assert not t.differs({"failed": 1, "cancelled": 1, "completed": 0})
    assert t.differs({"failed": 1, "completed": 1})
    rerun = t.read({"id": str(a), "key": "a", "type": "flaky", "status": "pending", "attempts": 2})
    assert rerun is not None and not t.done  # `smartq retry` ran it again
    assert status_words(rerun.job) == "a pending"


def test_plain_lines_say_attempts_and_errors() -> None:
    t = Tracker()
    j = uuid.uuid4()
    t.read(
        {
            "id": str(j),
            "key": "clean",
            "type": "flaky",
            "status": "running",
            "attempts": 1,
            "worker_id": "w1",
        }
    )
    assert status_words(t.jobs[j]) == "clean running (attempt 1, worker w1)"
    change = t.saw(_event(j, JobStatus.RETRYING, 1, "flaky: attempt 1 fails\nTraceback..."))
    assert change is not None
    assert status_words(change.job) == "clean retrying after attempt 1: flaky: attempt 1 fails"


def test_a_plain_watch_prints_progress_at_most_each_second_and_always_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    t = Tracker()
    j = uuid.uuid4()
    t.read({"id": str(j), "key": "resize", "type": "steps", "status": "running", "attempts": 1})
    view = PlainView("batch b", t, Printer(OutputFormat.TEXT))
    view.start()
    for fraction in (0.25, 0.5, 1.0):
        change = t.progressed(
            {"job_id": str(j), "attempt": 1, "fraction": fraction, "message": "m"}
        )
        assert change is not None
        view.changed(change)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == [
        "resize progress 25% m",
        "resize progress 100% m",
    ]


# -- exit codes and rendering -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound(404, "no job"), ExitCode.FAILED),
        (errors.Conflict(409, "finished"), ExitCode.FAILED),
        (errors.JobFailed(uuid.uuid4(), "e", 3), ExitCode.FAILED),
        (errors.APIError(422, "invalid request"), ExitCode.BAD_INPUT),
        (errors.APIError(413, "too large"), ExitCode.BAD_INPUT),
        (ConfigurationError("bad url"), ExitCode.BAD_INPUT),
        (errors.Unauthorized(401, "invalid API key"), ExitCode.NO_ANSWER),
        (errors.Forbidden(403, "lacks the scope"), ExitCode.NO_ANSWER),
        (errors.Unavailable(503, "database away"), ExitCode.NO_ANSWER),
        (errors.APIError(500, "?"), ExitCode.NO_ANSWER),
        (errors.Unreachable("refused"), ExitCode.NO_ANSWER),
    ],
)
def test_exit_codes(error: errors.SmartqError, code: ExitCode) -> None:
    assert exit_code(error) is code


def test_plain_rendering() -> None:
    assert Bar(2, 4, width=8).plain() == "[####----] 2/4"
    assert Bar(5, 4, width=4).plain() == "[####] 5/4"
    assert Bar(0, 0, width=2).plain() == "[--] 0/0"
    assert plain_table([["ID", "STATE"], ["w1", "idle"]]) == "ID  STATE\nw1  idle"
    assert [took(s) for s in (None, 0.423, 12.34, 245, 7380, 200_000)] == [
        "-", "0.42s", "12.3s", "4m05s", "2h03m", "2d07h",
    ]  # fmt: skip
    assert age(None) == "-"


# -- what submit refuses before it asks a server ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["submit"], "give a job TYPE or -f FILE"),
        (["submit", "noop", "-f", "dag.yaml"], "give a job TYPE or -f FILE"),
        (["submit", "noop", "--wait", "--watch"], "--wait or --watch, not both"),
        (["submit", "-f", "dag.yaml", "--priority", "high"], "--priority is for one job"),
        (["submit", "noop", "--payload", "{"], "--payload: not valid JSON"),
        (["submit", "-f", "missing.yaml"], "cannot read the DAG file missing.yaml"),
        (["jobs", "ls", "--since", "soon"], "--since: cannot read 'soon' as a duration"),
        (["purge", "--status", "running"], "--status: only completed, failed or cancelled"),
        (["purge", "--finished-before", "soon"], "--finished-before: 'soon' is neither an age"),
        (["purge", "--finished-before", "2026-01-01T00:00"], "an ISO time with a zone"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, [*args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("smartq: ") and says in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
