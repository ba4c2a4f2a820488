"""How every user command prints: ``-o json`` for scripts; else rich tables when stdout is a
terminal, and plain columns (``kubectl get``'s shape, no colour, no wrapping) when it is not.

Whether stdout is a terminal is rich's answer (``isatty``, or ``FORCE_COLOR`` /
``TTY_COMPATIBLE``), and so is colour: rich drops it under ``NO_COLOR`` and off a terminal.
Errors are one line on stderr, red when stderr is a colour terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="text (a table on a terminal, plain columns otherwise) or json."
    ),
]


@dataclass(frozen=True, slots=True)
class Bar:
    """A cell showing ``used`` of ``total``: coloured blocks on a terminal, ``[##--]`` off."""

    used: float
    total: float
    width: int = 10

    def filled(self) -> int:
        if self.total <= 0:
            return 0
        share = min(1.0, max(0.0, self.used / self.total))
        return round(share * self.width)

    def plain(self) -> str:
        n = self.filled()
        return f"[{'#' * n}{'-' * (self.width - n)}] {_number(self.used)}/{_number(self.total)}"

    def rich(self) -> Text:
        n = self.filled()
        share = self.used / self.total if self.total > 0 else 0.0
        style = "red" if share >= 0.9 else "yellow" if share >= 0.6 else "green"
        text = Text("█" * n, style=style)
        text.append("░" * (self.width - n), style="dim")
        text.append(f" {_number(self.used)}/{_number(self.total)}")
        return text


@dataclass(frozen=True, slots=True)
class Styled:
    """A cell with a style on a terminal (plain text off it)."""

    text: str
    style: str


Cell = str | Bar | Styled


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def plain_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, as ``kubectl get`` prints them."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


#: The widest a table is drawn on a terminal narrower than it.
MAX_TABLE_WIDTH = 200


class Printer:
    """Where a command's answer goes, in the form its ``-o`` and stdout call for."""

    def __init__(self, fmt: OutputFormat, console: Console | None = None) -> None:
        self.format = fmt
        self.console = console or Console(highlight=False)

    @property
    def json(self) -> bool:
        return self.format is OutputFormat.JSON

    @property
    def rich(self) -> bool:
        """Text for a terminal (tables, colours, live views)."""
        return not self.json and self.console.is_terminal

    def emit(self, doc: Any) -> None:
        """One JSON document on one line."""
        sys.stdout.write(orjson.dumps(doc, default=str).decode() + "\n")
        sys.stdout.flush()

    def line(self, text: str = "", style: str | None = None) -> None:
        """A line of text: styled on a terminal, as it is off one."""
        if self.rich:
            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        if not self.rich:
            shown = [[_plain(c) for c in r] for r in rows]
            sys.stdout.write(plain_table([list(columns), *shown]) + "\n")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for i, name in enumerate(columns):
            # Ids, statuses and bars stay whole; text columns wrap on a narrow terminal.
            bars = any(isinstance(r[i], Bar | Styled) for r in rows)
            table.add_column(name, no_wrap=bars or name in ("ID", "KEY"))
        for r in rows:
            table.add_row(*(_rich(c) for c in r))
        # As kubectl does, a wide table runs past a narrow terminal rather than losing its
        # ids to ellipses (up to a bound: long errors still wrap in their column).
        room = self.console.options.update_width(MAX_TABLE_WIDTH)
        natural = Measurement.get(self.console, room, table).maximum
        width = self.console.width
        self.console.width = max(width, natural)
        try:
            self.console.print(table)
        finally:
            self.console.width = width

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``name  value`` lines (``jobs show``), names padded to the widest."""
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            if self.rich:
                text = Text(key.ljust(width), style="bold")
                text.append("  " + value)
                self.console.print(text, soft_wrap=True)
            else:
                self.line(f"{key.ljust(width)}  {value}")


def _plain(cell: Cell) -> str:
    if isinstance(cell, Bar):
        return cell.plain()
    if isinstance(cell, Styled):
        return cell.text
    return cell


def _rich(cell: Cell) -> Text:
    if isinstance(cell, Bar):
        return cell.rich()
    if isinstance(cell, Styled):
        return Text(cell.text, style=cell.style)
    return Text(cell)


def error(message: str) -> None:
    """``smartq: message`` as one line on stderr (red on a colour terminal)."""
    flat = " ".join(message.split())
    Console(stderr=True, highlight=False).print(
        Text(f"smartq: {flat}", style="red"), soft_wrap=True
    )


#: Each status's colour on a terminal.
STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "retrying": "magenta",
    "ready": "blue",
    "blocked": "dim",
    "pending": "dim",
}


def status_cell(status: str) -> Styled:
    return Styled(status, STATUS_STYLES.get(status, ""))


def first_line(text: str | None, limit: int = 160) -> str:
    """An error's first line, cut to ``limit`` characters (tables and live views)."""
    line = text.strip().splitlines()[0] if text and text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- times ------------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def stamp(value: str | None) -> str:
    """An API time as ``2026-12-01T10:00:03Z`` (whole seconds), ``-`` for none."""
    at = parse_time(value)
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def took(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def age(value: str | None, now: datetime | None = None) -> str:
    """How long ago an API time was: ``4s``, then as :func:`took` says it."""
    at = parse_time(value)
    if at is None:
        return "-"
    seconds = max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())
    return f"{int(seconds)}s" if seconds < 60 else took(seconds)


def between(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (None unless both are known)."""
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else (b - a).total_seconds()
