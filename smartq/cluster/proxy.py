"""The fault proxy's data plane: one listener per path, forwarding to its upstream, with the
path's :class:`~smartq.cluster.toxics.Toxics` switched at run time.

A connection is a :class:`Link`: two pumps (down → up, up → down), each a reader that stamps
every chunk with the time it may leave (now + latency) and a writer that waits for that time,
so latency delays traffic without serialising it. Both wait while the path is stalled. A reset
sends RST to both ends (``SO_LINGER`` 0), the way a middlebox that drops its state does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from dataclasses import dataclass

from smartq.cluster.toxics import Toxics

log = logging.getLogger(__name__)

CHUNK = 65_536
#: Chunks a direction may hold in its delay line before it stops reading (back-pressure).
DELAY_LINE = 256
#: How long an upstream connect may take before the downstream connection is reset.
CONNECT_TIMEOUT = 10.0
#: How often ``reset_peer`` draws its dice; the probability is per connection and second.
RESET_TICK = 0.1


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        host, _, port = text.rpartition(":")
        return cls(host, int(port))


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Abort with RST rather than FIN."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Link:
    """One proxied connection."""

    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.path = path
        self.down_reader, self.down_writer = reader, writer
        self.up_writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await self.path.flowing.wait()  # a stalled path holds new connections too
            up = self.path.upstream
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(up.host, up.port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                log.info("upstream %s refused", up, extra={"action": "proxy.upstream_refused"})
                self.reset()
                return
            self.up_writer = up_writer
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(self.down_reader, up_writer))
                group.create_task(self._pump(up_reader, self.down_writer))
        except* (OSError, asyncio.IncompleteReadError):
            self.reset()
        finally:
            self.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(DELAY_LINE)
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while True:
                await self.path.flowing.wait()
                data = await src.read(CHUNK)
                await line.put((loop.time() + self.path.toxics.delay, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await line.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self.path.flowing.wait()
                if not data:
                    if dst.can_write_eof() and not dst.transport.is_closing():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        async with asyncio.TaskGroup() as group:
            group.create_task(read())
            group.create_task(write())

    def reset(self) -> None:
        _reset(self.down_writer)
        _reset(self.up_writer)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def close(self) -> None:
        for writer in (self.down_writer, self.up_writer):
            if writer is not None and not writer.transport.is_closing():
                writer.close()


class Path:
    """A listener and its open links; ``apply(toxics)`` switches what it does."""

    def __init__(
        self, name: str, listen: Address, upstream: Address, rng: random.Random | None = None
    ) -> None:
        self.name, self.listen, self.upstream = name, listen, upstream
        self.toxics = Toxics()
        self.links: set[Link] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._dice: asyncio.Task[None] | None = None
        self._rng = rng or random.Random()

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.listen.host, self.listen.port, reuse_address=True
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.reset_all()

    async def apply(self, toxics: Toxics) -> None:
        """Switch to ``toxics``: open or close the listener, stall or release the flow, start
        or stop the reset dice."""
        self.toxics = toxics
        if toxics.down:
            await self.stop()
        else:
            await self.start()
        if toxics.stall:
            self.flowing.clear()
        else:
            self.flowing.set()
        if toxics.reset_peer >= 1:
            self.reset_all()
        if toxics.reset_peer > 0 and self._dice is None:
            self._dice = asyncio.create_task(self._roll())
        elif toxics.reset_peer == 0 and self._dice is not None:
            self._dice.cancel()
            self._dice = None
        log.info(
            "path %s: %s", self.name, toxics, extra={"action": "proxy.toxics", "path": self.name}
        )

    def reset_all(self) -> None:
        for link in list(self.links):
            self._reset(link)

    def _reset(self, link: Link) -> None:
        self.resets += 1
        link.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = Link(self, reader, writer)
        if self.toxics.reset_peer >= 1:
            self._reset(link)
            return
        link.task = asyncio.current_task()
        self.links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            link.reset()
        finally:
            self.links.discard(link)

    async def _roll(self) -> None:
        while True:
            await asyncio.sleep(RESET_TICK)
            chance = self.toxics.reset_peer * RESET_TICK
            for link in list(self.links):
                if self._rng.random() < chance:
                    self._reset(link)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": str(self.listen),
            "upstream": str(self.upstream),
            "toxics": self.toxics.as_json(),
            "connections": len(self.links),
            "accepted": self.accepted,
            "resets": self.resets,
        }
