"""The user CLI driven as a user would, as its own process, against real processes: ``smartq
dev`` on the embedded default (open on loopback: no key), and ``smartq api``, ``scheduler``,
``worker``, ``logger`` on PostgreSQL + RabbitMQ with keys from ``smartq keys create``.

stdout is a pipe here, so the commands print plain text (no escape codes); one test sets
``TTY_COMPATIBLE=1`` to draw the live view, with ``NO_COLOR`` to check it has no colour."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import PostgresDatabases
from tests.e2e.procs import (
    ROOT,
    Procs,
    free_port,
    processes,
    split_env,
    start_split,
    wait_ready,
)
from tests.services import require_rabbitmq

pytestmark = pytest.mark.slow

#: What a user's shell may hold that would change what the commands print or where they go.
_SCRUBBED = ("SMARTQ_URL", "SMARTQ_API_KEY", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")
_COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|9[0-7]|38)(?:;[0-9;]*)?m")

FAILING_DAG = """
name: failing
jobs:
  - key: broken
    type: flaky
    payload: {fail_times: -1}
    retry: {max_attempts: 2, initial_delay_seconds: 0.1}
  - {key: after, type: noop, depends_on: [broken]}
  - {key: fine, type: noop}
"""


@dataclass
class Cli:
    """``smartq`` as a user runs it, against ``url`` with ``key`` (none: open)."""

    procs: Procs
    url: str
    key: str | None = None

    def __call__(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in self.procs.env.items() if k not in _SCRUBBED}
        base["SMARTQ_URL"] = self.url
        if self.key:
            base["SMARTQ_API_KEY"] = self.key
        ran = subprocess.run(
            [sys.executable, "-m", "smartq.cli", *args],
            env={**base, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in ran.stderr, ran.stderr
        return ran

    def json(self, *args: str, code: int = 0) -> Any:
        ran = self(*args, "-o", "json")
        assert ran.returncode == code, ran.stderr
        return json.loads(ran.stdout)

    def status(self, job_id: str) -> str:
        r = httpx.get(f"{self.url}/jobs/{job_id}", headers=self.headers)
        return str(r.json()["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def _one_error_line(ran: subprocess.CompletedProcess[str], says: str) -> None:
    assert ran.stderr.startswith("smartq: ") and ran.stderr.count("\n") == 1, ran.stderr
    assert says in ran.stderr, ran.stderr


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One ``smartq dev`` for the module's tests (4 cpu_units, 2048 MB)."""
    tmp = tmp_path_factory.mktemp("cli-dev")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes({"SMARTQ_SQLITE_PATH": str(tmp / "dev.sqlite3")}, tmp) as procs:
        procs.start("dev", "dev", "--port", str(port), "--cpu-units", "4", "--memory-mb", "2048")
        wait_ready(base, timeout=60)
        yield Cli(procs, base)
        assert procs.stop("dev", signal.SIGINT) == 0, procs.log("dev")


def test_the_example_dag_watched_to_the_end(cli: Cli) -> None:
    watched = cli("submit", "-f", "examples/dag.yaml", "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "\x1b" not in watched.stdout  # a pipe gets plain lines
    assert "clean completed (attempt 2)" in watched.stdout
    assert "load completed (attempt 1)" in watched.stdout
    assert "4 completed, 0 failed, 0 cancelled of 4" in watched.stdout

    newest = cli.json("batches", "ls", "--limit", "1")[0]
    assert newest["name"] == "etl-example" and newest["done"] is True
    report = cli.json("batches", "show", newest["batch_id"])
    assert [j["key"] for j in report["jobs"]] == ["extract", "clean", "report", "load"]
    assert report["totals"]["completed"] == 4 and report["failures"] == []
    listed = cli.json("jobs", "ls", "--batch", newest["batch_id"], "--since", "1h")
    assert {j["key"]: j["attempts"] for j in listed} == {
        "extract": 1,
        "clean": 2,
        "report": 1,
        "load": 1,
    }
    report_job = next(j for j in report["jobs"] if j["key"] == "report")
    shown = cli.json("jobs", "show", report_job["id"])
    assert shown["progress"]["fraction"] == 1.0 and shown["progress"]["message"] == "step 4 of 4"
    assert {t["name"]: t["workers"] for t in cli.json("types", "ls")}["steps"] == 1
    (worker,) = cli.json("workers", "ls")
    assert (worker["cpu_units"], worker["memory_mb"]) == (4, 2048)
    table = cli("workers", "ls")
    assert table.returncode == 0 and "[--------] 0/4" in table.stdout


def test_a_failing_dag_exits_1_explain_says_why_retry_runs_it_again(
    cli: Cli, tmp_path: Path
) -> None:
    dag = tmp_path / "failing.yaml"
    dag.write_text(FAILING_DAG)
    watched = cli("submit", "-f", str(dag), "--watch", "-o", "json")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["succeeded"] is False
    assert (summary["totals"]["completed"], summary["totals"]["failed"]) == (1, 1)
    assert summary["totals"]["cancelled"] == 1
    ids = {e["label"]: e["job_id"] for e in events if e["event"] == "job.status"}
    last = {e["label"]: e for e in events if e["event"] == "job.status"}
    assert (last["broken"]["status"], last["broken"]["attempt"]) == ("failed", 2)
    assert last["after"]["reason"].startswith("upstream job broken")

    after = cli("explain", ids["after"])
    assert after.returncode == 3, after.stdout + after.stderr
    assert "upstream job broken" in after.stdout
    assert f"smartq retry {ids['broken']} --with-descendants" in after.stdout
    broken = cli("explain", ids["broken"])
    assert broken.returncode == 1 and "failed after 2 attempt(s)" in broken.stdout

    again = cli("retry", ids["broken"], "--with-descendants")
    assert again.returncode == 0, again.stderr
    assert "runs again with 1 job(s) downstream" in again.stdout
    rewatched = cli("watch", summary["title"].split()[-1])
    assert rewatched.returncode == 1, rewatched.stdout
    assert "broken failed after 4 attempt(s)" in rewatched.stdout
    refused = cli("retry", ids["fine"])
    assert refused.returncode == 1
    _one_error_line(refused, "(409)")


def test_explain_of_a_job_no_worker_could_ever_fit(cli: Cli) -> None:
    job = cli.json("submit", "sleep", "--cpu-units", "64")
    deadline = time.monotonic() + 20
    while cli.status(job["id"]) == "pending":  # until the scheduler has taken it in
        assert time.monotonic() < deadline
        time.sleep(0.1)
    said = cli("explain", job["id"])
    assert said.returncode == 3, said.stdout + said.stderr
    assert "no worker could ever fit it: needs 64 cpu_units, largest worker has 4" in said.stdout
    judged = json.loads(cli("explain", job["id"], "-o", "json").stdout)
    assert (judged["verdict"], judged["can_run"], judged["exit_code"]) == ("never", False, 3)

    cancelled = cli("cancel", job["id"])
    assert cancelled.returncode == 0 and f"job {job['id']} cancelled" in cancelled.stdout
    twice = cli("cancel", job["id"], str(uuid.uuid4()))
    assert twice.returncode == 1
    assert "already cancelled" in twice.stderr and "no job" in twice.stderr
    ended = cli("explain", job["id"])
    assert ended.returncode == 1 and "it ended: cancelled: cancelled by user" in ended.stdout


def test_logs_follow_live_and_end_after_the_last_line(cli: Cli, tmp_path: Path) -> None:
    """``logs -f`` of a job still blocked on a 4 s sleep: it waits, gets the lines live, and
    ends after the last one with the job's outcome."""
    dag = tmp_path / "logs.json"
    dag.write_text(
        json.dumps(
            [
                {"key": "first", "type": "sleep", "payload": {"seconds": 4}},
                {"key": "talk", "type": "log", "payload": {"lines": 300}, "depends_on": ["first"]},
            ]
        )
    )
    talk = next(j for j in cli.json("submit", "-f", str(dag))["jobs"] if j["key"] == "talk")
    followed = cli("logs", "-f", talk["id"])
    assert followed.returncode == 0, followed.stderr
    assert cli.status(talk["id"]) == "completed"
    lines = followed.stdout.splitlines()
    numbered = [ln for ln in lines if " of 300" in ln]
    assert len(numbered) == 300 and numbered[-1].endswith("line 300 of 300")
    assert "succeeded in" in lines[-1]
    docs = [json.loads(ln) for ln in cli("logs", talk["id"], "-o", "json").stdout.splitlines()]
    assert [d["message"] for d in docs] == [ln.split(maxsplit=3)[3] for ln in lines]

    payload = tmp_path / "payload.json"
    payload.write_text('{"fail_times": -1}')
    failed = cli.json(
        "submit", "flaky", "--payload", f"@{payload}", "--max-attempts", "2", "--wait", code=1
    )
    assert failed["status"] == "failed"
    second = cli("logs", "-f", failed["id"], "--attempt", "2")
    assert second.returncode == 1
    assert second.stdout and all(" #2 " in ln for ln in second.stdout.splitlines())


def test_bad_input_exits_2_unknowns_1_no_server_4(cli: Cli, tmp_path: Path) -> None:
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(
        "- {key: a, type: noop, depends_on: [b]}\n- {key: b, type: noop, depends_on: [a]}\n"
    )
    for args, says in [
        (("submit", "-f", str(cycle)), "dependency cycle: "),
        (("submit", "nosuchtype"), "unknown job type 'nosuchtype'"),
    ]:
        ran = cli(*args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
        _one_error_line(ran, says)
    for args, says in [
        (("jobs", "show", str(uuid.uuid4())), "no job"),
        (("watch", str(uuid.uuid4())), "no batch or job"),
    ]:
        ran = cli(*args)
        assert ran.returncode == 1, (args, ran.stderr)
        _one_error_line(ran, says)
    nobody = cli("types", "ls", "--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 4
    _one_error_line(nobody, "cannot reach the API")


def test_the_live_view_on_a_terminal_without_colour(cli: Cli) -> None:
    payload = '{"steps": 4, "every": 0.3}'
    terminal = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "100"}
    watched = cli("submit", "steps", "--payload", payload, "--watch", env=terminal)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "all done" in watched.stdout and "1 completed, 0 failed" in watched.stdout
    assert "\x1b[" in watched.stdout  # drawn for a terminal ...
    assert not _COLOUR.search(watched.stdout)  # ... without colour
    coloured = cli("types", "ls", env={"TTY_COMPATIBLE": "1"})
    assert _COLOUR.search(coloured.stdout)  # the same output has colour without NO_COLOR


def test_tenants_and_types_set_as_an_admin_would(cli: Cli) -> None:
    """``smartq dev`` runs open: every request is an admin of ``default``. ``set`` changes only
    what it names; ``none`` and ``reset`` go back to the defaults; bad values exit 2."""
    made = cli.json("tenants", "set", "acme", "--max-active-jobs", "2", "--weight", "2")
    assert (made["max_active_jobs"], made["weight"], made["submit_rate"]) == (2, 2.0, None)
    more = cli.json("tenants", "set", "acme", "--submit-rate", "5.5", "--weight", "none")
    assert more["effective"] == {
        "max_active_jobs": 2,  # kept
        "submit_rate": 5.5,
        "max_running": None,
        "weight": 1.0,  # back to the default
    }
    assert [t["name"] for t in cli.json("tenants", "ls")] == ["acme"]
    table = cli("tenants", "ls")
    assert table.returncode == 0 and "\x1b" not in table.stdout
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ACTIVE", "MAX"]
    assert row.split()[:5] == ["acme", "0", "2", "5.5", "unlimited"]
    assert "1 (default)" in row
    assert cli.json("tenants", "show", "acme")["submit_rate"] == 5.5
    for args, says in [
        (("tenants", "set", "acme", "--max-active-jobs", "lots"), "--max-active-jobs takes a"),
        (("tenants", "set", "acme"), "nothing to set"),
        (("tenants", "set", "acme", "--weight", "0"), "weight: Input should be greater than 0"),
        (("tenants", "show", "ac me"), "invalid tenant 'ac me'"),
        (("types", "set", "cli-demo", "--rate-limit", "fast"), "not a rate: 'fast'"),
        (("types", "set", "cli-demo", "--breaker", "ajar"), "--breaker takes open, closed"),
        (("types", "set", "cli-demo"), "nothing to set"),
    ]:
        ran = cli(*args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
        _one_error_line(ran, says)
    reset = cli.json("tenants", "reset", "acme")
    assert reset["effective"]["max_active_jobs"] is None and reset["updated_at"] is None
    assert cli.json("tenants", "ls") == []

    # A type nobody deployed (the dev worker's own types keep running unheld meanwhile).
    limits = cli.json("types", "set", "cli-demo", "--rate-limit", "5/s", "--breaker", "open")
    assert (limits["rate_limit"], limits["breaker_force"]) == ("5/s", "open")
    limits = cli.json("types", "set", "cli-demo", "--max-running", "3", "--rate-limit", "none")
    assert (limits["rate_limit"], limits["max_running"], limits["breaker_force"]) == (
        None,
        3,
        "open",
    )
    listed = {t["name"]: t for t in cli.json("types", "ls")}
    assert listed["cli-demo"]["limits"]["max_running"] == 3
    assert listed["cli-demo"]["known_to_api"] is False and listed["noop"]["limits"] is None
    shown = cli("types", "ls")
    assert "3 running, forced open" in shown.stdout
    auto = cli.json("types", "set", "cli-demo", "--breaker", "auto", "--max-running", "none")
    assert (auto["max_running"], auto["breaker_force"]) == (None, None)


def test_a_submit_over_the_quota_waits_its_retry_after_and_makes_one_job(cli: Cli) -> None:
    """The SDK under ``smartq submit`` retries a 429 after its Retry-After, with the same
    idempotency key: once the job holding the quota ends, the submit makes exactly one job."""
    before = len(cli.json("jobs", "ls", "--type", "noop", "--limit", "500"))
    cli.json("tenants", "set", "default", "--max-active-jobs", "1")
    try:
        held = cli.json("submit", "sleep", "--payload", '{"seconds": 1}')
        started = time.monotonic()
        waited = cli.json("submit", "noop", "--wait")
        assert time.monotonic() - started >= 1.0  # it was refused first, and waited
        assert waited["status"] == "completed"
        assert cli.status(held["id"]) == "completed"
    finally:
        cli.json("tenants", "reset", "default")
    assert len(cli.json("jobs", "ls", "--type", "noop", "--limit", "500")) == before + 1


# -- the split processes, with keys -------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


def test_the_cli_on_the_split_processes_with_keys(pg_url: str, tmp_path: Path) -> None:
    """A key from ``SMARTQ_API_KEY`` or ``--api-key``; none is refused (4, with what to do);
    a key without the ``monitor`` scope may not list workers, one with it may."""
    env = split_env(pg_url, require_rabbitmq(), "cli")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(env, tmp_path) as procs:
        start_split(procs, port, cpu_units=4, memory_mb=2048)
        user = procs.create_key("cli", "--scope", "submit,read,cancel")
        monitor = procs.create_key("cli", "--scope", "read,monitor")
        wait_ready(base, timeout=90)

        anonymous = Cli(procs, base)("types", "ls")
        assert anonymous.returncode == 4
        _one_error_line(
            anonymous, "an API key is required (401): pass --api-key or set SMARTQ_API_KEY"
        )

        cli = Cli(procs, base, user)
        watched = cli("submit", "-f", "examples/dag.yaml", "--watch")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert "4 completed, 0 failed, 0 cancelled of 4" in watched.stdout
        by_option = Cli(procs, base)("jobs", "ls", "--api-key", user, "-o", "json")
        assert by_option.returncode == 0 and len(json.loads(by_option.stdout)) == 4
        refused = cli("workers", "ls")
        assert refused.returncode == 4
        _one_error_line(refused, "lacks the 'monitor' scope")
        workers = Cli(procs, base, monitor).json("workers", "ls")
        assert [w["cpu_units"] for w in workers] == [4]
        for name in ("api", "scheduler", "worker", "logger"):
            assert procs.stop(name) in (0, -signal.SIGTERM), procs.log(name)


def test_a_worker_drained_resized_and_resumed_from_the_cli(cli: Cli) -> None:
    (worker,) = cli.json("workers", "ls")
    wid = worker["id"]
    try:
        small = cli.json("workers", "resize", wid, "--cpu-units", "2")
        assert small["cpu_units"] == 2 and small["control"]["declared_cpu_units"] == 4
        drained = cli.json("workers", "drain", wid)
        assert drained["state"] in ("draining", "drained") and drained["control"]["drain"]
        shown = cli("workers", "drain", wid)
        assert shown.returncode == 0 and "it declares 4 cpu_units" in shown.stdout, shown.stdout
        for args, code, says in [
            (("workers", "resize", wid), 2, "give --cpu-units, --memory-mb or both"),
            (("workers", "resize", wid, "--cpu-units", "lots"), 2, "--cpu-units takes a whole"),
            (("workers", "drain", "nobody"), 1, "no worker nobody"),
        ]:
            ran = cli(*args)
            assert ran.returncode == code, (args, ran.stdout, ran.stderr)
            _one_error_line(ran, says)
    finally:
        cli.json("workers", "resume", wid)
        back = cli.json("workers", "resize", wid, "--cpu-units", "none")
    assert back["cpu_units"] == 4 and back["state"] != "drained"


def test_pause_and_resume_a_type_from_the_cli(cli: Cli) -> None:
    try:
        paused = cli.json("pause", "--type", "sleep")
        assert (paused["kind"], paused["name"], paused["paused"]) == ("type", "sleep", True)
        assert [p["name"] for p in cli.json("pauses")] == ["sleep"]
        said = cli("pause", "--type", "sleep")
        assert said.returncode == 0 and said.stdout.startswith("paused type sleep"), said.stdout
        ran = cli("pause", "--type", "sleep", "--all")
        assert ran.returncode == 2
        _one_error_line(ran, "give one of --batch ID, --type NAME or --all")
    finally:
        resumed = cli.json("resume", "--type", "sleep")
    assert resumed["paused"] is False and cli.json("pauses") == []


def test_a_batch_stopped_from_the_cli(cli: Cli) -> None:
    r = httpx.post(
        f"{cli.url}/jobs/batch",
        json={"jobs": [{"key": "a", "type": "sleep", "payload": {"seconds": 30}},
                       {"key": "b", "type": "noop", "depends_on": ["a"]}]},
    )  # fmt: skip
    batch_id = r.json()["batch_id"]
    ids = [j["id"] for j in r.json()["jobs"]]
    deadline = time.monotonic() + 20
    while cli.status(ids[0]) != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    said = cli("batches", "cancel", batch_id)
    assert said.returncode == 0, said.stderr
    assert "1 waiting job(s) cancelled, 1 running asked to stop" in said.stdout, said.stdout
    while {cli.status(i) for i in ids} != {"cancelled"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
