"""A DAG submitted at once: ``with client.batch(name=...) as b`` gathers jobs with
:meth:`BatchBase.add` (``after=`` names the jobs it waits for) and submits them all on leaving
the block, in one ``POST /jobs/batch`` (atomic: all or nothing; retried safely under an
idempotency key). Then ``b`` is the batch: :class:`Batch` (sync) and :class:`AsyncBatch` wait
for it, give its jobs as they complete and read its report.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from typing_extensions import Unpack

from models.enums import FINAL_STATUSES
from smartq.client._core import (
    PAGE_SIZE,
    Call,
    JobOptions,
    JobRef,
    accepted_docs,
    batch_call,
    job_fields,
    list_params,
    ref_id,
    type_name,
)
from smartq.client.job import AsyncJob, Job, JobBase
from smartq.client.watch import Deadline, Watch

if TYPE_CHECKING:
    from smartq.client.aio import AsyncClient
    from smartq.client.sync import Client

J = TypeVar("J", bound=JobBase)
_FINAL = [s.value for s in FINAL_STATUSES]


@dataclass(frozen=True, slots=True)
class Ref:
    """A job added to a batch not yet submitted: pass it in ``after=`` of later jobs."""

    key: str


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """``GET /batches/{id}``: totals by status, whether all are final, when it ran, and the
    failed jobs with their errors (the first page of them)."""

    batch_id: uuid.UUID
    name: str | None
    job_count: int
    totals: dict[str, int]
    done: bool
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    failures: list[dict[str, Any]]
    #: While jobs are left: when the scheduler predicts it to finish (an estimate), and by
    #: when at the 90th percentile.
    predicted_finish_at: datetime | None = None
    predicted_finish_late_at: datetime | None = None

    @property
    def succeeded(self) -> bool:
        """Every job completed."""
        return self.done and self.totals.get("completed", 0) == self.job_count

    @property
    def finished(self) -> int:
        return sum(self.totals.get(s, 0) for s in _FINAL)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> BatchReport:
        return cls(
            batch_id=uuid.UUID(doc["batch_id"]),
            name=doc.get("name"),
            job_count=int(doc["job_count"]),
            totals=dict(doc["totals"]),
            done=bool(doc["done"]),
            started_at=_when(doc.get("started_at")),
            finished_at=_when(doc.get("finished_at")),
            duration_seconds=doc.get("duration_seconds"),
            failures=list(doc.get("failures") or ()),
            predicted_finish_at=_when(doc.get("predicted_finish_at")),
            predicted_finish_late_at=_when(doc.get("predicted_finish_late_at")),
        )


class BatchBase(Generic[J]):
    """What both batch classes share: the jobs gathered, then the jobs submitted."""

    def __init__(
        self, name: str | None, callbacks: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        self.name = name
        #: Where its events are POSTed: ``[{"url": ..., "events": ["batch.finished"]}]``.
        self.callbacks = list(callbacks or [])
        self.id: uuid.UUID | None = None
        self._specs: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._numbered: dict[str, int] = {}
        #: The submitted jobs' documents, made into jobs when first asked for (a 10,000-job
        #: batch made 10,000 objects before ``with`` returned, for callers who may want none).
        self._docs: list[dict[str, Any]] = []
        self._make: Callable[[dict[str, Any]], J] | None = None
        self._made: list[J] | None = None
        self._by_key: dict[str, J] | None = None
        #: One key for the batch: a retried POST returns the batch the first try made.
        self._idempotency_key = str(uuid.uuid4())

    def add(
        self,
        target: str | Callable[..., Any],
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        after: Iterable[Ref | JobRef] = (),
        **options: Unpack[JobOptions],
    ) -> Ref:
        """Add a job (``target``: a type name or a ``@smartq.job`` function) that runs after
        the jobs in ``after``: :class:`Ref` s of this batch, or existing jobs or their ids.
        ``key`` names it in the batch (default: its type, numbered when taken); ``options`` as
        for :meth:`Client.submit <smartq.client.Client.submit>`."""
        if self.id is not None:
            raise RuntimeError("this batch was submitted; start another with client.batch()")
        job_type = type_name(target)
        key = key or self._free_key(job_type)
        if key in self._keys:
            raise ValueError(f"key {key!r} is already used in this batch")
        body = job_fields(options)
        body.update(key=key, type=job_type)
        if payload:
            body["payload"] = payload
        depends = [a.key if isinstance(a, Ref) else ref_id(a) for a in after]
        if depends:
            body["depends_on"] = depends
        self._specs.append(body)
        self._keys.add(key)
        return Ref(key)

    def _free_key(self, job_type: str) -> str:
        """The type's name, or the next ``type.n`` not taken (counted per type: a scan from 2
        on each add made a 10,000-job batch quadratic)."""
        n = self._numbered.get(job_type, 1)
        key = job_type
        while key in self._keys:
            n += 1
            key = f"{job_type}.{n}"
        self._numbered[job_type] = n
        return key

    def _call(self) -> Call:
        if not self._specs:
            raise ValueError("a batch needs at least one job")
        return batch_call(self._specs, self.name, self._idempotency_key, self.callbacks)

    def _accept(self, answer: dict[str, Any], job: Callable[[dict[str, Any]], J]) -> None:
        """The API's answer: each job's id, key and status (``Prefer: return=minimal``), to
        which the type and the batch are added; ``job.refresh()`` reads the rest."""
        self.id = uuid.UUID(answer["batch_id"])
        self._docs = accepted_docs(answer, self._specs)
        self._make = job
        self._specs = []

    @property
    def jobs(self) -> list[J]:
        """Its jobs, in the order they were added (empty until submitted)."""
        return list(self._jobs)

    @property
    def _jobs(self) -> list[J]:
        if self._made is None:
            make = self._make
            self._made = [] if make is None else [make(doc) for doc in self._docs]
            self._docs = []
        return self._made

    def job(self, ref: Ref | str) -> J:
        """The submitted job of a :class:`Ref` (or of a key)."""
        if self._by_key is None:
            self._by_key = {j.key: j for j in self._jobs if j.key is not None}
        return self._by_key[ref.key if isinstance(ref, Ref) else ref]

    def _submitted(self) -> uuid.UUID:
        if self.id is None:
            raise RuntimeError("the batch is not submitted yet")
        return self.id

    def _report_call(self, limit: int) -> Call:
        return Call("GET", f"/batches/{self._submitted()}", params=[("limit", str(limit))])

    def _deliveries_call(self, cursor: str | None) -> Call:
        params = [("limit", "500")] + ([("cursor", cursor)] if cursor else [])
        return Call("GET", f"/batches/{self._submitted()}/deliveries", params=params)

    @staticmethod
    def _more(log: dict[str, Any], page: dict[str, Any]) -> str | None:
        """Add a page of the delivery log to ``log``; the next page's cursor."""
        log.setdefault("callbacks", page["callbacks"])
        log.setdefault("items", []).extend(page["items"])
        cursor: str | None = page["next_cursor"]
        return cursor

    def _action_call(self, action: str) -> Call:
        return Call("POST", f"/batches/{self._submitted()}/{action}")

    def _finals_call(self, cursor: str | None) -> Call:
        params = list_params(_FINAL, None, self._submitted(), None, PAGE_SIZE)
        if cursor is not None:
            params.append(("cursor", cursor))
        return Call("GET", "/jobs", params=params)

    def __repr__(self) -> str:
        state = f"id={self.id}" if self.id else f"{len(self._specs)} job(s) to submit"
        return f"<{type(self).__name__} {self.name or ''} {state}>"


class Batch(BatchBase[Job]):
    """A batch of a :class:`~smartq.client.Client`."""

    def __init__(
        self,
        client: Client,
        name: str | None = None,
        callbacks: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(name, callbacks)
        self._client = client

    def submit(self) -> Batch:
        """Submit the jobs added (``with`` does it on leaving the block)."""
        self._accept(self._client._send(self._call()), lambda doc: Job(self._client, doc))
        return self

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:
            self.submit()

    def report(self, failures: int = 100) -> BatchReport:
        """Totals, times and (up to ``failures`` of) the failed jobs, read now."""
        return BatchReport.of(self._client._send(self._report_call(failures)))

    def deliveries(self) -> dict[str, Any]:
        """Its callbacks and their delivery log (every page): ``{"callbacks", "items"}``."""
        log: dict[str, Any] = {}
        cursor = self._more(log, self._client._send(self._deliveries_call(None)))
        while cursor is not None:
            cursor = self._more(log, self._client._send(self._deliveries_call(cursor)))
        return log

    def cancel(self) -> dict[str, Any]:
        """Stop the batch: what waits is cancelled, what runs is asked to stop."""
        answer: dict[str, Any] = self._client._send(self._action_call("cancel"))
        return answer

    def pause(self) -> dict[str, Any]:
        """Start nothing more of it until :meth:`resume`; what runs finishes."""
        answer: dict[str, Any] = self._client._send(self._action_call("pause"))
        return answer

    def resume(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._client._send(self._action_call("resume"))
        return answer

    def as_completed(self, timeout: float | None = None) -> Iterator[Job]:
        """Its jobs as each reaches a final status (those already final first)."""
        deadline = Deadline(timeout, f"batch {self._submitted()}")
        for job in self._client._watch(Watch(self._jobs), deadline, self._check, batch_id=self.id):
            assert isinstance(job, Job)
            yield job

    def wait(self, timeout: float | None = None) -> BatchReport:
        """Until every job is final; then the report."""
        for _ in self.as_completed(timeout):
            pass
        return self.report()

    def _check(self) -> list[dict[str, Any]]:
        """The final jobs, read when the stream is silent (one request while none is new)."""
        report = self.report(failures=1)
        known = sum(1 for j in self._jobs if j.done)
        if report.finished <= known:
            return []
        docs: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self._client._send(self._finals_call(cursor))
            docs += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return docs


class AsyncBatch(BatchBase[AsyncJob]):
    """A batch of an :class:`~smartq.client.AsyncClient`: ``async with client.batch() as b``."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | None = None,
        callbacks: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(name, callbacks)
        self._client = client

    async def submit(self) -> AsyncBatch:
        answer = await self._client._send(self._call())
        self._accept(answer, lambda doc: AsyncJob(self._client, doc))
        return self

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:
            await self.submit()

    async def report(self, failures: int = 100) -> BatchReport:
        return BatchReport.of(await self._client._send(self._report_call(failures)))

    async def deliveries(self) -> dict[str, Any]:
        log: dict[str, Any] = {}
        cursor = self._more(log, await self._client._send(self._deliveries_call(None)))
        while cursor is not None:
            cursor = self._more(log, await self._client._send(self._deliveries_call(cursor)))
        return log

    async def cancel(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._client._send(self._action_call("cancel"))
        return answer

    async def pause(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._client._send(self._action_call("pause"))
        return answer

    async def resume(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._client._send(self._action_call("resume"))
        return answer

    async def as_completed(self, timeout: float | None = None) -> AsyncIterator[AsyncJob]:
        deadline = Deadline(timeout, f"batch {self._submitted()}")
        watching = self._client._watch(Watch(self._jobs), deadline, self._check, batch_id=self.id)
        async for job in watching:
            assert isinstance(job, AsyncJob)
            yield job

    async def wait(self, timeout: float | None = None) -> BatchReport:
        async for _ in self.as_completed(timeout):
            pass
        return await self.report()

    async def _check(self) -> list[dict[str, Any]]:
        report = await self.report(failures=1)
        known = sum(1 for j in self._jobs if j.done)
        if report.finished <= known:
            return []
        docs: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self._client._send(self._finals_call(cursor))
            docs += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return docs
