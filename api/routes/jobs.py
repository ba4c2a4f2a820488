"""``/jobs``: submit, batch-submit, list, show, cancel, logs."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Response
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy import RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api import paging, store
from api.auth import AUTH_ERRORS, Access, Cancel, Read, Submit
from api.deps import ApiContext, ConnDep, ContextDep
from api.schemas import (
    BatchAccepted,
    BatchCreate,
    BatchCreated,
    CancelResult,
    ErrorBody,
    JobCreate,
    JobDetail,
    JobPage,
    JobPublic,
    PriorityParam,
    ProgressOut,
    no_nul,
    priority_value,
)
from api.submit import Owner, ResolvedBatch, job_row, resolve_batch
from api.views import job_doc, job_public, json_response
from api.waiting import waiting_reason
from models import storable
from models.enums import CANCELLABLE_AT_ONCE, FINAL_STATUSES, JobStatus
from models.messages import CancelRequested, JobStatusEvent
from models.types import utcnow
from smartq import topology
from smartq.db import is_retryable
from smartq.errors import SubmissionRejected
from smartq.registry import JobType

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_ERRORS)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 409, 413, 422)
}
IdempotencyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200), AfterValidator(no_nul)
]
PreferHeader = Annotated[
    str | None,
    Header(
        max_length=200,
        description="`return=minimal`: answer each job with its id, key and status only "
        "(RFC 7240; the answer then says `Preference-Applied: return=minimal`).",
    ),
]
MINIMAL = {"Preference-Applied": "return=minimal"}


#: The HTTP status of each kind of rejected submission.
_REJECTED = {SubmissionRejected.INVALID: 422, SubmissionRejected.TOO_LARGE: 413}


def _fail(exc: SubmissionRejected) -> HTTPException:
    return HTTPException(_REJECTED[exc.kind], {"error": exc.message, "detail": exc.detail})


def _job_type(ctx: ApiContext, name: str) -> JobType:
    if name not in ctx.registry:
        known = ctx.registry.names()
        raise SubmissionRejected(
            f"unknown job type {name!r}; registered types: {', '.join(known)}",
            {"known_types": known},
        )
    return ctx.registry.get(name)


def _check_payload(ctx: ApiContext, payload: dict[str, Any], owner: str = "") -> None:
    """The payload must fit the limit and be JSON that PostgreSQL and orjson can both hold."""
    where = f" of job {owner!r}" if owner else ""
    try:
        encoded = orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise SubmissionRejected(f"payload{where} cannot be encoded: {exc}") from None
    limit = ctx.settings.max_payload_bytes
    if len(encoded) > limit:
        raise SubmissionRejected(
            f"payload{where} is {len(encoded)} bytes; the limit is {limit}",
            kind=SubmissionRejected.TOO_LARGE,
        )
    problem = storable.problem(payload)
    if problem is not None:
        raise SubmissionRejected(f"payload{where} {problem}")


async def _notify(ctx: ApiContext, routing_key: str, body: bytes) -> None:
    """Tell the scheduler at once; it also polls, so a lost hint only delays."""
    try:
        await ctx.publish(routing_key, body)
    except Exception:
        log.warning("could not notify the scheduler", exc_info=True, extra={"action": "notify"})


@router.post(
    "", status_code=201, response_model=JobPublic, responses={200: {"model": JobPublic}, **ERRORS}
)
async def submit_job(
    body: JobCreate,
    access: Submit,
    ctx: ContextDep,
    conn: ConnDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Submit one job. Replaying an idempotency key with the same body returns the original
    job (200); with another body, 409. Idempotency keys are the tenant's own: another
    tenant's use of the same key is another job."""
    return await submit_one(ctx, conn, body, access, idempotency_key)


async def submit_one(
    ctx: ApiContext,
    conn: AsyncConnection,
    body: JobCreate,
    access: Access,
    idempotency_key: str | None,
) -> Response:
    """``POST /jobs`` once the request is parsed and the caller known: the route's body, and
    :mod:`api.fastpath`'s (which parses and authenticates without FastAPI's machinery)."""
    if idempotency_key is not None:
        if body.idempotency_key not in (None, idempotency_key):
            raise HTTPException(422, "Idempotency-Key header and idempotency_key field differ")
        body = body.model_copy(update={"idempotency_key": idempotency_key})
    try:
        job_type = _job_type(ctx, body.type)
        _check_payload(ctx, body.payload)
        deps = list(dict.fromkeys(body.depends_on))
        values = job_row(body, job_type, utcnow(), owner=_owner(access, body), depends_on=deps)
        if deps:
            async with conn.begin():
                await _require_known(conn, deps, access.home)
                created = await store.insert_job(conn, values, deps)
        else:
            # One statement, atomic on its own: in autocommit it is one round trip to the
            # database instead of three (BEGIN, INSERT, COMMIT).
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            created = await store.insert_job(conn, values, ())
    except SubmissionRejected as exc:
        raise _fail(exc) from None
    if not created:
        return await _replay(conn, values, access.home)
    ctx.metrics.submitted.labels(body.type).inc()
    ctx.hints.add([values["id"]])
    return json_response(job_doc(values, deps), 201)


def _owner(access: Access, body: JobCreate | BatchCreate) -> Owner:
    """With a key, ``created_by`` is the key's id whatever the body says; with auth off there
    is no key, and the body's ``created_by`` is kept as before."""
    created_by = access.caller.key_id or body.created_by
    return Owner(tenant=access.home, created_by=created_by)


async def _require_known(conn: AsyncConnection, deps: list[uuid.UUID], tenant: str) -> None:
    """422 naming the dependencies that are not jobs of ``tenant`` (checked in the submit's
    transaction): another tenant's job is as unknown as a random id."""
    missing = set(deps) - await store.existing_ids(conn, deps, tenant)
    if missing:
        raise SubmissionRejected(
            "unknown dependencies: " + ", ".join(sorted(map(str, missing))),
            {"unknown_dependencies": sorted(map(str, missing))},
        )


async def _replay(conn: AsyncConnection, values: dict[str, Any], tenant: str) -> Response:
    existing = await store.job_by_idempotency_key(conn, values["idempotency_key"], tenant)
    if existing is None:  # the other submit rolled back; the client may simply retry
        raise HTTPException(409, "a concurrent request with this idempotency key failed; retry")
    if existing["request_hash"] != values["request_hash"]:
        raise HTTPException(
            409,
            {
                "error": "idempotency key already used for a different job",
                "detail": {"job_id": str(existing["id"])},
            },
        )
    depends = await store.dependencies_of(conn, [existing["id"]])
    return json_response(job_doc(existing, depends[existing["id"]]), 200)


def _batch_hash(body: BatchCreate) -> str:
    # model_dump_json: the same bytes as orjson over model_dump(mode="json") (so stored
    # hashes still match), in 60 % of the time.
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchCreated | BatchAccepted,
    responses={200: {"model": BatchCreated | BatchAccepted}, **ERRORS},
)
async def submit_batch(
    body: BatchCreate,
    access: Submit,
    ctx: ContextDep,
    conn: ConnDep,
    idempotency_key: IdempotencyHeader = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit a DAG atomically: ``depends_on`` names keys of this batch or existing job ids.
    A cycle, an unknown dependency or a self-dependency rejects the whole batch. With
    ``Prefer: return=minimal`` each job is answered by its id, key and status."""
    minimal = prefer is not None and "return=minimal" in prefer.replace(" ", "").lower()
    limit = ctx.settings.max_batch_jobs
    if len(body.jobs) > limit:
        raise HTTPException(422, f"batch has {len(body.jobs)} jobs; the limit is {limit}")
    batch_id = uuid.uuid4()
    now = utcnow()
    try:
        types = {}
        for i, job in enumerate(body.jobs):
            types[job.type] = _job_type(ctx, job.type)
            _check_payload(ctx, job.payload, job.key or f"#{i}")
        owner = _owner(access, body)
        resolved = resolve_batch(body, types, now, batch_id, owner)
        batch = {
            "id": batch_id,
            "name": body.name,
            "tenant": owner.tenant,
            "created_by": owner.created_by,
            "job_count": len(body.jobs),
            "created_at": now,
            "idempotency_key": idempotency_key,
            "request_hash": _batch_hash(body) if idempotency_key else None,
        }
        async with conn.begin():
            await _require_known(conn, sorted(resolved.external), owner.tenant)
            created = await store.insert_batch(conn, batch, resolved.rows, resolved.edges)
    except SubmissionRejected as exc:
        raise _fail(exc) from None
    except IntegrityError as exc:
        raise HTTPException(
            409, "a job's idempotency key is already used; nothing was written"
        ) from exc
    if not created:
        return await _replay_batch(conn, batch, owner.tenant, minimal)
    for type_name, n in Counter(job.type for job in body.jobs).items():
        ctx.metrics.submitted.labels(type_name).inc(n)
    ctx.hints.add([r["id"] for r in resolved.rows])
    if minimal:
        return json_response({"batch_id": batch_id, "jobs": _accepted(resolved.rows)}, 201, MINIMAL)
    return json_response({"batch_id": batch_id, "jobs": _batch_docs(resolved)}, 201)


def _batch_docs(resolved: ResolvedBatch) -> list[dict[str, Any]]:
    """The created jobs, each with its dependencies, in submission order."""
    deps: dict[uuid.UUID, list[uuid.UUID]] = {r["id"]: [] for r in resolved.rows}
    for edge in resolved.edges:
        deps[edge["job_id"]].append(edge["depends_on_id"])
    return [job_doc(r, deps[r["id"]]) for r in resolved.rows]


def _accepted(rows: Sequence[Mapping[str, Any] | RowMapping]) -> list[dict[str, Any]]:
    return [{"id": r["id"], "key": r["key"], "status": r["status"]} for r in rows]


async def _replay_batch(
    conn: AsyncConnection, batch: dict[str, Any], tenant: str, minimal: bool
) -> Response:
    existing = await store.batch_by_idempotency_key(conn, batch["idempotency_key"], tenant)
    if existing is None:
        raise HTTPException(409, "a concurrent request with this idempotency key failed; retry")
    if existing["request_hash"] != batch["request_hash"]:
        raise HTTPException(409, "idempotency key already used for a different batch")
    rows = await store.batch_jobs(conn, existing["id"])
    if minimal:
        return json_response({"batch_id": existing["id"], "jobs": _accepted(rows)}, 200, MINIMAL)
    deps = await store.dependencies_of(conn, [r["id"] for r in rows])
    jobs = [job_doc(r, deps[r["id"]]) for r in rows]
    return json_response({"batch_id": existing["id"], "jobs": jobs}, 200)


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    access: Read,
    conn: ConnDep,
    ctx: ContextDep,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    type: str | None = None,
    priority: PriorityParam | None = None,
    batch_id: uuid.UUID | None = None,
    created_after: AwareDatetime | None = None,
    created_before: AwareDatetime | None = None,
    limit: paging.Limit = 50,
    cursor: paging.Cursor = None,
) -> JobPage:
    """Newest first, filtered; follow ``next_cursor`` for the next page."""
    paging.check_limit(limit, ctx.settings.page_limit_max)
    flt = store.ListFilter(
        tenant=access.tenant,
        statuses=[s.value for s in status or []],
        type=type,
        priority=priority_value(priority) if priority is not None else None,
        batch_id=batch_id,
        created_after=created_after,
        created_before=created_before,
    )
    after = paging.decode_cursor(cursor)
    rows, next_cursor = paging.page(await store.list_jobs(conn, flt, after, limit + 1), limit)
    deps = await store.dependencies_of(conn, [r["id"] for r in rows])
    return JobPage(items=[job_public(r, deps[r["id"]]) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, responses=ERRORS)
async def get_job(job_id: uuid.UUID, access: Read, conn: ConnDep) -> JobDetail:
    """The job, its dependencies and dependents, and while it waits, why."""
    row = await store.get_job(conn, job_id, access.tenant)
    if row is None:
        raise HTTPException(404, f"no job {job_id}")
    deps = await store.dependencies_of(conn, [job_id])
    public = job_public(row, deps[job_id])
    if public.worker_id is None and row["status"] in FINAL_STATUSES and row["attempts"]:
        # The row names a worker only while the job runs; once it has finished, show the
        # worker of its last attempt.
        public.worker_id = await store.last_worker(conn, job_id)
    progress = await store.progress_of(conn, job_id)
    return JobDetail(
        **public.model_dump(),
        dependents=await store.dependents_of(conn, job_id),
        waiting_reason=await waiting_reason(conn, row),
        progress=ProgressOut.model_validate(dict(progress)) if progress is not None else None,
    )


@router.patch(
    "/{job_id}/cancel",
    response_model=CancelResult,
    responses={202: {"model": CancelResult}, **ERRORS},
)
async def cancel_job(
    job_id: uuid.UUID, access: Cancel, ctx: ContextDep, conn: ConnDep, response: Response
) -> CancelResult:
    """Cancel a waiting job at once with everything downstream of it (200), or ask a running
    job's worker to stop it (202). A finished job: 409."""
    for _ in range(5):  # the job may start between our read and our conditional update
        try:
            outcome = await _try_cancel(conn, job_id, access.tenant)
        except DBAPIError as exc:  # a deadlock with the scheduler's pass: run it again
            if not is_retryable(exc):
                raise
            continue
        if outcome is not None:
            return await _cancel_result(ctx, conn, job_id, outcome, response, access.tenant)
    raise HTTPException(409, "the job kept changing state; try again")


async def _try_cancel(
    conn: AsyncConnection, job_id: uuid.UUID, tenant: str | None
) -> list[store.Cancelled] | None:
    """One transaction of a cancel: what it cancelled, or None when the job moved meanwhile."""
    async with conn.begin():
        row = await store.get_job(conn, job_id, tenant)
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        now = utcnow()
        if row["status"] in CANCELLABLE_AT_ONCE:
            cancelled = await store.cancel_waiting(conn, row, now)
            return cancelled or None
        if row["status"] == JobStatus.RUNNING.value:
            return [] if await store.request_stop(conn, job_id, now) else None
        raise HTTPException(
            409,
            {
                "error": f"job {job_id} is already {row['status']}",
                "detail": {"status": row["status"]},
            },
        )


async def _cancel_result(
    ctx: ApiContext,
    conn: AsyncConnection,
    job_id: uuid.UUID,
    cancelled: list[store.Cancelled],
    response: Response,
    tenant: str | None,
) -> CancelResult:
    row = await store.get_job(conn, job_id, tenant)
    assert row is not None
    await _notify(ctx, topology.JOB_CANCEL_REQUESTED, CancelRequested(job_id=job_id).dumps())
    now = utcnow()
    for c in cancelled:  # each under its own batch, with the reason its row got
        event = JobStatusEvent(
            job_id=c.job_id,
            status=JobStatus.CANCELLED,
            attempt=c.attempts,
            ts=now,
            batch_id=c.batch_id,
            reason=c.reason,
            job_type=c.job_type,
            tenant=c.tenant,
        )
        await _notify(ctx, topology.status_key(c.job_id), event.dumps())
    if not cancelled:
        response.status_code = 202
    deps = await store.dependencies_of(conn, [job_id])
    return CancelResult(
        job=job_public(row, deps[job_id]),
        cancelled=[c.job_id for c in cancelled],
        pending_worker_stop=not cancelled,
    )
