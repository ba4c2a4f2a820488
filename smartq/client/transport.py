"""The SDK's HTTP transports: httpx's own, but a request goes out in one socket write.

httpcore writes a request's head and its body with a system call each. For a client that
submits one job at a time, each call is on the path of every request, and each also makes the
server read twice: in the bench sdk loop two sends were a third of the client's time
(cProfile: 4,000 ``send`` calls for 2,000 requests). :class:`Coalescing` holds what is written
until the connection reads (the request is complete then) or until :data:`FLUSH_BYTES` are
held (a large body streams as before), and writes it at once.

:func:`sync_transport` and :func:`async_transport` build httpx's transports on a connection
pool with that network backend; httpx itself has no setting for it, so they replace the
pool it made (``_pool``; :mod:`tests.unit.test_client_transport` holds that it still is one).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

#: Held bytes that are written at once, without waiting for the read.
FLUSH_BYTES = 64 * 1024

SocketOption = Any  # httpcore's SOCKET_OPTION: a (level, option, value) tuple


class Coalescing(httpcore.NetworkStream):
    """A stream whose writes wait for the next read (or :data:`FLUSH_BYTES`)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._size = 0

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._held.append(buffer)
        self._size += len(buffer)
        if self._size >= FLUSH_BYTES:
            self.flush(timeout)

    def flush(self, timeout: float | None = None) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held, self._size = [], 0
            self._stream.write(data, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.flush(timeout)
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._held, self._size = [], 0
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self.flush(timeout)
        return Coalescing(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class AsyncCoalescing(httpcore.AsyncNetworkStream):
    """:class:`Coalescing` for the async client."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._size = 0

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._held.append(buffer)
        self._size += len(buffer)
        if self._size >= FLUSH_BYTES:
            await self.flush(timeout)

    async def flush(self, timeout: float | None = None) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held, self._size = [], 0
            await self._stream.write(data, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self.flush(timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held, self._size = [], 0
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self.flush(timeout)
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return AsyncCoalescing(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return Coalescing(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return Coalescing(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return AsyncCoalescing(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return AsyncCoalescing(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _limits() -> dict[str, Any]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return {
        "ssl_context": httpx.create_ssl_context(),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


def sync_transport() -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=_Backend(), **_limits())
    return transport


def async_transport() -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=_AsyncBackend(), **_limits())
    return transport
