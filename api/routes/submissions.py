"""``POST /jobs`` and ``POST /jobs/batch``: a submission checked, written once per idempotency
key, and answered (the rows are built in :mod:`api.submit`; :mod:`api.fastpath` runs
:func:`submit_one` for plain requests without FastAPI's machinery)."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Response
from pydantic import AfterValidator
from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.admission import Quotas
from api.auth import AUTH_ERRORS, Access, Submit
from api.callbacks import check_urls, require_secret
from api.deps import ApiContext, ConnDep, ContextDep
from api.routes.jobs import ERRORS
from api.schemas import BatchAccepted, BatchCreate, BatchCreated, JobCreate, JobPublic, no_nul
from api.submit import Owner, ResolvedBatch, job_row, resolve_batch
from api.views import job_doc, json_response
from models import storable
from models.inserts import callback_rows
from models.types import utcnow
from smartq.errors import OverQuota, SubmissionRejected
from smartq.registry import JobType

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_ERRORS)

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


def job_type_of(ctx: ApiContext, name: str) -> JobType:
    if name not in ctx.registry:
        known = ctx.registry.names()
        raise SubmissionRejected(
            f"unknown job type {name!r}; registered types: {', '.join(known)}",
            {"known_types": known},
        )
    return ctx.registry.get(name)


def check_payload(ctx: ApiContext, payload: dict[str, Any], owner: str = "") -> None:
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
    tenant = access.home
    quotas = await ctx.admission.admit(conn, tenant)
    try:
        job_type = job_type_of(ctx, body.type)
        check_payload(ctx, body.payload)
        deps = list(dict.fromkeys(body.depends_on))
        values = job_row(body, job_type, utcnow(), owner=_owner(access, body), depends_on=deps)
        if deps or quotas.max_active_jobs is not None:
            replay = (body.idempotency_key, store.job_by_idempotency_key)
            async with conn.begin():
                await _require_known(conn, deps, tenant)
                await _hold_room(ctx, conn, tenant, quotas, 1, replay)
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
    if not deps:
        return
    missing = set(deps) - await store.existing_ids(conn, deps, tenant)
    if missing:
        raise SubmissionRejected(
            "unknown dependencies: " + ", ".join(sorted(map(str, missing))),
            {"unknown_dependencies": sorted(map(str, missing))},
        )


#: What a submission's idempotency key already made, read in the submit's transaction.
FindByKey = Callable[[AsyncConnection, str, str], Awaitable[RowMapping | None]]


async def _hold_room(
    ctx: ApiContext,
    conn: AsyncConnection,
    tenant: str,
    quotas: Quotas,
    n: int,
    replay: tuple[str | None, FindByKey],
) -> None:
    """Room for ``n`` more active jobs in the submit's transaction (:mod:`api.admission`),
    unless the submission replays what its idempotency key already made: that writes nothing
    (the insert after this conflicts and answers the replay), so no quota refuses it."""
    try:
        await ctx.admission.hold_room(conn, tenant, quotas, n)
    except (OverQuota, SubmissionRejected):
        key, find = replay
        if key is None or await find(conn, key, tenant) is None:
            raise


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
    # hashes still match), in 60 % of the time. Without callbacks they are left out, so the
    # hashes stored before callbacks existed still match their replays.
    leave_out = None if body.callbacks else {"callbacks"}
    return hashlib.sha256(body.model_dump_json(exclude=leave_out).encode()).hexdigest()


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
    quotas = await ctx.admission.admit(conn, access.home)  # a batch is one request
    batch_id = uuid.uuid4()
    now = utcnow()
    try:
        types = {}
        for i, job in enumerate(body.jobs):
            types[job.type] = job_type_of(ctx, job.type)
            check_payload(ctx, job.payload, job.key or f"#{i}")
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
        hooks = callback_rows(check_urls(body.callbacks, ctx.settings), batch_id, owner.tenant, now)
        replay = (idempotency_key, store.batch_by_idempotency_key)
        async with conn.begin():
            if hooks:
                await require_secret(conn, owner.tenant, ctx.settings)
            await _require_known(conn, sorted(resolved.external), owner.tenant)
            await _hold_room(ctx, conn, owner.tenant, quotas, len(resolved.rows), replay)
            created = await store.insert_batch(conn, batch, resolved.rows, resolved.edges, hooks)
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
