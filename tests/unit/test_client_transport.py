"""The SDK's transports send a request's head and body in one write."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest
from httpcore._backends.anyio import AnyIOStream
from httpcore._backends.sync import SyncStream

from smartq.client.transport import FLUSH_BYTES, Coalescing, async_transport, sync_transport


class Recorder(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append(buffer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"answer"

    def close(self) -> None:
        pass


def test_writes_wait_for_the_read_and_go_out_together() -> None:
    inner = Recorder()
    stream = Coalescing(inner)
    stream.write(b"POST /jobs HTTP/1.1\r\n\r\n")
    stream.write(b'{"type":"noop"}')
    assert inner.writes == []
    assert stream.read(100) == b"answer"
    assert inner.writes == [b'POST /jobs HTTP/1.1\r\n\r\n{"type":"noop"}']
    stream.write(b"x" * FLUSH_BYTES)  # a large body is not held
    assert len(inner.writes) == 2


class Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_sync_transport_sends_each_request_in_one_write(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real = SyncStream.write

    def counted(self: SyncStream, buffer: bytes, timeout: float | None = None) -> None:
        writes.append(buffer)
        real(self, buffer, timeout)

    monkeypatch.setattr(SyncStream, "write", counted)
    with httpx.Client(transport=sync_transport(), base_url=server) as client:
        for n in range(3):
            response = client.post("/jobs", content=b'{"n": %d}' % n)
            assert response.status_code == 201 and response.content == b'{"n": %d}' % n
    assert len(writes) == 3 and all(w.endswith(b"}") for w in writes)


async def test_the_async_transport_sends_each_request_in_one_write(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real = AnyIOStream.write

    async def counted(self: AnyIOStream, buffer: bytes, timeout: float | None = None) -> None:
        writes.append(buffer)
        await real(self, buffer, timeout)

    monkeypatch.setattr(AnyIOStream, "write", counted)
    async with httpx.AsyncClient(transport=async_transport(), base_url=server) as client:
        for n in range(3):
            response = await client.post("/jobs", content=b'{"n": %d}' % n)
            assert response.status_code == 201 and response.content == b'{"n": %d}' % n
    assert len(writes) == 3
