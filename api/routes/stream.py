"""``WS /jobs/stream``: live job statuses, log lines and monitoring, filtered per client.

Protocol (documented in the README):

- Connect with optional filters ``?job_id=…`` (repeatable), ``batch_id=…`` (repeatable),
  ``status=…`` (repeatable), ``type=…`` (repeatable: ``job.status``, ``job.log``,
  ``monitoring.queue``, ``monitoring.resource``, ``monitoring.logger``, or ``monitoring``).
- The server first sends ``{"type": "stream.subscribed", "filter": {...}, "buffer": n}``,
  then the current status of each job named (``job.status`` with ``"snapshot": true``), then
  live events.
- Change the filter with a JSON message: ``{"action": "subscribe" | "unsubscribe" | "set",
  "job_ids": [...], "batch_ids": [...], "statuses": [...], "types": [...]}``; each change is
  answered with ``stream.subscribed`` and snapshots of the newly watched jobs.
  ``{"action": "ping"}`` is answered with ``{"type": "stream.pong"}``.
- Close codes: 4400 bad filter or message, 4404 unknown job or batch, 4408 too slow,
  1001 server shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.engine import RowMapping

from api import store
from api.deps import ApiContext
from api.stream import (
    CLOSE_NOT_FOUND,
    Command,
    FilterError,
    StreamClient,
    command_from_query,
    parse_command,
)
from models.enums import JobStatus
from models.messages import JobStatusEvent

log = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])


def _snapshot_event(row: RowMapping) -> JobStatusEvent:
    return JobStatusEvent(
        job_id=row["id"],
        status=JobStatus(row["status"]),
        attempt=row["attempts"],
        ts=row["updated_at"],
        batch_id=row["batch_id"],
        worker_id=row["worker_id"],
        reason=row["status_reason"],
        error=row["error"],
        job_type=row["type"],
        snapshot=True,
    )


def _ids(ids: set[uuid.UUID]) -> str:
    shown = sorted(str(i) for i in ids)
    return ", ".join(shown[:2]) + (" …" if len(shown) > 2 else "")


class Session:
    """One client connection: applies commands, reads the socket, writes the client's events."""

    def __init__(self, ctx: ApiContext, websocket: WebSocket, client: StreamClient) -> None:
        self.ctx = ctx
        self.ws = websocket
        self.client = client

    async def apply(self, cmd: Command) -> None:
        """Change the filter first, then read the current statuses: an event published in
        between is buffered, and skipped at sending time if the snapshot is newer. (Each change
        to the filter re-indexes the client in the hub at once.)"""
        if cmd.action == "ping":
            self.client.send_first('{"type":"stream.pong"}')
            return
        new_jobs, new_batches = self.client.filter.apply(cmd)
        rows: list[RowMapping] = []
        async with self.ctx.engine.connect() as conn:
            if new_jobs:
                rows = await store.job_statuses(conn, new_jobs)
                missing = set(new_jobs) - {r["id"] for r in rows}
                if missing:
                    raise FilterError(f"no job {_ids(missing)}", CLOSE_NOT_FOUND)
            if new_batches:
                known, batch_rows = await store.batch_statuses(conn, new_batches)
                missing = set(new_batches) - known
                if missing:
                    raise FilterError(f"no batch {_ids(missing)}", CLOSE_NOT_FOUND)
                jobs_by_batch: dict[uuid.UUID, list[uuid.UUID]] = {b: [] for b in new_batches}
                for r in batch_rows:
                    jobs_by_batch[r["batch_id"]].append(r["id"])
                self.client.filter.add_batches(jobs_by_batch)
                rows += batch_rows
        reply = {
            "type": "stream.subscribed",
            "filter": self.client.filter.describe(),
            "buffer": self.client.capacity,
        }
        self.client.send_first(orjson.dumps(reply).decode())
        hub_batches = self.ctx.hub.batch_of
        for row in rows:
            self.client.snapshot(_snapshot_event(row), hub_batches)

    async def read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text") or message.get("bytes") or b""
            try:
                await self.apply(parse_command(data))
            except FilterError as exc:
                self.client.close(exc.code, str(exc))
                return

    async def write(self) -> None:
        while True:
            await self.ws.send_text(await self.client.next())

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self.read()),
            asyncio.create_task(self.write()),
            asyncio.create_task(self.client.closed.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | RuntimeError
            ):
                log.warning(
                    "stream session failed",
                    exc_info=result,
                    extra={"action": "stream.session_failed"},
                )


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with ``code``; give up after a moment if the client does not read (the transport
    then drops the connection)."""
    data = reason.encode()[:120].decode(errors="ignore")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await websocket.close(code, data)


@router.websocket("/jobs/stream")
async def job_stream(websocket: WebSocket) -> None:
    """Live events; see the module docstring for the protocol."""
    ctx: ApiContext = websocket.app.state.ctx
    await websocket.accept()
    client = ctx.hub.connect()
    session = Session(ctx, websocket, client)
    try:
        try:
            await session.apply(command_from_query(websocket.query_params.multi_items()))
        except FilterError as exc:
            client.close(exc.code, str(exc))
        if client.close_code is None:
            await session.run()
        if client.close_code is not None:
            await _close(websocket, client.close_code, client.close_reason)
    finally:
        # Only now: the hub waits for its clients to leave before the server shuts down.
        ctx.hub.disconnect(client)
