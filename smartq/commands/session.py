"""What every user command shares: the ``--url`` / ``--api-key`` / ``-o`` options, a
:class:`Session` (an SDK client and a printer), plain requests through the client for what the
SDK has no method for, and the exit codes errors map to.

Exit codes, the same for every command (``smartq keys`` uses 0, 1 and 2 the same way):

====  ===========================================================================
0     done; every job watched or waited for completed
1     a job failed or was cancelled; no such job or batch; its state refuses it (409)
2     bad input or usage: options, payload, DAG file, or what the API refused (4xx)
3     ``smartq explain``: the job can never run as things stand
4     no answer: the API is unreachable or unavailable (5xx, 429), or refused the key (401, 403)
130   interrupted (Ctrl-C)
====  ===========================================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smartq.commands.output import OutputFormat, Printer, error
from smartq.errors import (
    APIError,
    Conflict,
    Forbidden,
    JobCancelled,
    JobFailed,
    NotFound,
    RateLimited,
    SmartqError,
    Unauthorized,
    Unavailable,
    Unreachable,
)

if TYPE_CHECKING:
    from smartq.client import Client


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    NEVER_RUNS = 3
    NO_ANSWER = 4
    INTERRUPTED = 130


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The API, e.g. http://127.0.0.1:8000 (default: SMARTQ_URL, else that).",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="The key to present (default: SMARTQ_API_KEY; prefer it: other users of this "
        "machine can read arguments).",
        show_default=False,
    ),
]

Params = Sequence[tuple[str, str | int | float | bool | None]]


@dataclass
class Session:
    """One command's connection to the API and where its answer goes."""

    client: Client
    out: Printer

    def call(
        self, method: str, path: str, params: Params | None = None, *, repeatable: bool = True
    ) -> Any:
        """A request the SDK has no method for, through its connections and key; retried as
        the client's policy says (only when ``repeatable``). The decoded answer, or the
        :class:`~smartq.errors.APIError` of its status, or :class:`Unreachable`."""
        import httpx

        from smartq.client.answers import error_of

        policy = self.client.retry_policy
        tries = 0
        while True:
            tries += 1
            try:
                query = None if params is None else list(params)
                response = self.client.http.request(method, path, params=query)
            except httpx.TransportError as exc:  # no answer
                wait = policy.after(tries, None) if repeatable else None
                if wait is None:
                    raise Unreachable(str(exc) or type(exc).__name__) from exc
            else:
                if response.status_code < 300:
                    return response.json() if response.content else None
                retry_after = response.headers.get("retry-after")
                failure = error_of(response.status_code, response.content, retry_after)
                wait = policy.after(tries, failure) if repeatable else None
                if wait is None:
                    raise failure
            time.sleep(wait)

    def get(self, path: str, params: Params | None = None) -> Any:
        return self.call("GET", path, params)

    def pages(
        self,
        path: str,
        params: Params,
        limit: int,
        key: str = "items",
        cursor: str | None = None,
    ) -> list[Any]:
        """Up to ``limit`` rows of a paged list (from ``cursor`` on), following
        ``next_cursor``."""
        rows: list[Any] = []
        while len(rows) < limit:
            page_params = [*params, ("limit", str(min(500, limit - len(rows))))]
            if cursor is not None:
                page_params.append(("cursor", cursor))
            page = self.get(path, page_params)
            rows += page[key]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        return rows[:limit]


@contextmanager
def session(url: str | None, api_key: str | None, output: OutputFormat) -> Iterator[Session]:
    """A session for one command; an error raised inside becomes one line on stderr and its
    exit code (never a traceback)."""
    shown_url = url
    try:
        from smartq.client import Client

        with Client(url, api_key) as client:
            shown_url = client.endpoint.url
            yield Session(client, Printer(output))
    except SmartqError as exc:
        error(describe(exc, shown_url))
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def exit_code(exc: SmartqError) -> ExitCode:
    if isinstance(exc, NotFound | Conflict | JobFailed | JobCancelled):
        return ExitCode.FAILED
    if isinstance(exc, Unauthorized | Forbidden | Unavailable | RateLimited | Unreachable):
        return ExitCode.NO_ANSWER
    if isinstance(exc, APIError) and not 400 <= exc.status < 500:
        return ExitCode.NO_ANSWER
    return ExitCode.BAD_INPUT  # a 4xx the request caused, ConfigurationError, bad input


def describe(exc: SmartqError, url: str | None) -> str:
    """What went wrong, in one line, with what to do about it where that is clear."""
    if isinstance(exc, Unreachable):
        return f"cannot reach the API at {url or 'SMARTQ_URL'} ({exc}); is it running? (--url)"
    if isinstance(exc, Unauthorized):
        return f"{exc.message} (401): pass --api-key or set SMARTQ_API_KEY"
    if isinstance(exc, APIError):
        return f"{exc.message} ({exc.status})"
    return str(exc)


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Say ``message`` as an error line; the exit to raise."""
    error(message)
    return typer.Exit(code)
