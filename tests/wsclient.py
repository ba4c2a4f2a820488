"""A WebSocket client that talks ASGI to the app inside the test's event loop (httpx has no
WebSocket support, and Starlette's TestClient runs the app on another loop).

``max_queue`` bounds the frames received but not yet read: once full, the app's ``send``
waits, as it would on a real socket whose peer stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.types import ASGIApp, Message


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class AsgiWebSocket:
    def __init__(
        self,
        app: ASGIApp,
        path: str,
        query: str = "",
        max_queue: int = 0,
        *,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.query = query
        self.headers = [(b"host", b"smartq")] + [
            (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
        ]
        self.subprotocols = subprotocols or []
        #: The subprotocol the server chose when it accepted.
        self.accepted_subprotocol: str | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[str] = asyncio.Queue(maxsize=max_queue)
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._accepted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self._accepted.set()
        elif kind == "websocket.send":
            await self._from_app.put(message.get("text") or message["bytes"].decode())
        elif kind == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason") or ""
            self._closed.set()

    async def _run(self) -> None:
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": self.query.encode(),
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("smartq", 80),
            "subprotocols": self.subprotocols,
            "state": {},
        }
        try:
            await self.app(scope, self._to_app.get, self._send)
        finally:
            if self.close_code is None:
                self.close_code, self.close_reason = 1006, "the app returned"
            self._closed.set()

    async def __aenter__(self) -> AsgiWebSocket:
        await self._to_app.put({"type": "websocket.connect"})
        self._task = asyncio.create_task(self._run())
        accepted = asyncio.ensure_future(self._accepted.wait())
        await asyncio.wait({accepted, self._task}, timeout=5, return_when="FIRST_COMPLETED")
        accepted.cancel()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except TimeoutError:
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

    async def send_json(self, doc: Any) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": orjson.dumps(doc).decode()})

    async def send_text(self, text: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def receive_json(self, timeout: float = 10) -> Any:
        """The next event; raises :class:`Closed` once the server closed and all was read."""
        if not self._from_app.empty():
            return orjson.loads(self._from_app.get_nowait())
        getter = asyncio.ensure_future(self._from_app.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({getter, closed}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            closed.cancel()
        if getter.done():
            return orjson.loads(getter.result())
        getter.cancel()
        if self._closed.is_set():
            raise Closed(self.close_code or 1006, self.close_reason)
        raise TimeoutError(f"no event in {timeout}s")

    async def closed(self, timeout: float = 10) -> Closed:
        """Wait for the server to close (discarding events); the close code and reason."""
        await asyncio.wait_for(self._closed.wait(), timeout)
        return Closed(self.close_code or 1006, self.close_reason)
