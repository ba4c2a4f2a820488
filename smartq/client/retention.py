"""Deleting finished jobs from the SDK: :class:`Retention` for :class:`~smartq.client.Client`
and :class:`AsyncRetention` for :class:`~smartq.client.AsyncClient` (mixins, so the clients'
modules stay small). Requests are built in :mod:`smartq.client._core`, like the rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typing_extensions import Unpack

from smartq.client._core import Call, JobRef, PurgeFilter, delete_call, purge_call, purged


class Retention:
    """``client.delete_job(id)`` and ``client.purge(...)``."""

    def _send(self, call: Call) -> Any:
        raise NotImplementedError

    def delete_job(self, job_id: JobRef) -> None:
        """Delete a finished job with its attempts, logs and result (the ``cancel`` scope).
        :class:`~smartq.errors.Conflict` if it is active or an unfinished job depends on it,
        :class:`~smartq.errors.NotFound` if there is no such job (or it is already gone)."""
        self._send(delete_call(job_id))

    def purge(
        self, status: str | Iterable[str] | None = None, **flt: Unpack[PurgeFilter]
    ) -> dict[str, Any]:
        """Delete the finished jobs a filter picks (admin keys): ``status`` (final ones),
        ``type``, ``tenant``, ``batch_id``, ``finished_before``; at least one. ``dry_run``
        only counts. Returns ``{"matched", "deleted", "kept", "dry_run", "more"}``; a purge
        larger than one request's cap is asked again until nothing is left."""
        call = purge_call(status, flt)
        total: dict[str, Any] | None = None
        while total is None or total["more"]:
            total = purged(total, self._send(call))
        return total


class AsyncRetention:
    """:class:`Retention`, awaited."""

    async def _send(self, call: Call) -> Any:
        raise NotImplementedError

    async def delete_job(self, job_id: JobRef) -> None:
        """:meth:`Retention.delete_job`."""
        await self._send(delete_call(job_id))

    async def purge(
        self, status: str | Iterable[str] | None = None, **flt: Unpack[PurgeFilter]
    ) -> dict[str, Any]:
        """:meth:`Retention.purge`."""
        call = purge_call(status, flt)
        total: dict[str, Any] | None = None
        while total is None or total["more"]:
            total = purged(total, await self._send(call))
        return total
