"""A real HTTP server on 127.0.0.1 that receives callback deliveries, for the tests: it keeps
every request (path, headers, raw body) and answers each path from a script (``fail`` 500s
first, then 200)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass
class Receiver:
    port: int
    #: Per path, how many 500s to answer before the first 200.
    fail: dict[str, int] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.got if path is None or r.path == path]

    def answer(self, path: str) -> int:
        with self.lock:
            left = self.fail.get(path, 0)
            if left > 0:
                self.fail[path] = left - 1
                return 500
            return 200


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.got.append(Received(self.path, dict(self.headers.items()), body))
            code = receiver.answer(self.path)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
