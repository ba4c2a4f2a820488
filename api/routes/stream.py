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
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.deps import ApiContext
from api.stream import Command, StreamClient, command_from_query, parse_command
from models.enums import JobStatus
from models.messages import JobStatusEvent
from smartq.errors import StreamRequestError

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


async def _statuses(
    conn: AsyncConnection, jobs: list[uuid.UUID], batches: list[uuid.UUID]
) -> tuple[list[RowMapping], dict[uuid.UUID, list[uuid.UUID]]]:
    """The current status of ``jobs`` and of the jobs of ``batches``, and those jobs by batch;
    raises :class:`StreamRequestError` for a job or batch that does not exist."""
    rows: list[RowMapping] = []
    jobs_by_batch: dict[uuid.UUID, list[uuid.UUID]] = {}
    if jobs:
        rows = await store.job_statuses(conn, jobs)
        missing = set(jobs) - {r["id"] for r in rows}
        if missing:
            raise StreamRequestError(f"no job {_ids(missing)}", StreamRequestError.NOT_FOUND)
    if batches:
        known, batch_rows = await store.batch_statuses(conn, batches)
        missing = set(batches) - known
        if missing:
            raise StreamRequestError(f"no batch {_ids(missing)}", StreamRequestError.NOT_FOUND)
        jobs_by_batch = {b: [] for b in batches}
        for r in batch_rows:
            jobs_by_batch[r["batch_id"]].append(r["id"])
        rows += batch_rows
    return rows, jobs_by_batch


class Session:
    """One client connection: applies commands, reads the socket, writes the client's events."""

    def __init__(self, ctx: ApiContext, websocket: WebSocket, client: StreamClient) -> None:
        self.ctx = ctx
        self.ws = websocket
        self.client = client

    async def apply(self, cmd: Command) -> None:
        """Change the filter first, then read the current statuses: an event published in
        between is buffered, and skipped at sending time if the snapshot is newer. (The hub
        re-indexes the client each time its filter is replaced.)"""
        if cmd.action == "ping":
            self.client.send_first('{"type":"stream.pong"}')
            return
        hub = self.ctx.hub
        change = self.client.filter.with_command(cmd)
        hub.refilter(self.client, change.filter)
        async with self.ctx.engine.connect() as conn:
            rows, jobs_by_batch = await _statuses(conn, change.new_jobs, change.new_batches)
            if jobs_by_batch:
                hub.refilter(self.client, self.client.filter.with_batches(jobs_by_batch))
        reply = {
            "type": "stream.subscribed",
            "filter": self.client.filter.describe(),
            "buffer": self.client.capacity,
        }
        self.client.send_first(orjson.dumps(reply).decode())
        for row in rows:
            self.client.snapshot(_snapshot_event(row), hub.batch_of)

    async def read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text") or message.get("bytes") or b""
            try:
                await self.apply(parse_command(data))
            except StreamRequestError as exc:
                self.client.reject(exc)
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
        except StreamRequestError as exc:
            client.reject(exc)
        if client.close_code is None:
            await session.run()
        if client.close_code is not None:
            await _close(websocket, client.close_code, client.close_reason)
    finally:
        # Only now: the hub waits for its clients to leave before the server shuts down.
        ctx.hub.disconnect(client)
