"""The hub's index of its clients by what they watch: job, batch, or :data:`Channel` (event
type and status, for filters that name no job or batch). It only has to give a superset of
the clients whose filter accepts an event: the filter check decides."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TypeVar

from api.stream.client import StreamClient
from api.stream.filters import Channel, EventKeys, IndexKeys


class ClientIndex:
    """The clients an event may concern, so that the hub checks only their filters: clients by
    watched job (named, or in a watched batch), by watched batch, and, for what is not keyed by
    job or batch (every job; monitoring), by :data:`Channel`."""

    def __init__(self) -> None:
        self._by_job: dict[int, set[StreamClient]] = {}
        self._by_batch: dict[int, set[StreamClient]] = {}
        self._by_channel: dict[Channel, set[StreamClient]] = {}
        self._keys: dict[StreamClient, IndexKeys] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def update(self, client: StreamClient) -> None:
        """File ``client`` under its filter's keys (call on connect and whenever its filter is
        replaced)."""
        new = client.filter.index_keys()
        old = self._keys.get(client, _NOWHERE)
        if new is old:
            return
        _refile(self._by_job, client, old.jobs, new.jobs)
        _refile(self._by_batch, client, old.batches, new.batches)
        _refile(self._by_channel, client, old.channels, new.channels)
        self._keys[client] = new

    def remove(self, client: StreamClient) -> None:
        old = self._keys.pop(client, None)
        if old is not None:
            _refile(self._by_job, client, old.jobs, frozenset())
            _refile(self._by_batch, client, old.batches, frozenset())
            _refile(self._by_channel, client, old.channels, frozenset())

    def candidates(self, keys: EventKeys) -> AbstractSet[StreamClient]:
        """The clients filed under the event's channel, job or batch; read it before any
        change to the index (it may be one of the index's own sets)."""
        found = self._by_channel.get(keys.channel, _NOBODY)
        if keys.job is None:
            return found
        by_job = self._by_job.get(keys.job, _NOBODY)
        by_batch = _NOBODY if keys.batch is None else self._by_batch.get(keys.batch, _NOBODY)
        if not by_job and not by_batch:
            return found
        if not found and not by_batch:
            return by_job
        if not found and not by_job:
            return by_batch
        return found | by_job | by_batch


_NOWHERE = IndexKeys()
_NOBODY: frozenset[StreamClient] = frozenset()
_K = TypeVar("_K")


def _refile(
    index: dict[_K, set[StreamClient]],
    client: StreamClient,
    old: frozenset[_K],
    new: frozenset[_K],
) -> None:
    for key in old - new:
        clients = index[key]
        clients.discard(client)
        if not clients:
            del index[key]
    for key in new - old:
        index.setdefault(key, set()).add(client)
