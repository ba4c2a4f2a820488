"""Deleting finished jobs from the SDK: :class:`Retention` for :class:`~smartq.client.Client`
and :class:`AsyncRetention` for :class:`~smartq.client.AsyncClient` (mixins, so the clients'
modules stay small), and the requests they send, built here as :mod:`smartq.client._core`
builds the rest."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import quote

import orjson
from typing_extensions import Unpack

from smartq.client._core import Call, JobRef, ref_id


def delete_call(job_id: JobRef) -> Call:
    """``DELETE /jobs/{id}``: a finished job and everything it left (204)."""
    return Call("DELETE", f"/jobs/{quote(ref_id(job_id), safe='')}")


class PurgeFilter(TypedDict, total=False):
    """What a purge takes besides its statuses; each given narrows it."""

    type: str
    tenant: str
    batch_id: JobRef
    finished_before: datetime
    dry_run: bool


def purge_call(status: str | Iterable[str] | None, flt: PurgeFilter) -> Call:
    """``POST /admin/purge`` with the fields given; purging again what is left does no harm,
    so it may be retried."""
    body: dict[str, Any] = {k: v for k, v in flt.items() if k in ("type", "tenant")}
    if status is not None:
        body["status"] = [status] if isinstance(status, str) else list(status)
    if "batch_id" in flt:
        body["batch_id"] = ref_id(flt["batch_id"])
    if "finished_before" in flt:
        body["finished_before"] = flt["finished_before"].isoformat()
    body["dry_run"] = flt.get("dry_run", False)
    return Call("POST", "/admin/purge", body=orjson.dumps(body))


def purged(total: dict[str, Any] | None, answer: dict[str, Any]) -> dict[str, Any]:
    """One purge answer added to those before it (the first purge's count is what matched)."""
    if total is None:
        return dict(answer)
    return {**total, "deleted": total["deleted"] + answer["deleted"], "more": answer["more"]}


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
