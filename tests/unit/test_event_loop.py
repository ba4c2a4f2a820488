"""smartq's processes run on the event loop the settings name: uvloop by default."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from smartq.cli import _run
from smartq.settings import Settings


@pytest.mark.parametrize(("choice", "kind"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_processes_run_on_the_configured_loop(choice: str, kind: type | None) -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    _run(main(), choice)
    assert len(seen) == 1
    if kind is None:
        assert not isinstance(seen[0], uvloop.Loop)
    else:
        assert isinstance(seen[0], kind)


def test_the_default_is_uvloop_and_other_names_are_refused() -> None:
    assert Settings(database_url="sqlite:///x.db").event_loop == "uvloop"
    with pytest.raises(ValueError, match="event_loop"):
        Settings(database_url="sqlite:///x.db", event_loop="trio")
