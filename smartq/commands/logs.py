"""``smartq logs ID [-f] [--attempt N]``: a job's log lines in order; with ``-f``, live until
the job has ended, ending after its last line (the server makes every line of an attempt
visible before the attempt's end), with the job's outcome as the exit code."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer

from smartq.commands.output import Output, OutputFormat, Printer
from smartq.commands.session import ApiKey, ExitCode, Url, session

if TYPE_CHECKING:
    from smartq.client import LogLine

_LEVEL_STYLES = {"ERROR": "red", "CRITICAL": "bold red", "WARNING": "yellow", "DEBUG": "dim"}


def logs(
    job_id: Annotated[uuid.UUID, typer.Argument(metavar="ID", help="The job's id.")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Follow live until the job ends; exit 0 if it completed, else 1."
        ),
    ] = False,
    attempt: Annotated[
        int | None, typer.Option(help="Only the lines of this attempt.", min=1, show_default=False)
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """A job's log lines (time, attempt, level, message); -o json: one document per line."""
    with session(url, api_key, output) as s:
        job = s.client.job(job_id)
        for line in job.logs(follow=follow, attempt=attempt):
            show(s.out, line)
        code = ExitCode.OK
        if follow:
            code = ExitCode.OK if job.status == "completed" else ExitCode.FAILED
    raise typer.Exit(code)


def show(out: Printer, line: LogLine) -> None:
    if out.json:
        out.emit(
            {
                "job_id": line.job_id,
                "attempt": line.attempt,
                "seq": line.seq,
                "ts": line.ts.isoformat(),
                "level": line.level,
                "message": line.message,
            }
        )
        return
    stamp = line.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    head = f"{stamp} #{line.attempt} {line.level:<7}"
    if out.rich:
        from rich.text import Text

        text = Text(head + " ", style="dim")
        text.append(line.message, style=_LEVEL_STYLES.get(line.level.upper(), ""))
        out.console.print(text, soft_wrap=True)
    else:
        sys.stdout.write(f"{head} {line.message}\n")
        sys.stdout.flush()
