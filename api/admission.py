"""Admission at submit (issue 17): a tenant's submit rate and its active-jobs quota, checked
before anything is written. Over either, :class:`~smartq.errors.OverQuota` (429 with
``Retry-After``, :mod:`api.errors`): nothing is written, nothing is kept under the idempotency
key, and the same request succeeds once there is room.

* **Submit rate**: a token bucket per tenant in this API process (:class:`~scheduler.limits.
  TokenBucket`, one second's worth of burst); a batch is one request. ``Retry-After`` comes
  from the bucket's next token (:func:`api.retry_after.after_wait`). Each API process allows
  the whole rate: with n replicas a tenant may submit up to n times it.
* **Active jobs** (waiting + running): counted in the submit's own transaction, after the
  tenant's lock (:func:`~api.store.quotas.lock_tenant`), so concurrent submits count one
  after another and the quota is exact; only for tenants that have one. A batch of n needs
  room for all n. Jobs end when they end, so ``Retry-After`` is a short spread wait
  (:data:`~api.retry_after.ACTIVE_JOBS_SECONDS`), not a prediction.
* **Quotas**: the tenant's row in ``tenants`` or the settings' default, kept at most a second
  (``SMARTQ_LIMITS_POLL_SECONDS`` if shorter) so a submit is not one more query; what an admin
  sets through this process applies at once (:meth:`Admission.forget`).

The submit rate is checked first, before any database work, since shedding that load is its
point: a replay of an accepted idempotency key over the rate is refused too (and replays once
there is a token). Over the active-jobs quota, a replay is answered as a replay: it writes
nothing, and the submit is in the database already when it counts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api import retry_after
from api.store import quotas as store
from scheduler.limits import TokenBucket
from smartq.errors import OverQuota, SubmissionRejected
from smartq.settings import Settings

#: The longest a process trusts a tenant's quotas it read.
CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Quotas:
    """What applies to a tenant: its row's values, else the settings' defaults (None:
    unlimited)."""

    max_active_jobs: int | None = None
    submit_rate: float | None = None
    max_running: int | None = None
    weight: float = 1.0


def effective(row: Mapping[Any, Any] | None, settings: Settings) -> Quotas:
    """The quotas of a tenant whose row is ``row`` (None: no row)."""

    def pick(field: str, default: Any) -> Any:
        value = None if row is None else row[field]
        return default if value is None else value

    return Quotas(
        max_active_jobs=pick("max_active_jobs", settings.tenant_max_active_jobs),
        submit_rate=pick("submit_rate", settings.tenant_submit_rate),
        max_running=pick("max_running", settings.tenant_max_running),
        weight=pick("weight", 1.0),
    )


class Admission:
    """One API process's admission: its buckets and the quotas it read."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.cache_for = min(CACHE_SECONDS, settings.limits_poll_seconds)
        self.clock = clock
        self.draw = draw
        self._quotas: dict[str, tuple[float, Quotas]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def admit(self, conn: AsyncConnection, tenant: str) -> Quotas:
        """The tenant's quotas, having taken one request of its submit rate (raises
        :class:`OverQuota` when there is no token). Call it before the submit's transaction."""
        quotas = await self.quotas(conn, tenant)
        self._take_request(tenant, quotas.submit_rate)
        return quotas

    async def quotas(self, conn: AsyncConnection, tenant: str) -> Quotas:
        """What applies to ``tenant`` now (read again once the cache's second is over)."""
        now = self.clock()
        cached = self._quotas.get(tenant)
        if cached is not None and now - cached[0] < self.cache_for:
            return cached[1]
        async with conn.begin():
            row = await store.tenant_row(conn, tenant)
        quotas = effective(row, self.settings)
        self._quotas[tenant] = (now, quotas)
        return quotas

    def forget(self, tenant: str) -> None:
        """Read the tenant's quotas again on its next submit (after an admin changed them)."""
        self._quotas.pop(tenant, None)

    def _take_request(self, tenant: str, rate: float | None) -> None:
        if rate is None:
            self._buckets.pop(tenant, None)
            return
        now = self.clock()
        bucket = self._buckets.get(tenant)
        if bucket is None or bucket.rate != rate:  # new, or an admin changed the rate
            bucket = self._buckets[tenant] = TokenBucket(rate, now=now)
        if bucket.take(now):
            return
        seconds = retry_after.after_wait(bucket.next_at(now) - now, self.draw())
        raise OverQuota(
            f"tenant {tenant!r} is over its submit rate of {rate:g} requests/s; "
            f"retry in {seconds}s",
            "submit_rate",
            {"limit": rate, "retry_after": seconds},
            seconds,
        )

    async def hold_room(self, conn: AsyncConnection, tenant: str, quotas: Quotas, n: int) -> None:
        """Inside the submit's transaction, before its inserts: raise :class:`OverQuota`
        unless the tenant's active jobs leave room for ``n`` more, and keep the count true
        until the transaction ends. A submission larger than the whole quota can never fit:
        a 422 (:class:`SubmissionRejected`), not a 429 to retry forever."""
        limit = quotas.max_active_jobs
        if limit is None:
            return
        if n > limit:
            raise SubmissionRejected(
                f"{n} jobs can never fit tenant {tenant!r}'s quota of {limit} active jobs",
                {"quota": "max_active_jobs", "limit": limit, "requested": n},
            )
        await store.lock_tenant(conn, tenant)
        active = (await store.active_counts(conn, [tenant]))[tenant]
        if active + n <= limit:
            return
        seconds = retry_after.spread(retry_after.ACTIVE_JOBS_SECONDS, self.draw())
        raise OverQuota(
            f"tenant {tenant!r} has {active} active jobs of its quota of {limit}; "
            f"{n} more do not fit, retry in {seconds}s",
            "max_active_jobs",
            {"limit": limit, "active": active, "requested": n, "retry_after": seconds},
            seconds,
        )
