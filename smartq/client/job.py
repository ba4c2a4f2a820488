"""A submitted job: :class:`Job` (of a :class:`~smartq.client.Client`) and :class:`AsyncJob`
(of an :class:`~smartq.client.AsyncClient`), the same methods, sync and async. Both keep the
last document read (``GET /jobs/{id}``'s shape) and the newest status heard on the stream;
what a final document means (:meth:`JobBase.outcome`) is decided once, here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.enums import FINAL_STATUSES, JobStatus
from smartq.client._core import Call, logs_params
from smartq.client.answers import POLL
from smartq.client.events import LogLine, StatusEvent, status_order
from smartq.client.retention import delete_call
from smartq.client.watch import CHECK_SECONDS, Deadline, LogCursor, Watch
from smartq.errors import JobCancelled, JobFailed, Unreachable

if TYPE_CHECKING:
    from smartq.client.aio import AsyncClient
    from smartq.client.sync import Client

#: A status by its name (a dict lookup; ``JobStatus(name)`` is an enum call per job).
_STATUSES = {s.value: s for s in JobStatus}


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a job is where it is: what ``GET /jobs/{id}`` says about it."""

    job_id: uuid.UUID
    status: JobStatus
    waiting_reason: str | None
    status_reason: str | None
    error: str | None
    attempts: int
    worker_id: str | None
    depends_on: list[uuid.UUID]
    dependents: list[uuid.UUID]

    def __str__(self) -> str:
        """In plain words: the waiting reason (which names the status), else the status and
        why it ended so."""
        if self.waiting_reason:
            return f"job {self.job_id}: {self.waiting_reason}"
        words = f"job {self.job_id} is {self.status.value}"
        if self.status is JobStatus.FAILED:
            words += f" after {self.attempts} attempt(s): {self.error}"
        elif self.status_reason:
            words += f": {self.status_reason}"
        if self.worker_id and self.status is JobStatus.RUNNING:
            words += f" on {self.worker_id}"
        return words

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Explanation:
        return cls(
            job_id=uuid.UUID(doc["id"]),
            status=JobStatus(doc["status"]),
            waiting_reason=doc.get("waiting_reason"),
            status_reason=doc.get("status_reason"),
            error=doc.get("error"),
            attempts=int(doc.get("attempts") or 0),
            worker_id=doc.get("worker_id"),
            depends_on=[uuid.UUID(d) for d in doc.get("depends_on") or ()],
            dependents=[uuid.UUID(d) for d in doc.get("dependents") or ()],
        )


class JobBase:
    """What both job classes hold: the id, the last document, the newest status known."""

    __slots__ = ("_attempt", "_doc", "_id", "_status")

    def __init__(self, doc: dict[str, Any]) -> None:
        self._id: uuid.UUID | None = None
        self._update(doc)

    @property
    def id(self) -> uuid.UUID:
        """The job's id (parsed when first asked for: a 10,000-job batch makes 10,000 jobs)."""
        if self._id is None:
            self._id = uuid.UUID(self._doc["id"])
        return self._id

    @property
    def status(self) -> JobStatus:
        """The newest status known (from the stream or the last read)."""
        return self._status

    @property
    def doc(self) -> dict[str, Any]:
        """The job as last read from the API (``GET /jobs/{id}``'s document)."""
        return self._doc

    @property
    def done(self) -> bool:
        return self._status in FINAL_STATUSES

    @property
    def attempts(self) -> int:
        """Attempts made, as newly as known (the stream says it before a read does)."""
        return max(self._attempt, int(self._doc.get("attempts") or 0))

    @property
    def type(self) -> str:
        return str(self._doc["type"])

    @property
    def key(self) -> str | None:
        return self._doc.get("key")

    @property
    def batch_id(self) -> uuid.UUID | None:
        batch = self._doc.get("batch_id")
        return None if batch is None else uuid.UUID(batch)

    @property
    def parent_id(self) -> uuid.UUID | None:
        """The job whose run submitted this one (``ctx.submit``), if any."""
        parent = self._doc.get("parent_id")
        return uuid.UUID(parent) if parent else None

    def _update(self, doc: dict[str, Any]) -> None:
        self._doc = doc
        self._status = _STATUSES[doc["status"]]
        self._attempt = int(doc.get("attempts") or 0)

    def _saw(self, event: StatusEvent) -> None:
        """A status from the stream, kept when it is newer than the one known."""
        known = status_order(self._status, self._attempt)
        if status_order(event.status, event.attempt) > known:
            self._status, self._attempt = event.status, event.attempt

    def _stale(self) -> bool:
        """Whether the document is older than the status known (the stream said more)."""
        return bool(self._doc["status"] != self._status.value)

    def outcome(self) -> Any:
        """The result of a completed job; :class:`JobFailed` or :class:`JobCancelled` for the
        other final statuses (read from the last document: see ``result()``)."""
        doc = self._doc
        status = doc["status"]
        if status == JobStatus.FAILED:
            raise JobFailed(self.id, doc.get("error"), int(doc.get("attempts") or 0))
        if status == JobStatus.CANCELLED:
            raise JobCancelled(self.id, doc.get("status_reason"))
        if status != JobStatus.COMPLETED:
            raise RuntimeError(f"job {self.id} is {status}, not finished")
        return doc.get("result")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._doc.get('type')} {self._status.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobBase) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _logs_path(job_id: uuid.UUID) -> str:
    return f"/jobs/{job_id}/logs"


class Job(JobBase):
    """A job of a :class:`~smartq.client.Client`."""

    __slots__ = ("_client",)

    def __init__(self, client: Client, doc: dict[str, Any]) -> None:
        super().__init__(doc)
        self._client = client

    def refresh(self) -> Job:
        """Read the job again."""
        self._update(self._client._send(Call("GET", f"/jobs/{self.id}")))
        return self

    def wait(self, timeout: float | None = None) -> Job:
        """Until the job's status is final (:attr:`status`; :meth:`result` then reads the rest,
        :meth:`refresh` the whole job); :class:`WaitTimeout` after ``timeout`` seconds. Watches
        the stream, falling back to polling. It does not read the job again itself: that read
        (GET /jobs/{id}) took as long as the final status took to arrive."""
        if self.done:
            return self
        deadline = Deadline(timeout, f"job {self.id}")
        for _ in self._client._watch(Watch([self]), deadline, self._check, job_ids=[self.id]):
            pass
        return self

    def _check(self) -> list[dict[str, Any]]:
        return [self._client._send(Call("GET", f"/jobs/{self.id}"))]

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job, then its result, or :class:`JobFailed` / :class:`JobCancelled`."""
        self.wait(timeout)
        if self._stale():
            self.refresh()
        return self.outcome()

    def cancel(self) -> Job:
        """Cancel it (a running job is asked to stop: its final status comes later)."""
        answer = self._client._send(Call("PATCH", f"/jobs/{self.id}/cancel"))
        self._update(answer["job"])
        return self

    def delete(self) -> None:
        """Delete it, once finished, with its attempts, logs and result (see
        :meth:`Client.delete_job <smartq.client.Client.delete_job>`)."""
        self._client._send(delete_call(self.id))

    def retry(self, with_descendants: bool = False) -> Job:
        """Run a failed job again with a fresh retry budget (and, with ``with_descendants``,
        the jobs cancelled because of it)."""
        params = [("with_descendants", "true" if with_descendants else "false")]
        call = Call("POST", f"/jobs/{self.id}/retry", params=params, repeatable=False)
        self._update(self._client._send(call)["job"])
        return self

    def children(self) -> Iterator[Job]:
        """The jobs this job submitted while it ran (``ctx.submit``, ``ctx.batch``,
        ``ctx.continue_with``), newest first."""
        return self._client.jobs(parent_id=self.id)

    def explain(self) -> Explanation:
        """Why it waits (or how it ended), as the API sees it now."""
        self.refresh()
        return Explanation.of(self._doc)

    def logs(self, follow: bool = False, attempt: int | None = None) -> Iterator[LogLine]:
        """Its log lines in order (of ``attempt`` only, when given). With ``follow``, live
        from the stream until the job is final, ending with its last lines."""
        cursor = LogCursor(self.id, attempt)
        if not follow:
            return self._stored(cursor)
        return self._follow(cursor)

    def _stored(self, cursor: LogCursor) -> Iterator[LogLine]:
        more = True
        while more:
            params = logs_params(cursor.after, cursor.attempt)
            page = self._client._send(Call("GET", _logs_path(self.id), params=params))
            lines, more = cursor.stored(page)
            yield from lines

    def _follow(self, cursor: LogCursor) -> Iterator[LogLine]:
        try:
            with self._client.stream(job_id=self.id, types=["job.status", "job.log"]) as stream:
                stream.open()  # subscribed first: lines logged while stored ones are read queue
                yield from self._stored(cursor)
                while not self.done:
                    try:
                        event = stream.next(timeout=CHECK_SECONDS)
                    except TimeoutError:
                        self.refresh()
                        continue
                    if isinstance(event, LogLine) and cursor.new(event):
                        yield event
                    elif isinstance(event, StatusEvent) and event.job_id == self.id:
                        self._saw(event)
        except (Unreachable, TimeoutError):  # no stream: read the stored lines until final
            tries = 0
            while not self.done:
                yield from self._stored(cursor)
                tries += 1
                time.sleep(POLL.backoff(tries))
                self.refresh()
        yield from self._stored(cursor)  # the lines stored after the last page read
        self.refresh()


class AsyncJob(JobBase):
    """A job of an :class:`~smartq.client.AsyncClient`: :class:`Job`'s methods, awaited."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient, doc: dict[str, Any]) -> None:
        super().__init__(doc)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self._update(await self._client._send(Call("GET", f"/jobs/{self.id}")))
        return self

    async def wait(self, timeout: float | None = None) -> AsyncJob:
        if self.done:
            return self
        deadline = Deadline(timeout, f"job {self.id}")
        watching = self._client._watch(Watch([self]), deadline, self._check, job_ids=[self.id])
        async for _ in watching:
            pass
        return self

    async def _check(self) -> list[dict[str, Any]]:
        return [await self._client._send(Call("GET", f"/jobs/{self.id}"))]

    async def result(self, timeout: float | None = None) -> Any:
        await self.wait(timeout)
        if self._stale():
            await self.refresh()
        return self.outcome()

    async def cancel(self) -> AsyncJob:
        answer = await self._client._send(Call("PATCH", f"/jobs/{self.id}/cancel"))
        self._update(answer["job"])
        return self

    async def delete(self) -> None:
        await self._client._send(delete_call(self.id))

    async def retry(self, with_descendants: bool = False) -> AsyncJob:
        params = [("with_descendants", "true" if with_descendants else "false")]
        call = Call("POST", f"/jobs/{self.id}/retry", params=params, repeatable=False)
        self._update((await self._client._send(call))["job"])
        return self

    def children(self) -> AsyncIterator[AsyncJob]:
        """The jobs this job submitted while it ran, newest first."""
        return self._client.jobs(parent_id=self.id)

    async def explain(self) -> Explanation:
        await self.refresh()
        return Explanation.of(self._doc)

    def logs(self, follow: bool = False, attempt: int | None = None) -> AsyncIterator[LogLine]:
        """``async for line in job.logs(follow=True)``."""
        cursor = LogCursor(self.id, attempt)
        return self._follow(cursor) if follow else self._stored(cursor)

    async def _stored(self, cursor: LogCursor) -> AsyncIterator[LogLine]:
        more = True
        while more:
            params = logs_params(cursor.after, cursor.attempt)
            page = await self._client._send(Call("GET", _logs_path(self.id), params=params))
            lines, more = cursor.stored(page)
            for line in lines:
                yield line

    async def _follow(self, cursor: LogCursor) -> AsyncIterator[LogLine]:
        try:
            async with self._client.stream(
                job_id=self.id, types=["job.status", "job.log"]
            ) as stream:
                await stream.open()
                async for line in self._stored(cursor):
                    yield line
                while not self.done:
                    try:
                        event = await stream.next(timeout=CHECK_SECONDS)
                    except TimeoutError:
                        await self.refresh()
                        continue
                    if isinstance(event, LogLine) and cursor.new(event):
                        yield event
                    elif isinstance(event, StatusEvent) and event.job_id == self.id:
                        self._saw(event)
        except (Unreachable, TimeoutError):
            tries = 0
            while not self.done:
                async for line in self._stored(cursor):
                    yield line
                tries += 1
                await asyncio.sleep(POLL.backoff(tries))
                await self.refresh()
        async for line in self._stored(cursor):
            yield line
        await self.refresh()
