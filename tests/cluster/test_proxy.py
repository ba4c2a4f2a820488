"""The fault proxy on real loopback sockets: an echo server upstream, a path in front of it,
each toxic switched on and off while connections are open (fast; runs in the default suite)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from smartq.cluster.control import control_app
from smartq.cluster.proxy import Address, Path
from tests.e2e.procs import free_port


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def path() -> AsyncIterator[Path]:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    p = Path("echo", Address("127.0.0.1", free_port()), Address("127.0.0.1", port))
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
        upstream.close()


async def _connect(p: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(p.listen.host, p.listen.port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), 5)


async def test_forwards_both_ways(path: Path) -> None:
    reader, writer = await _connect(path)
    assert await _round_trip(reader, writer) == b"ping"
    big = bytes(range(256)) * 4096  # 1 MiB: several chunks, back-pressure on the way
    writer.write(big)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(big)), 10) == big
    assert path.describe()["connections"] == 1
    writer.close()


async def test_latency_delays_each_direction(path: Path) -> None:
    reader, writer = await _connect(path)
    await _round_trip(reader, writer)
    await path.apply(path.toxics.changed({"latency_ms": 100}))
    began = time.monotonic()
    assert await _round_trip(reader, writer) == b"ping"
    took = time.monotonic() - began
    assert 0.2 <= took < 1.0, took  # 100 ms there, 100 ms back
    await path.apply(path.toxics.changed({"latency_ms": 0}))
    began = time.monotonic()
    await _round_trip(reader, writer)
    assert time.monotonic() - began < 0.1
    writer.close()


async def test_stall_holds_traffic_and_keeps_connections_open(path: Path) -> None:
    reader, writer = await _connect(path)
    await _round_trip(reader, writer)
    await path.apply(path.toxics.changed({"stall": True}))
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    late_reader, late_writer = await _connect(path)  # accepted, held
    late_writer.write(b"late")
    assert path.describe()["connections"] == 2
    assert not writer.transport.is_closing()
    await path.apply(path.toxics.changed({"stall": False}))
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    assert await asyncio.wait_for(late_reader.readexactly(4), 5) == b"late"
    writer.close()
    late_writer.close()


async def test_reset_peer_resets_open_and_new_connections(path: Path) -> None:
    reader, writer = await _connect(path)
    await _round_trip(reader, writer)
    await path.apply(path.toxics.changed({"reset_peer": 1.0}))
    with pytest.raises(ConnectionResetError):
        await _round_trip(reader, writer)
    new_reader, new_writer = await _connect(path)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _round_trip(new_reader, new_writer)
    await path.apply(path.toxics.changed({"reset_peer": 0}))
    reader, writer = await _connect(path)
    assert await _round_trip(reader, writer) == b"ping"
    writer.close()


async def test_occasional_resets_hit_some_connections(path: Path) -> None:
    path._rng = random.Random(7)
    links = [await _connect(path) for _ in range(10)]
    for reader, writer in links:
        await _round_trip(reader, writer)
    await path.apply(path.toxics.changed({"reset_peer": 0.5}))  # per connection and second
    await asyncio.sleep(1.0)
    await path.apply(path.toxics.changed({"reset_peer": 0}))
    alive = 0
    for reader, writer in links:
        with contextlib.suppress(ConnectionResetError, asyncio.IncompleteReadError):
            await _round_trip(reader, writer)
            alive += 1
        writer.close()
    assert 0 < alive < 10, alive
    assert path.resets == 10 - alive


async def test_down_refuses_and_resets_then_comes_back(path: Path) -> None:
    reader, writer = await _connect(path)
    await _round_trip(reader, writer)
    await path.apply(path.toxics.changed({"down": True}))
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _round_trip(reader, writer)
    with pytest.raises(ConnectionRefusedError):
        await _connect(path)
    await path.apply(path.toxics.changed({"down": False}))
    reader, writer = await _connect(path)
    assert await _round_trip(reader, writer) == b"ping"
    writer.close()


async def test_control_interface_changes_and_clears_toxics(path: Path) -> None:
    app = control_app({"echo": path})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        r = await http.patch("/paths/echo", json={"latency_ms": 50, "stall": True})
        assert r.status_code == 200, r.text
        assert r.json()["toxics"] == {
            "latency_ms": 50.0,
            "stall": True,
            "reset_peer": 0.0,
            "down": False,
        }
        r = await http.patch("/paths/echo", json={"reset_peer": 0.1})
        assert r.json()["toxics"]["latency_ms"] == 50.0  # kept
        assert (await http.patch("/paths/echo", json={"jitter": 1})).status_code == 422
        assert (await http.patch("/paths/echo", json={"reset_peer": 2})).status_code == 422
        assert (await http.patch("/paths/nope", json={})).status_code == 404
        r = await http.delete("/toxics")
        assert r.json()[0]["toxics"]["stall"] is False
        assert path.flowing.is_set()
        listed = (await http.get("/paths")).json()
        assert listed[0]["name"] == "echo"
