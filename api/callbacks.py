"""A batch's ``callbacks`` checked at submit (``POST /jobs/batch``, and a schedule's batch):
each URL by the SSRF guard as written (:func:`smartq.urlguard.check_url`: the scheme, a
literal address, ``localhost``), and a secret to sign with must apply to the tenant. The
deliverer checks the URL again at each delivery, against what its host then resolves to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.callback_schemas import CallbackCreate
from api.store import callbacks as store
from smartq import urlguard
from smartq.errors import CallbackRefused, SubmissionRejected
from smartq.settings import Settings


def check_urls(callbacks: Sequence[CallbackCreate], settings: Settings) -> list[dict[str, Any]]:
    """The callbacks as stored (``{"url", "events"}``); :class:`SubmissionRejected` (422)
    naming the first URL the guard refuses and why."""
    allowance = settings.callback_allowance()
    out = []
    for i, callback in enumerate(callbacks):
        try:
            urlguard.check_url(callback.url, allowance)
        except CallbackRefused as exc:
            raise SubmissionRejected(
                f"callbacks[{i}].url {callback.url!r} is refused: {exc}",
                {"callback": i, "url": callback.url, "reason": str(exc)},
            ) from None
        out.append({"url": callback.url, "events": [e.value for e in callback.events]})
    return out


async def require_secret(conn: AsyncConnection, tenant: str, settings: Settings) -> None:
    """Deliveries are never sent unsigned: with no secret for the tenant and no default,
    a batch asking for callbacks is refused (422) rather than accepted to fail later."""
    if settings.callback_secret or await store.tenant_secret(conn, tenant):
        return
    raise SubmissionRejected(
        f"callbacks need a secret to sign with, and tenant {tenant!r} has none: an admin sets "
        "one (PUT /admin/tenants/{name}/callback-secret) or the server's "
        "SMARTQ_CALLBACK_SECRET",
        {"tenant": tenant},
    )
