"""How ``smartq watch`` shows what it watches: :class:`LiveView` (rich ``Live`` on a terminal:
a bar for all jobs and one per status, the running jobs with their progress, the recent
failures), :class:`PlainView` (one line per change, for pipes and CI logs) and
:class:`JsonView` (one JSON document per change, then a summary). Each ends with the summary.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol

from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from models.enums import JobStatus
from smartq.commands.output import STATUS_STYLES, Printer, first_line, took
from smartq.commands.tracker import WAITING, Change, Tracked, Tracker

#: Running jobs a live view lists; the rest are counted.
MAX_RUNNING_SHOWN = 8
#: A plain view prints a job's progress at most this often (seconds), and always at 100 %.
PROGRESS_EVERY = 1.0


class View(Protocol):
    def start(self) -> None: ...

    def changed(self, change: Change) -> None: ...

    def stop(self) -> None: ...


class Watching:
    """What every view shows: the title, the tracker, and since when."""

    def __init__(self, title: str, tracker: Tracker, out: Printer) -> None:
        self.title = title
        self.tracker = tracker
        self.out = out
        self.began = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def summary(self) -> str:
        t = self.tracker
        counts = t.counts()
        parts = [
            f"{counts[s]} {s.value}"
            for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
        ]
        state = "done" if t.done else "not done"
        return (
            f"{self.title}: {', '.join(parts)} of {t.total} ({state}, watched {took(self.elapsed)})"
        )

    def print_summary(self) -> None:
        t = self.tracker
        self.out.line(self.summary(), "bold green" if t.succeeded else "bold red")
        for job in t.ended_badly():
            why = job.error if job.status is JobStatus.FAILED else job.reason
            self.out.line(
                f"  {job.label} ({job.id}) {job.status.value}: {first_line(why)}",
                STATUS_STYLES[job.status.value],
            )


# -- a terminal ---------------------------------------------------------------------------------


class LiveView(Watching):
    """Redrawn a few times a second from the tracker (changes need no drawing of their own)."""

    def start(self) -> None:
        self._live = Live(
            get_renderable=self.render,
            console=self.out.console,
            refresh_per_second=4,
            transient=False,
        )
        self._live.start()

    def changed(self, change: Change) -> None:
        pass

    def stop(self) -> None:
        self._live.refresh()
        self._live.stop()
        self.print_summary()

    def render(self) -> RenderableType:
        t = self.tracker
        counts = t.counts()
        running = t.running()
        waiting = sum(counts[s] for s in WAITING)
        head = Text(self.title, style="bold")
        head.append(
            f"  {t.finished}/{t.total} done · {len(running)} running · {waiting} waiting"
            f" · {took(self.elapsed)}",
            style="",
        )
        parts: list[RenderableType] = [head, self._bars(counts, waiting)]
        if running:
            parts += [Text("running", style="bold"), self._running(running)]
        if t.failures:
            parts += [Text("recent failures", style="bold red"), self._failures()]
        return Group(*parts)

    def _bars(self, counts: Any, waiting: int) -> Table:
        total = max(self.tracker.total, 1)
        grid = Table.grid(padding=(0, 1))
        rows: list[tuple[str, int, str]] = [("all done", self.tracker.finished, "bold")]
        rows += [
            (s.value, counts[s], STATUS_STYLES[s.value])
            for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.RUNNING)
            if counts[s] or s is JobStatus.COMPLETED
        ]
        if waiting:
            rows.append(("waiting", waiting, "dim"))
        for name, count, style in rows:
            bar = ProgressBar(
                total=total, completed=count, width=40, complete_style=style or "white"
            )
            grid.add_row(
                Text(name.ljust(9), style=style), bar, Text(f"{count}/{self.tracker.total}")
            )
        return grid

    def _running(self, running: list[Tracked]) -> Table:
        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for job in running[:MAX_RUNNING_SHOWN]:
            bar: RenderableType = Text("")
            if job.fraction is not None:
                bar = ProgressBar(total=1.0, completed=job.fraction, width=20)
            since = took(now - job.running_since) if job.running_since is not None else ""
            pct = f"{job.fraction * 100:.0f}%" if job.fraction is not None else ""
            grid.add_row(
                Text(f"  {job.label}", style="cyan"),
                Text(f"attempt {job.attempt}", style="dim"),
                Text(job.worker_id or "", style="dim"),
                bar,
                Text(pct),
                Text(job.message or "", overflow="ellipsis", no_wrap=True),
                Text(since, style="dim"),
            )
        more = len(running) - MAX_RUNNING_SHOWN
        if more > 0:
            grid.add_row(Text(f"  and {more} more", style="dim"))
        return grid

    def _failures(self) -> Table:
        grid = Table.grid(padding=(0, 1))
        for f in self.tracker.failures:
            what = "failed" if f.status is JobStatus.FAILED else "failed, retrying"
            grid.add_row(
                Text(f"  {f.label}", style="red"),
                Text(f"attempt {f.attempt} {what}:", style="dim"),
                Text(first_line(f.error, 100), no_wrap=True, overflow="ellipsis"),
            )
        return grid


# -- a pipe -------------------------------------------------------------------------------------


def status_words(job: Tracked) -> str:
    """``extract running (attempt 1, worker w1)``, ``clean retrying after attempt 1: …``."""
    status = job.status
    words = f"{job.label} {status.value}"
    if status is JobStatus.RUNNING:
        where = f", worker {job.worker_id}" if job.worker_id else ""
        return words + f" (attempt {job.attempt}{where})"
    if status is JobStatus.RETRYING:
        return words + f" after attempt {job.attempt}: {first_line(job.error)}"
    if status is JobStatus.FAILED:
        return words + f" after {job.attempt} attempt(s): {first_line(job.error)}"
    if status is JobStatus.CANCELLED:
        return words + f": {first_line(job.reason)}"
    if status is JobStatus.COMPLETED:
        return words + f" (attempt {job.attempt})"
    return words


class PlainView(Watching):
    """One line per change, with the time."""

    def start(self) -> None:
        self._said: dict[Any, float] = {}

    def changed(self, change: Change) -> None:
        job = change.job
        if change.kind == "progress":
            now = time.monotonic()
            full = job.fraction is not None and job.fraction >= 1.0
            if not full and now - self._said.get(job.id, -PROGRESS_EVERY) < PROGRESS_EVERY:
                return
            self._said[job.id] = now
            pct = f"{(job.fraction or 0.0) * 100:.0f}%"
            text = f"{job.label} progress {pct}" + (f" {job.message}" if job.message else "")
        else:
            text = status_words(job)
        self.out.line(f"{datetime.now():%H:%M:%S} {text}")

    def stop(self) -> None:
        self.print_summary()


class JsonView(Watching):
    """One JSON document per change (``job.status``, ``job.progress``), then ``summary``."""

    def start(self) -> None:
        pass

    def changed(self, change: Change) -> None:
        job = change.job
        doc: dict[str, Any] = {"event": f"job.{change.kind}", "job_id": job.id, "label": job.label}
        if change.kind == "progress":
            doc.update(fraction=job.fraction, message=job.message, attempt=job.attempt)
        else:
            doc.update(
                status=job.status.value,
                attempt=job.attempt,
                worker_id=job.worker_id,
                error=job.error,
                reason=job.reason,
            )
        self.out.emit(doc)

    def stop(self) -> None:
        t = self.tracker
        counts = t.counts()
        self.out.emit(
            {
                "event": "summary",
                "title": self.title,
                "total": t.total,
                "totals": {s.value: counts[s] for s in JobStatus},
                "done": t.done,
                "succeeded": t.succeeded,
                "watched_seconds": round(self.elapsed, 3),
                "ended_badly": [
                    {
                        "job_id": j.id,
                        "label": j.label,
                        "status": j.status.value,
                        "error": j.error,
                        "reason": j.reason,
                    }
                    for j in t.ended_badly()
                ],
            }
        )


def make_view(title: str, tracker: Tracker, out: Printer) -> View:
    """The view for this output: JSON, a live view on an interactive terminal, else lines."""
    if out.json:
        return JsonView(title, tracker, out)
    if out.rich and out.console.is_interactive:
        return LiveView(title, tracker, out)
    return PlainView(title, tracker, out)
