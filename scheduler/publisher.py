"""The scheduler's one publisher: what committed passes decided goes out in pass order while the
next pass runs, so a pass never waits for RabbitMQ's confirms. It is two
:class:`smartq.outbox.Outbox`-es, the gather-batch-retry outbox the workers use too:

* Dispatches and cancels, at once. Dispatches are ``mandatory``; those no queue took come back
  as values (:meth:`Publisher.take_unrouted`): a first dispatch reached nobody (the pass gives
  the attempt back), a re-published one may have run before its worker went (that attempt is
  lost). Dispatches the broker refused are retried before anything newer, with a pause growing
  0.1 s → 5 s. At most :data:`BACKLOG` messages wait; then passes wait for the broker.
* Status events, held up to ``linger`` seconds to go out with those of the next passes in one
  message: a pass per job, as in a chain, otherwise costs one broker message per job for the
  live stream alone. A pass that ends a job sends its events and those held at once: a client
  waiting for a job's end (``job.wait()``, a log follower) heard of it up to ``linger`` late
  (p50 8 ms after the finish with a 20 ms linger, 3.5 ms without). :data:`EVENTS_HELD_MAX`
  held events go out at once.

A crash loses nothing: dispatches are committed first and re-published at start-up, and fenced
reports make a replay harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from models.messages import Dispatch, unpack
from scheduler import encode, store
from scheduler.encode import Message, is_dispatch, is_event
from scheduler.rows import dt
from smartq import topology
from smartq.broker import Broker, BrokerError, Unroutable
from smartq.outbox import Outbox

log = logging.getLogger(__name__)
#: Messages (dispatches, cancels) that may wait for the broker before passes wait for it.
BACKLOG = 100_000
#: Messages one publish sends at most (a pass's dispatches, pipelined, in one go).
PUBLISH_BATCH = 20_000
#: Held status events that make the publisher send them at once.
EVENTS_HELD_MAX = 1_000
#: On leaving (stop, lost leadership), how long the publisher may take to empty its queue.
DRAIN_SECONDS = 5.0

#: (job, attempt, worker) of a dispatch.
Sent = tuple[uuid.UUID, int, str]


@dataclass
class Unrouted:
    """Dispatches no queue took, since they were last taken."""

    first: list[Sent] = field(default_factory=list)
    republished: list[Sent] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.first or self.republished)


class Publisher:
    def __init__(
        self,
        broker: Broker,
        linger: float,
        *,
        on_published: Callable[[], None] = lambda: None,
        on_unrouted: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self._on_published = on_published
        self._on_unrouted = on_unrouted
        self._unrouted = Unrouted()
        self._orders: Outbox[Message] = Outbox(
            self._publish_orders,
            batch=PUBLISH_BATCH,
            retry_on=(BrokerError,),
            name="scheduler.orders",
            maxsize=BACKLOG,
        )
        self._events: Outbox[Message] = Outbox(
            self._publish_events,
            linger=linger,
            batch=EVENTS_HELD_MAX,
            retry_on=(BrokerError,),
            name="scheduler.events",
        )

    # -- what passes call -----------------------------------------------------------------
    async def put(self, messages: list[Message], *, ends_a_job: bool = False) -> None:
        """Hand over a committed pass's messages; waits only when publishing lags.
        ``ends_a_job``: the pass gave a job its final status (its events go out now)."""
        events = [m for m in messages if is_event(m)]
        if events:
            self._events.put_all_nowait(events, at_once=ends_a_job)
        if len(events) < len(messages):
            await self._orders.put_all([m for m in messages if not is_event(m)])

    async def join(self) -> None:
        """Until every dispatch and cancel handed over so far went out (events may wait)."""
        await self._orders.join()

    def take_unrouted(self) -> Unrouted:
        out, self._unrouted = self._unrouted, Unrouted()
        return out

    def pending(self) -> bool:
        return bool(self._unrouted)

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """On leaving: what passes committed goes out, then the held events, within bounds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._orders.join(), timeout)
        self._events.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events.join(), timeout)

    async def run(self) -> None:
        """Publish until cancelled (both outboxes, as this task)."""
        await asyncio.gather(self._orders.run(), self._events.run())

    async def _publish_orders(self, messages: list[Message]) -> list[Message]:
        failed = await self.publish(messages)
        if len(failed) < len(messages):
            self._on_published()
        if self._unrouted:
            self._on_unrouted()
        return failed

    async def _publish_events(self, messages: list[Message]) -> list[Message]:
        await self.publish(messages)
        self._on_published()
        return []

    # -- one publish ----------------------------------------------------------------------
    async def publish(self, messages: list[Message]) -> list[Message]:
        """Publish dispatches (mandatory) and the other messages at once, each waiting for its
        confirms; returns the dispatches the broker did not take (to publish again)."""
        dispatches = [m for m in messages if is_dispatch(m)]
        events = [m for m in messages if is_event(m)]
        others = [m for m in messages if not is_dispatch(m) and not is_event(m)]
        others += topology.batched(topology.STATUS_BATCH, events)
        failed: list[Message] = []

        async def send_dispatches() -> None:
            if not await self.send_dispatches(dispatches):
                log.warning(
                    "could not publish dispatches; retrying",
                    extra={"action": "scheduler.publish_failed"},
                )
                failed.extend(dispatches)

        async def send_others() -> None:
            try:
                await self.broker.publish_many(others)
            except BrokerError:
                log.warning(
                    "could not publish status events",
                    extra={"action": "scheduler.publish_failed"},
                )

        await asyncio.gather(send_dispatches(), send_others())
        return failed

    async def send_dispatches(self, messages: list[Message], *, republish: bool = False) -> bool:
        """Publish dispatches (mandatory); those no queue took are kept as :class:`Unrouted`.
        False when the broker refused them (they are to be published again)."""
        try:
            await self.broker.publish_many(messages, mandatory=True)
        except Unroutable as exc:
            self._unroutable(exc, messages, republish=republish)
        except BrokerError:
            return False
        return True

    async def republish(
        self,
        engine: AsyncEngine,
        todo: list[Sent],
        incarnation: Callable[[str], str | None],
        now: float,
    ) -> None:
        """Publish again the dispatches of these running attempts: after a restart (decided,
        maybe never published), or when heartbeats do not list them; workers ignore an
        attempt they already hold. What no queue takes is lost (:class:`Unrouted`)."""
        if not todo:
            return
        log.info(
            "re-publishing dispatches",
            extra={"action": "scheduler.republish", "dispatches": len(todo)},
        )
        async with engine.connect() as conn:
            rows = await store.dispatch_fields(conn, [job_id for job_id, _, _ in todo])
        at = dt(now)
        assert at is not None
        messages = [
            encode.dispatch(job_id, attempt, worker, rows[job_id], at, incarnation(worker))
            for job_id, attempt, worker in todo
            if job_id in rows
        ]
        if not await self.send_dispatches(messages, republish=True):
            log.warning(
                "could not re-publish; the next heartbeats will tell",
                extra={"action": "scheduler.publish_failed"},
            )

    def _unroutable(self, exc: Unroutable, dispatches: list[Message], *, republish: bool) -> None:
        keys = set(exc.routing_keys)
        into = self._unrouted.republished if republish else self._unrouted.first
        for key, body in dispatches:
            if key not in keys:
                continue
            for item in unpack(body):
                d = Dispatch.model_validate(item)
                log.warning(
                    "dispatch unroutable: the worker's queue is gone",
                    extra={
                        "action": "scheduler.unroutable",
                        "job_id": str(d.job_id),
                        "attempt": d.attempt,
                        "worker": d.worker_id,
                    },
                )
                into.append((d.job_id, d.attempt, d.worker_id))
