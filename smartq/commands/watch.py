"""``smartq watch BATCH_OR_JOB``: follow a batch (or one job) until every job has ended; exit 0
when all completed, 1 when any failed or was cancelled, so scripts and CI can wait on it.

It subscribes to the stream first, then reads the jobs (the stream's snapshots and the reads
overlap; the tracker keeps the newest of each job), takes statuses and progress from the
stream, and reads the totals whenever the stream is silent for a while, reading the jobs again
when they disagree (an event can be lost). Without a stream it polls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smartq.commands.output import Output, OutputFormat
from smartq.commands.session import ApiKey, ExitCode, Session, Url, session
from smartq.errors import NotFound, Unreachable

if TYPE_CHECKING:
    from smartq.client import Stream
    from smartq.commands.tracker import Tracker
    from smartq.commands.view import View

#: How long a silent stream is trusted before the totals are read.
CHECK_SECONDS = 2.0
#: How often a watch without a stream reads the totals.
POLL_SECONDS = 1.0
_TYPES = ["job.status", "job.progress"]


def watch(
    target: Annotated[
        uuid.UUID, typer.Argument(metavar="BATCH_OR_JOB", help="A batch's id or a job's.")
    ],
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Watch a batch or a job live until it ends (exit 0: all completed).

    Tries the id as a batch, then as a job. Exit 0 if every job completed, 1 if any failed or
    was cancelled. Off a terminal: one line per change; -o json: one document per change,
    then a summary."""
    with session(url, api_key, output) as s:
        code = watch_id(s, str(target))
    raise typer.Exit(code)


def watch_id(s: Session, ident: str) -> ExitCode:
    """Watch the batch with this id, else the job."""
    try:
        report = s.get(f"/batches/{ident}", [("limit", "1")])
    except NotFound:
        try:
            doc = s.get(f"/jobs/{ident}")
        except NotFound:
            raise NotFound(404, f"no batch or job {ident}") from None
        return watch_job(s, doc)
    return watch_batch(s, ident, report)


@dataclass
class Target:
    """What is watched: its title, what to subscribe to, and how to read its jobs."""

    title: str
    read: Callable[[], list[dict[str, Any]]]
    #: The jobs to read again now, given what the tracker knows (often none).
    check: Callable[[Tracker], list[dict[str, Any]]]
    job_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)


def watch_batch(s: Session, batch_id: str, report: dict[str, Any] | None = None) -> ExitCode:
    """Watch a batch (``report``: its first page, if read already)."""
    if report is None:
        report = s.get(f"/batches/{batch_id}", [("limit", "1")])
    name = report.get("name")
    title = f"batch {name} {batch_id}" if name else f"batch {batch_id}"
    count = int(report["job_count"])

    def read() -> list[dict[str, Any]]:
        return s.pages(f"/batches/{batch_id}", [], count, key="jobs")

    def check(tracker: Tracker) -> list[dict[str, Any]]:
        totals = s.get(f"/batches/{batch_id}", [("limit", "1")])["totals"]
        return read() if tracker.differs(totals) else []

    return follow(s, Target(title, read, check, batch_ids=[batch_id]))


def watch_job(s: Session, doc: dict[str, Any]) -> ExitCode:
    """Watch one job (``doc``, read before: it is read again once subscribed)."""
    job_id = str(doc["id"])

    def read() -> list[dict[str, Any]]:
        return [s.get(f"/jobs/{job_id}")]

    title = f"job {doc.get('key') or doc['name']} {job_id}"
    return follow(s, Target(title, read, lambda _: read(), job_ids=[job_id]))


def follow(s: Session, target: Target) -> ExitCode:
    """Watch ``target`` until all its jobs have ended, showing it as ``-o`` and stdout say."""
    from smartq.commands.tracker import Tracker
    from smartq.commands.view import make_view

    tracker = Tracker()
    view = make_view(target.title, tracker, s.out)
    view.start()
    try:
        try:
            with s.client.stream(target.job_ids, target.batch_ids, types=_TYPES) as stream:
                _on_stream(stream, target, tracker, view)
        except Unreachable:
            _polling(target, tracker, view)
    finally:
        view.stop()
    return ExitCode.OK if tracker.succeeded else ExitCode.FAILED


def _on_stream(stream: Stream, target: Target, tracker: Tracker, view: View) -> None:
    from smartq.client import Event, StatusEvent

    stream.open()  # subscribed before the first read: nothing is missed in between
    for change in tracker.read_all(target.read()):
        view.changed(change)
    while not tracker.done:
        try:
            event = stream.next(timeout=CHECK_SECONDS)
        except TimeoutError:
            for change in tracker.read_all(target.check(tracker)):
                view.changed(change)
            continue
        found = None
        if isinstance(event, StatusEvent):
            found = tracker.saw(event)
        elif isinstance(event, Event) and event.type == "job.progress":
            found = tracker.progressed(event.raw)
        if found is not None:
            view.changed(found)


def _polling(target: Target, tracker: Tracker, view: View) -> None:
    for change in tracker.read_all(target.read()):
        view.changed(change)
    while not tracker.done:
        time.sleep(POLL_SECONDS)
        for change in tracker.read_all(target.check(tracker)):
            view.changed(change)
