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
- Frames: one event (a JSON object) per frame. With ``?frames=batched`` a frame holds a JSON
  array of the events waiting for the client, in order, at most ``FRAME_EVENTS``, whenever
  more than one waits (a single event still comes as an object): a job logging thousands of
  lines a second costs one frame per few hundred lines, not one per line. The dashboard
  asks for it.
- Authentication: ``Authorization: Bearer <key>`` on the handshake, or, for browsers (which
  cannot set headers on a WebSocket), the subprotocols ``["smartq", "smartq.bearer.<key>"]``:
  the server answers ``smartq`` and never echoes the key. Keys in the URL are refused. The key
  is checked before anything is sent and needs the ``read`` scope; monitoring events need
  ``monitor``. A key's stream sees its tenant's jobs only; an admin's sees every tenant's, or
  ``?tenant=`` one.
- Close codes: 4400 bad filter or message (or a key in the URL), 4401 no key, an invalid one,
  or one revoked or expired while the stream is open (within a second or two), 4403 the key
  lacks the right, 4404 unknown job or batch (or another tenant's), 4408 too slow,
  1013 the key cannot be checked now (database away; try again), 1001 server shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.auth import key_in_url, tenant_access, verified
from api.deps import ApiContext
from api.stream import Command, StreamClient, StreamFilter, command_from_query, parse_command
from api.stream.client import (
    CLOSE_BAD_FILTER,
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
)
from models.enums import JobStatus
from models.messages import JobStatusEvent
from smartq.errors import StreamRequestError
from smartq.keys import Caller, Scope

log = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])

#: The most events one batched frame holds.
FRAME_EVENTS = 500
#: ``?frames=``: one event per frame (the default), or arrays of the events waiting.
FRAMES = ("one", "batched")


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
        tenant=row["tenant"],
        snapshot=True,
    )


def _ids(ids: set[uuid.UUID]) -> str:
    shown = sorted(str(i) for i in ids)
    return ", ".join(shown[:2]) + (" …" if len(shown) > 2 else "")


async def _statuses(
    conn: AsyncConnection, jobs: list[uuid.UUID], batches: list[uuid.UUID], tenant: str | None
) -> tuple[list[RowMapping], dict[uuid.UUID, list[uuid.UUID]]]:
    """The current status of ``jobs`` and of the jobs of ``batches``, and those jobs by batch;
    raises :class:`StreamRequestError` for a job or batch that does not exist in ``tenant``."""
    rows: list[RowMapping] = []
    jobs_by_batch: dict[uuid.UUID, list[uuid.UUID]] = {}
    if jobs:
        rows = await store.job_statuses(conn, jobs, tenant)
        missing = set(jobs) - {r["id"] for r in rows}
        if missing:
            raise StreamRequestError(f"no job {_ids(missing)}", StreamRequestError.NOT_FOUND)
    if batches:
        known, batch_rows = await store.batch_statuses(conn, batches, tenant)
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

    def __init__(
        self, ctx: ApiContext, websocket: WebSocket, client: StreamClient, batched: bool = False
    ) -> None:
        self.ctx = ctx
        self.ws = websocket
        self.client = client
        self.batched = batched

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
            rows, jobs_by_batch = await _statuses(
                conn, change.new_jobs, change.new_batches, self.client.filter.tenant
            )
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
        if not self.batched:
            while True:
                await self.ws.send_text(await self.client.next())
        while True:
            texts = await self.client.next_many(FRAME_EVENTS)
            await self.ws.send_text(texts[0] if len(texts) == 1 else f"[{','.join(texts)}]")

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


#: The subprotocol a browser offers beside its key, and the one the server answers with.
SUBPROTOCOL = "smartq"
_KEY_SUBPROTOCOL = "smartq.bearer."


def presented_key(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The key a handshake presents (header first, else subprotocol) and the subprotocol to
    answer with (``smartq`` when offered; never the one carrying the key)."""
    offered = websocket.scope.get("subprotocols") or []
    answer = SUBPROTOCOL if SUBPROTOCOL in offered else None
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        return (credentials.strip() if scheme.lower() == "bearer" else ""), answer
    for protocol in offered:
        if protocol.startswith(_KEY_SUBPROTOCOL):
            return protocol[len(_KEY_SUBPROTOCOL) :], answer
    return None, answer


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


async def _admit(
    ctx: ApiContext, websocket: WebSocket
) -> tuple[Caller, StreamFilter, list[tuple[str, str]], bool]:
    """Who connects and what they may see, before anything is sent; the query parameters
    left for the filter, and whether frames are batched. Raises :class:`_Refused` with the
    close code."""
    params = websocket.query_params.multi_items()
    if key_in_url(params) is not None:
        raise _Refused(CLOSE_BAD_FILTER, "API keys are not accepted in the URL")
    frames = [v for k, v in params if k == "frames"]
    if any(f not in FRAMES for f in frames):
        raise _Refused(CLOSE_BAD_FILTER, f"frames must be one of {', '.join(FRAMES)}")
    presented, _ = presented_key(websocket)
    try:
        async with ctx.engine.connect() as conn:
            caller = await verified(ctx, conn, presented)
    except (DBAPIError, OSError, TimeoutError):  # the database is away: the client may retry
        log.warning(
            "could not check a stream's key",
            exc_info=True,
            extra={"action": "stream.auth_unavailable"},
        )
        raise _Refused(CLOSE_TRY_AGAIN, "cannot check the key now; try again") from None
    if caller is None:
        reason = "an API key is required" if presented is None else "invalid API key"
        raise _Refused(CLOSE_UNAUTHORIZED, reason)
    if not caller.can(Scope.READ):
        raise _Refused(CLOSE_FORBIDDEN, "this key lacks the 'read' scope the stream needs")
    tenants = [v for k, v in params if k == "tenant"]
    try:
        access = tenant_access(caller, tenants[-1] if tenants else None)
    except HTTPException as exc:
        code = CLOSE_FORBIDDEN if exc.status_code == 403 else CLOSE_BAD_FILTER
        raise _Refused(
            code, str(exc.detail["error"] if isinstance(exc.detail, dict) else exc.detail)
        ) from None
    start = StreamFilter(tenant=access.tenant, monitor=caller.can(Scope.MONITOR))
    left = [(k, v) for k, v in params if k not in ("tenant", "frames")]
    return caller, start, left, bool(frames) and frames[-1] == "batched"


@router.websocket("/jobs/stream")
async def job_stream(websocket: WebSocket) -> None:
    """Live events; see the module docstring for the protocol."""
    ctx: ApiContext = websocket.app.state.ctx
    _, subprotocol = presented_key(websocket)
    try:
        caller, start, params, batched = await _admit(ctx, websocket)
    except _Refused as refused:
        # Accepted only to say why in a close code a browser can read; nothing else is sent.
        await websocket.accept(subprotocol)
        await _close(websocket, refused.code, refused.reason)
        return
    await websocket.accept(subprotocol)
    client = ctx.hub.connect(start, caller.key_id)
    session = Session(ctx, websocket, client, batched)
    try:
        try:
            await session.apply(command_from_query(params))
        except StreamRequestError as exc:
            client.reject(exc)
        if client.close_code is None:
            await session.run()
        if client.close_code is not None:
            await _close(websocket, client.close_code, client.close_reason)
    finally:
        # Only now: the hub waits for its clients to leave before the server shuts down.
        ctx.hub.disconnect(client)
