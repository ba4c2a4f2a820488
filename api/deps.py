"""What every route needs, as FastAPI dependencies (``Annotated`` aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.admission import Admission
from api.hints import SubmitHints
from api.metrics import Metrics
from api.stream import StreamHub
from smartq.keystore import KeyVerifier
from smartq.registry import Registry
from smartq.settings import Settings

Publish = Callable[[str, bytes], Awaitable[None]]
Ping = Callable[[], Awaitable[bool]]


@dataclass
class ApiContext:
    """The process-wide resources of one API process."""

    settings: Settings
    engine: AsyncEngine
    registry: Registry
    publish: Publish
    broker_ping: Ping
    metrics: Metrics
    hub: StreamHub
    hints: SubmitHints
    keys: KeyVerifier
    admission: Admission
    extra: dict[str, object] = field(default_factory=dict)


async def get_context(request: Request) -> ApiContext:
    """Async, so FastAPI calls it on the loop (a plain function is sent to a thread)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    ctx: ApiContext = request.app.state.ctx
    async with ctx.engine.connect() as conn:
        yield conn


ContextDep = Annotated[ApiContext, Depends(get_context)]
ConnDep = Annotated[AsyncConnection, Depends(get_conn)]
