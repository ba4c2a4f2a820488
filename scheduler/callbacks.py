"""Batch callbacks, sent by the leading scheduler on a timer of its own (a side task of its
leadership, never inside a pass), with its own connections and an outbox of deliveries.

Every ``SMARTQ_CALLBACK_POLL_SECONDS``: (1) derive — for each callback whose batch has not
been seen finished, read its batch's state and insert the events now due
(:func:`scheduler.delivery.due_events`), once each, in one transaction that also marks the
callbacks of finished batches done, so they are never scanned again; (2) send — the pending
deliveries that are due, at most ``SMARTQ_CALLBACK_CONCURRENCY`` at once, each in a task of
its own, so a slow receiver never holds the next poll, let alone a pass. Each attempt resolves
the host, refuses it if any address is blocked (:func:`smartq.urlguard.pick_address`) and
connects to that very address (TLS still checks the name), then records what happened.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from models import batch_report
from scheduler import callback_store as store
from scheduler.delivery import Outcome, RetryPolicy, decide, due_events
from smartq import urlguard
from smartq.callbacks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, Event, sign
from smartq.errors import CallbackRefused
from smartq.failpoints import Failpoints
from smartq.settings import Settings

log = logging.getLogger(__name__)
#: Callbacks one derivation looks at (the rest at the next poll).
SCAN = 500
USER_AGENT = "smartq-callbacks/1"


class Callbacks:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: Callable[[], float],
        failpoints: Failpoints,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.failpoints = failpoints
        self.allowance = settings.callback_allowance()
        self.policy = RetryPolicy(
            base=settings.callback_retry_base_seconds,
            cap=settings.callback_retry_max_seconds,
            window=settings.callback_retry_window_seconds,
        )
        self.rng = random.Random()
        self._sending: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.callback_concurrency)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def run(self) -> None:
        """Until cancelled (leadership ends): derive, send, sleep. Deliveries in flight are
        cancelled with it; unrecorded, they are sent again by the next leader (same id)."""
        timeout = httpx.Timeout(self.settings.callback_timeout_seconds)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            try:
                while True:
                    try:
                        await self.derive()
                        await self.send_due(client)
                    except Exception:
                        log.exception(
                            "callbacks failed; trying again", extra={"action": "callbacks.failed"}
                        )
                    await asyncio.sleep(self.settings.callback_poll_seconds)
            finally:
                for task in self._sending.values():
                    task.cancel()
                await asyncio.gather(*self._sending.values(), return_exceptions=True)

    # -- (1) events from the batches' state ---------------------------------------------------
    async def derive(self) -> int:
        """Insert the events now due; how many were new."""
        now = self._now()
        async with self.engine.connect() as conn, conn.begin():
            hooks = await store.open_callbacks(conn, SCAN)
            if not hooks:
                return 0
            ids = sorted({h["batch_id"] for h in hooks})
            totals = await batch_report.batches_totals(conn, ids)
            failed = await store.failed_jobs(conn, ids)
            known = await store.enqueued_keys(conn, [h["id"] for h in hooks])
            rows, done = await self._rows(conn, hooks, totals, failed, known, now)
            await store.enqueue(conn, rows)
            await store.mark_done(conn, done)
        if rows:
            self.failpoints.hit("callbacks_after_enqueue")
            log.info(
                "callback events enqueued",
                extra={"action": "callbacks.enqueued", "deliveries": len(rows)},
            )
        return len(rows)

    async def _rows(
        self,
        conn: Any,
        hooks: list[RowMapping],
        totals: dict[uuid.UUID, list[RowMapping]],
        failed: dict[uuid.UUID, list[RowMapping]],
        known: set[Any],
        now: datetime,
    ) -> tuple[list[dict[str, Any]], list[uuid.UUID]]:
        """The delivery rows of what is due and not yet enqueued, and the callbacks done."""
        batch_rows = await store.batches_of(conn, sorted({h["batch_id"] for h in hooks}))
        rows: list[dict[str, Any]] = []
        done: list[uuid.UUID] = []
        passed: dict[uuid.UUID, list[RowMapping]] = {}
        for hook in hooks:
            b = hook["batch_id"]
            progress = store.progress_of(totals[b], failed[b])
            fresh = [
                e for e in due_events(progress, hook["events"]) if (hook["id"], e.key) not in known
            ]
            head = batch_report.summary(batch_rows[b], totals[b])
            for event in fresh:
                if event.event is Event.BATCH_FINISHED and b not in passed:
                    passed[b] = await store.passed_jobs(conn, b)
                delivery_id = uuid.uuid4()
                body = store.body_of(delivery_id, event, head, failed[b], passed.get(b, []), now)
                # A microsecond apart: the log lists the events in the order they happened.
                at = now + timedelta(microseconds=len(rows))
                rows.append(store.delivery_row(delivery_id, hook, event, body, at))
            if progress.done:
                done.append(hook["id"])
        return rows, done

    # -- (2) deliveries -----------------------------------------------------------------------
    async def send_due(self, client: httpx.AsyncClient) -> int:
        """Start sending what is due (not waiting for it); how many were started."""
        room = self.settings.callback_concurrency * 4 - len(self._sending)
        if room <= 0:
            return 0
        async with self.engine.connect() as conn:
            found = await store.due(conn, self._now(), room, self._sending)
            keys = await store.secrets(conn, [d["tenant"] for d in found]) if found else {}
        for delivery in found:
            secret = keys.get(delivery["tenant"]) or self.settings.callback_secret
            task = asyncio.create_task(self._deliver(client, delivery, secret))
            self._sending[delivery["id"]] = task
            task.add_done_callback(self._sent(delivery["id"]))
        return len(found)

    def _sent(self, delivery_id: uuid.UUID) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._sending.pop(delivery_id, None)

        return forget

    async def _deliver(
        self, client: httpx.AsyncClient, delivery: RowMapping, secret: str | None
    ) -> None:
        async with self._slots:
            began = time.monotonic()
            outcome = await self._attempt(client, delivery, secret)
            ms = round((time.monotonic() - began) * 1000, 1)
        now = self._now()
        first = delivery["first_attempt_at"] or now
        decision = decide(outcome, delivery["attempts"] + 1, first, now, self.policy, self.rng)
        try:
            async with self.engine.connect() as conn, conn.begin():
                await store.record(conn, delivery, outcome, decision, now, ms)
        except Exception:
            log.exception(
                "could not record a delivery attempt", extra={"action": "callbacks.failed"}
            )
            return
        log.info(
            "callback delivery attempted",
            extra={
                "action": "callbacks.attempt",
                "delivery": str(delivery["id"]),
                "event": delivery["event"],
                "status": decision.status.value,
                "status_code": outcome.status_code,
                "error": outcome.error,
            },
        )

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: RowMapping, secret: str | None
    ) -> Outcome:
        if not secret:
            return Outcome(None, "no callback secret for the tenant: not sent unsigned", True)
        try:
            target = urlguard.check_url(delivery["url"], self.allowance)
            address = await self._address(target)
        except CallbackRefused as exc:
            return Outcome(None, f"refused: {exc}", refused=True)
        except OSError as exc:
            return Outcome(None, f"could not resolve {delivery['url']!r}: {exc}")
        body = delivery["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": _host_header(target),
            DELIVERY_HEADER: str(delivery["id"]),
            EVENT_HEADER: delivery["event"],
            SIGNATURE_HEADER: sign(secret, body, int(self.clock())),
        }
        shown = f"[{address}]" if ":" in address else address
        url = f"{target.scheme}://{shown}:{target.port}{target.target}"
        try:
            async with client.stream(
                "POST", url, content=body, headers=headers, extensions={"sni_hostname": target.host}
            ) as answer:
                code = answer.status_code
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
        if 200 <= code < 300:
            return Outcome(code)
        why = "redirect not followed" if 300 <= code < 400 else f"answered {code}"
        return Outcome(code, why)

    async def _address(self, target: urlguard.Target) -> str:
        """The address to connect to: the URL's own, or what the host resolves to now, every
        answer checked."""
        if target.address is not None:
            return str(target.address)
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
            self.settings.callback_timeout_seconds,
        )
        resolved = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return urlguard.pick_address(target.host, resolved, self.allowance)


def _host_header(target: urlguard.Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"
