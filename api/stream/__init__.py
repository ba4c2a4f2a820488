"""The live event hub behind ``WS /jobs/stream``: one broker queue per API process, fanned out
to every connected client through a bounded buffer each.

Each API process consumes one exclusive, auto-deleted stream queue (``job.status.#``,
``job.logs.#``, ``job.monitoring.#``; see :func:`smartq.topology.stream_queue`), so several
API processes each stream everything. For every event the hub

1. drops a status event that is not newer than the last one it saw for that job (a redelivered
   duplicate, or a scheduler event overtaken by the API's own cancellation): per job, statuses
   only move forward in :func:`status_order`;
2. feeds the metrics (:mod:`api.metrics`) and keeps the latest monitoring snapshots;
3. offers the raw JSON text to each client whose filter matches. Only the clients the
   :class:`ClientIndex` files under the event's job, batch or channel are checked, so an event
   costs in proportion to the clients it may concern, not to every client connected.

A client's buffer holds at most ``capacity`` events. When it is full, new events for that
client are dropped and counted; the next event that fits is preceded by
``{"type": "stream.dropped", "missed": n}``. A client that keeps dropping for longer than
``stall_seconds`` is closed with :data:`CLOSE_TOO_SLOW`. Nothing here ever waits on a client,
so a slow one cannot hold up the others, and its memory is bounded by its buffer.

The modules, each importing only those before it: :mod:`~api.stream.commands` (what a client
sends), :mod:`~api.stream.filters` (what it wants, a frozen value), :mod:`~api.stream.client`
(its buffer and close codes), :mod:`~api.stream.index` (clients by job, batch and channel),
:mod:`~api.stream.hub` (the broker side).
"""

from api.stream.client import (
    CLOSE_BAD_FILTER,
    CLOSE_GOING_AWAY,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_SLOW,
    StreamClient,
    status_order,
)
from api.stream.commands import Command, command_from_query, parse_command
from api.stream.filters import Change, EventKeys, IndexKeys, StreamFilter
from api.stream.hub import StreamHub
from api.stream.index import ClientIndex

__all__ = [
    "CLOSE_BAD_FILTER",
    "CLOSE_GOING_AWAY",
    "CLOSE_NOT_FOUND",
    "CLOSE_TOO_SLOW",
    "Change",
    "ClientIndex",
    "Command",
    "EventKeys",
    "IndexKeys",
    "StreamClient",
    "StreamFilter",
    "StreamHub",
    "command_from_query",
    "parse_command",
    "status_order",
]
