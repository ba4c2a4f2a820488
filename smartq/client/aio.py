"""The async client: :class:`AsyncClient`, :class:`~smartq.client.Client`'s methods awaited,
on one async httpx transport and websockets' asyncio client. It shares requests
(:mod:`smartq.client._core`), answers and retries (:mod:`smartq.client.answers`) with the sync
client; neither runs the other's event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from typing_extensions import Unpack

from smartq.client._core import (
    CHUNK,
    PAGE_SIZE,
    UNCHANGED,
    Breaker,
    Call,
    JobOptions,
    JobRef,
    Unchanged,
    Wire,
    accepted_docs,
    batch_call,
    callback_secret_call,
    endpoint,
    link_params,
    list_params,
    page_call,
    pause_path,
    ref_id,
    ref_ids,
    schedule_create_call,
    schedule_patch_call,
    schedule_path,
    spec_body,
    submit_call,
    tenant_path,
    tenant_put_call,
    type_patch_call,
    worker_path,
    worker_resize_call,
)
from smartq.client.answers import POLL, RetryPolicy, decode, error_of, retry_delay
from smartq.client.batch import AsyncBatch
from smartq.client.events import StatusEvent, Subscription
from smartq.client.job import AsyncJob
from smartq.client.retention import AsyncRetention
from smartq.client.stream import AsyncStream
from smartq.client.transport import async_transport
from smartq.client.watch import CHECK_SECONDS, Deadline, Watch, Watched
from smartq.errors import Unreachable


class AsyncClient(AsyncRetention):
    """:class:`~smartq.client.Client` for asyncio: the same arguments and methods, awaited
    (``async with smartq.AsyncClient() as client``)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.endpoint = endpoint(url, api_key)
        self.retry_policy = retry or RetryPolicy()
        self._transport = async_transport()
        self._wire = Wire(self.endpoint, timeout)
        #: An ``httpx.AsyncClient`` on the same connections, with the URL and the key, for
        #: what the SDK has no method for (``client.http.get("/workers")``).
        self.http = httpx.AsyncClient(
            base_url=self.endpoint.url,
            headers=dict(self.endpoint.headers),
            timeout=timeout,
            transport=self._transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        """Send ``call``, retried as :class:`RetryPolicy` says; its decoded answer."""
        tries = 0
        while True:
            tries += 1
            try:
                response = await self._transport.handle_async_request(self._wire.request(call))
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                delay = retry_delay(self.retry_policy, call, tries, None, exc)
            else:
                if response.status_code < 300:
                    return decode(content)
                retry_after = response.headers.get("retry-after")
                error = error_of(response.status_code, content, retry_after)
                delay = retry_delay(self.retry_policy, call, tries, error)
            await asyncio.sleep(delay)

    # -- jobs ---------------------------------------------------------------------------------
    async def submit(
        self,
        target: str | Callable[..., Any],
        payload: Mapping[str, Any] | None = None,
        *,
        depends_on: Iterable[JobRef] | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[JobOptions],
    ) -> AsyncJob:
        """Submit one job of type ``target`` (a name or a ``@smartq.job`` function); returns
        once it is stored. Without an ``idempotency_key`` one is made, so a retried request
        never makes a second job. ``options``: :class:`~smartq.client._core.JobOptions`
        (``priority``, ``cpu_units``, ``memory_mb``, ``resources``, ``labels``, ``retry``,
        ``timeout_seconds``, ``run_at``, ``name``)."""
        call = submit_call(target, payload, depends_on, idempotency_key, options)
        return AsyncJob(self, await self._send(call))

    async def submit_many(
        self, jobs: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK
    ) -> list[AsyncJob]:
        """Submit independent jobs in bulk: each a mapping of ``type`` and :meth:`submit`'s
        keyword arguments. Each ``chunk_size`` of them is one atomic ``POST /jobs/batch``."""
        bodies = [spec_body(spec) for spec in jobs]
        out: list[AsyncJob] = []
        for start in range(0, len(bodies), chunk_size):
            chunk = bodies[start : start + chunk_size]
            answer = await self._send(batch_call(chunk, None, str(uuid.uuid4())))
            out += [AsyncJob(self, doc) for doc in accepted_docs(answer, chunk)]
        return out

    def batch(
        self, name: str | None = None, callbacks: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncBatch:
        """A DAG to submit at once: ``async with client.batch() as b: a = b.add(...)``."""
        return AsyncBatch(self, name, callbacks)

    async def job(self, job_id: JobRef) -> AsyncJob:
        """The job with this id, read now (:class:`~smartq.client.errors.NotFound` if none)."""
        return AsyncJob(self, await self._send(Call("GET", f"/jobs/{ref_id(job_id)}")))

    async def jobs(
        self,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        batch_id: JobRef | None = None,
        priority: str | int | None = None,
        *,
        parent_id: JobRef | None = None,
        schedule_id: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[AsyncJob]:
        """Every job matching, newest first, a page at a time; ``parent_id``: the jobs a job
        submitted while it ran; ``schedule_id``: a schedule's runs."""
        params = list_params(status, type, batch_id, priority, page_size)
        params += link_params(parent_id, schedule_id)
        cursor: str | None = None
        while True:
            page = await self._send(page_call("/jobs", params, cursor))
            for doc in page["items"]:
                yield AsyncJob(self, doc)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    # -- types and tenants --------------------------------------------------------------------
    async def types(self) -> list[dict[str, Any]]:
        """Every job type (``GET /types``): defaults, live workers, an admin's override of its
        limits and its breaker."""
        answer: list[dict[str, Any]] = await self._send(Call("GET", "/types"))
        return answer

    async def set_type_limits(
        self,
        name: str,
        *,
        rate_limit: str | Unchanged | None = UNCHANGED,
        max_running: int | Unchanged | None = UNCHANGED,
        breaker: Breaker | Unchanged = UNCHANGED,
    ) -> dict[str, Any]:
        """Override a job type's limits (admin keys): ``rate_limit`` like ``"5/s"``,
        ``max_running``, ``breaker`` ``"open"``/``"closed"``/``"auto"``. Only what is given
        changes; None clears an override (back to the ``@smartq.job`` value). The override."""
        answer: dict[str, Any] = await self._send(
            type_patch_call(name, rate_limit, max_running, breaker)
        )
        return answer

    async def tenants(self) -> list[dict[str, Any]]:
        """Every tenant an admin set quotas for, with what applies and its active jobs."""
        answer: list[dict[str, Any]] = await self._send(Call("GET", "/admin/tenants"))
        return answer

    async def tenant(self, name: str) -> dict[str, Any]:
        """A tenant's quotas (its defaults when nobody set any) and its active jobs."""
        answer: dict[str, Any] = await self._send(Call("GET", tenant_path(name)))
        return answer

    async def pause(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """Pause a ``"batch"`` (its id; the owner, ``cancel`` scope), a ``"type"`` (its name)
        or ``"all"`` (admin keys): nothing new of it starts, what runs finishes."""
        path = pause_path(kind, name, "pause")
        answer: dict[str, Any] = await self._send(Call("POST", path))
        return answer

    async def resume(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """Undo :meth:`pause`."""
        path = pause_path(kind, name, "resume")
        answer: dict[str, Any] = await self._send(Call("POST", path))
        return answer

    async def pauses(self) -> list[dict[str, Any]]:
        """Every pause in force (admin keys)."""
        answer: list[dict[str, Any]] = await self._send(Call("GET", "/admin/pauses"))
        return answer

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker (``GET /workers``, a ``monitor`` key): size, use, state, offers."""
        answer: list[dict[str, Any]] = await self._send(Call("GET", "/workers"))
        return answer

    async def drain_worker(self, worker_id: str) -> dict[str, Any]:
        """Take nothing new on the worker; what runs finishes (admin keys). The worker."""
        answer: dict[str, Any] = await self._send(Call("POST", worker_path(worker_id, "drain")))
        return answer

    async def resume_worker(self, worker_id: str) -> dict[str, Any]:
        """Place on a drained worker again (admin keys). The worker."""
        answer: dict[str, Any] = await self._send(Call("POST", worker_path(worker_id, "resume")))
        return answer

    async def resize_worker(
        self,
        worker_id: str,
        *,
        cpu_units: int | Unchanged | None = UNCHANGED,
        memory_mb: int | Unchanged | None = UNCHANGED,
    ) -> dict[str, Any]:
        """Give the worker another size (admin keys); None goes back to its own, what is not
        given stays. A smaller size never stops what runs. The worker."""
        call = worker_resize_call(worker_id, cpu_units, memory_mb)
        answer: dict[str, Any] = await self._send(call)
        return answer

    async def set_tenant(
        self,
        name: str,
        *,
        max_active_jobs: int | None = None,
        submit_rate: float | None = None,
        max_running: int | None = None,
        weight: float | None = None,
    ) -> dict[str, Any]:
        """Replace a tenant's quotas (admin keys): what is not given is the default again."""
        call = tenant_put_call(name, max_active_jobs, submit_rate, max_running, weight)
        answer: dict[str, Any] = await self._send(call)
        return answer

    async def set_callback_secret(self, name: str, secret: str | None) -> dict[str, Any]:
        """Sign a tenant's callbacks with ``secret`` (admin keys); None: the server's default."""
        answer: dict[str, Any] = await self._send(callback_secret_call(name, secret))
        return answer

    async def reset_tenant(self, name: str) -> dict[str, Any]:
        """A tenant back to the defaults (admin keys)."""
        answer: dict[str, Any] = await self._send(Call("DELETE", tenant_path(name)))
        return answer

    # -- cron schedules -----------------------------------------------------------------------
    async def create_schedule(
        self,
        cron: str,
        *,
        job: Mapping[str, Any] | None = None,
        batch: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        overlap: str = "skip",
        catchup: str = "none",
        max_catchup: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """A schedule submitting ``job`` (a body as for ``POST /jobs``) or ``batch`` (as for
        ``POST /jobs/batch``) at each tick of ``cron`` (5 fields, or 6 with seconds first)."""
        fields = {
            "job": job,
            "batch": batch,
            "timezone": timezone,
            "name": name,
            "overlap": overlap,
            "catchup": catchup,
            "max_catchup": max_catchup,
            "paused": paused,
        }
        answer: dict[str, Any] = await self._send(schedule_create_call(cron, fields))
        return answer

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule of the caller's tenant, newest first (all pages)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self._send(page_call("/schedules", [], cursor))
            out += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    async def schedule(self, schedule_id: str) -> dict[str, Any]:
        """A schedule with its next fire times and what its ticks did."""
        answer: dict[str, Any] = await self._send(Call("GET", schedule_path(schedule_id)))
        return answer

    async def update_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        """Change the fields given (``cron``, ``timezone``, ``job``, ``batch``, ``overlap``,
        ``catchup``, ``max_catchup``, ``name``); a new cron or zone counts from now."""
        answer: dict[str, Any] = await self._send(schedule_patch_call(schedule_id, fields))
        return answer

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        """No tick fires until it is resumed."""
        answer: dict[str, Any] = await self._send(Call("POST", schedule_path(schedule_id, "pause")))
        return answer

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Fire again from the next tick after now."""
        call = Call("POST", schedule_path(schedule_id, "resume"))
        answer: dict[str, Any] = await self._send(call)
        return answer

    async def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Delete it; its runs stay. The schedule as it was."""
        answer: dict[str, Any] = await self._send(Call("DELETE", schedule_path(schedule_id)))
        return answer

    # -- the stream ---------------------------------------------------------------------------
    def stream(
        self,
        job_id: JobRef | Iterable[JobRef] | None = None,
        batch_id: JobRef | Iterable[JobRef] | None = None,
        types: Iterable[str] = (),
        statuses: Iterable[str] = (),
    ) -> AsyncStream:
        """Live events of these jobs and batches (none named: every job of the key's
        tenant); reconnects by itself, losing no status. Connects on the first read."""
        subscription = Subscription(ref_ids(job_id), ref_ids(batch_id), types, statuses)
        return AsyncStream(self.endpoint.ws_url, self.endpoint.auth_headers, subscription)

    async def _watch(
        self,
        watch: Watch,
        deadline: Deadline,
        check: Callable[[], Awaitable[list[dict[str, Any]]]],
        *,
        job_ids: Iterable[JobRef] = (),
        batch_id: JobRef | None = None,
    ) -> AsyncIterator[Watched]:
        """:meth:`Client._watch <smartq.client.Client._watch>`, awaited."""
        for job in watch.take():
            yield job
        if watch.done:
            return
        try:
            async with self.stream(job_ids, batch_id, types=["job.status"]) as stream:
                while not watch.done:
                    try:
                        event = await stream.next(timeout=deadline.left(CHECK_SECONDS))
                    except TimeoutError:
                        if deadline.passed:
                            raise deadline.expired() from None
                        try:
                            watch.read(await check())
                        except Unreachable as exc:  # the stream says when it cannot reconnect
                            watch.unanswered(exc)
                    else:
                        if isinstance(event, StatusEvent):
                            watch.saw(event)
                    for job in watch.take():
                        yield job
        except Unreachable:
            async for job in self._poll(watch, deadline, check):
                yield job

    async def _poll(
        self,
        watch: Watch,
        deadline: Deadline,
        check: Callable[[], Awaitable[list[dict[str, Any]]]],
    ) -> AsyncIterator[Watched]:
        tries = 0
        while True:
            try:
                watch.read(await check())
            except Unreachable as exc:
                watch.unanswered(exc)
            for job in watch.take():
                yield job
            if watch.done:
                return
            if deadline.passed:
                raise deadline.expired()
            tries += 1
            await asyncio.sleep(deadline.left(POLL.backoff(tries)) or 0.0)
