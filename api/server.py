"""The API under uvicorn, which on shutdown closes every WebSocket itself with 1012 (Service
Restart) before the app hears of it; streams are documented to close with 1001 (Going Away),
so :class:`ApiServer` closes them first."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from api.deps import ApiContext

#: How long shutdown waits for the streams to send their close frames.
STREAM_CLOSE_SECONDS = 2.0


class ApiServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        ctx: ApiContext | None = getattr(self.app.state, "ctx", None)
        if ctx is not None:  # None when start-up failed
            await ctx.hub.going_away(STREAM_CLOSE_SECONDS)
        await super().shutdown(sockets)
