"""``smartq explain ID``: why a job is where it is, in plain words — what it waits for (its
unfinished dependencies, each with its own state), how far it is when it runs, how it ended —
and an exit code a script can act on: 0 it runs, will run, or completed; 1 it failed or was
cancelled; 3 it can never run as things stand (no worker could ever fit it, no live worker runs
its type, or a job upstream failed or was cancelled).

Which reasons mean "never" is read from their wording, which ``scheduler/reasons.py`` owns
(the API sends its sentences); a unit test holds the two together.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import typer

from smartq.commands.jobs import progress_words
from smartq.commands.output import Output, OutputFormat
from smartq.commands.session import ApiKey, ExitCode, Session, Url, session

#: How ``why_waiting`` begins a reason that only a change of the fleet can lift.
NEVER_FITS = "no worker could ever fit it"
NO_WORKER_RUNS_TYPE = "no live worker runs job type"
#: How the reason of a job cancelled because of an upstream job begins (``upstream_reason``).
UPSTREAM = "upstream job "
#: Dependencies read one by one to say what each is doing.
MAX_DEPENDENCIES = 10

_UUID = re.compile(r"\(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)")


class Verdict(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    NEVER = "never"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def exit_code(self) -> ExitCode:
        if self is Verdict.NEVER:
            return ExitCode.NEVER_RUNS
        if self in (Verdict.FAILED, Verdict.CANCELLED):
            return ExitCode.FAILED
        return ExitCode.OK


@dataclass(frozen=True, slots=True)
class Explanation:
    verdict: Verdict
    #: One sentence: what the job is doing or how it ended, and why.
    summary: str
    #: What to do about it, when there is something to do.
    advice: str | None = None
    #: Unfinished dependencies: name, id, status, and why each waits.
    dependencies: list[dict[str, Any]] = field(default_factory=list)


def explain_doc(doc: dict[str, Any], dependencies: list[dict[str, Any]]) -> Explanation:
    """What ``GET /jobs/{id}`` (and its unfinished dependencies' documents) say, judged."""
    status = doc["status"]
    reason: str = doc.get("waiting_reason") or ""
    if status == "completed":
        return Explanation(
            Verdict.COMPLETED, f"it ended: completed after {doc['attempts']} attempt(s)"
        )
    if status == "failed":
        summary = f"it ended: failed after {doc['attempts']} attempt(s): {doc.get('error')}"
        return Explanation(Verdict.FAILED, summary, f"smartq retry {doc['id']} runs it again")
    if status == "cancelled":
        return _cancelled(doc)
    if status == "running":
        words = progress_words(doc.get("progress"))
        return Explanation(Verdict.RUNNING, reason + (f"; {words}" if words else ""))
    return _waiting(doc, reason, dependencies)


def _cancelled(doc: dict[str, Any]) -> Explanation:
    why: str = doc.get("status_reason") or "cancelled"
    summary = f"it ended: cancelled: {why}"
    if not why.startswith(UPSTREAM):
        return Explanation(Verdict.CANCELLED, summary)
    upstream = _UUID.search(why)
    advice = (
        f"smartq retry {upstream.group(1)} --with-descendants runs it and this job again"
        if upstream and " failed" in why
        else None
    )
    return Explanation(Verdict.NEVER, summary + "; it can never run", advice)


def _waiting(doc: dict[str, Any], reason: str, deps: list[dict[str, Any]]) -> Explanation:
    if reason.startswith(NEVER_FITS):
        bigger = "start a worker that large, or cancel it and submit it smaller"
        return Explanation(Verdict.NEVER, f"it waits and can never run: {reason}", bigger)
    if reason.startswith(NO_WORKER_RUNS_TYPE):
        return Explanation(Verdict.NEVER, f"it waits and can never run: {reason}")
    ended = [d for d in deps if d["status"] in ("failed", "cancelled")]
    if ended:
        d = ended[0]
        summary = f"it waits for {d['name']} ({d['id']}), which {d['status']}; it can never run"
        retry = f"smartq retry {d['id']} --with-descendants" if d["status"] == "failed" else None
        return Explanation(Verdict.NEVER, summary, retry, deps)
    return Explanation(Verdict.WAITING, f"it waits: {reason or doc['status']}", None, deps)


def explain(
    job_id: Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The job's id.")],
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Why a job waits (or how it ended), in plain words (exit 3: it can never run).

    Exit 0: it runs, will run, or completed; 1: it failed or was cancelled; 3: it can never
    run as things stand (no worker could ever fit it, no live worker runs its type, or a job
    upstream failed)."""
    with session(url, api_key, output) as s:
        doc = s.get(f"/jobs/{job_id}")
        found = explain_doc(doc, _dependencies(s, doc))
        if s.out.json:
            s.out.emit(
                {
                    "job_id": doc["id"],
                    "status": doc["status"],
                    "verdict": found.verdict.value,
                    "can_run": found.verdict is not Verdict.NEVER,
                    "summary": found.summary,
                    "advice": found.advice,
                    "waiting_reason": doc.get("waiting_reason"),
                    "status_reason": doc.get("status_reason"),
                    "progress": doc.get("progress"),
                    "dependencies": found.dependencies,
                    "exit_code": int(found.verdict.exit_code),
                }
            )
        else:
            _say(s, doc, found)
    raise typer.Exit(found.verdict.exit_code)


def _dependencies(s: Session, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's unfinished dependencies (the first few), each read to say why it waits."""
    if doc["status"] not in ("pending", "blocked"):
        return []
    out = []
    for dep_id in (doc.get("depends_on") or ())[:MAX_DEPENDENCIES]:
        dep = s.get(f"/jobs/{dep_id}")
        if dep["status"] != "completed":
            out.append(
                {
                    "id": dep["id"],
                    "name": dep["name"],
                    "status": dep["status"],
                    "waiting_reason": dep.get("waiting_reason"),
                    "progress": progress_words(dep.get("progress")),
                }
            )
    return out


def _say(s: Session, doc: dict[str, Any], found: Explanation) -> None:
    styles = {Verdict.NEVER: "red", Verdict.FAILED: "red", Verdict.CANCELLED: "yellow"}
    s.out.line(f"job {doc['name']} ({doc['id']}) is {doc['status']}", "bold")
    s.out.line(f"  {found.summary}", styles.get(found.verdict))
    for dep in found.dependencies:
        why = dep["progress"] or dep["waiting_reason"] or ""
        s.out.line(f"    {dep['name']} ({dep['id']}) {dep['status']}" + (f": {why}" if why else ""))
    if found.advice:
        s.out.line(f"  what to do: {found.advice}")
