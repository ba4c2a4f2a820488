"""``POST /jobs`` without FastAPI's per-request machinery, for the common case.

A client submitting one job at a time waits for every request in turn, so the API's CPU per
request is its rate: FastAPI's middleware, routing and dependency solving were more than half
of it for a sequential ``client.submit()`` loop (py-spy), around a route whose own work is one
INSERT. :class:`SubmitFastPath` sits in the middleware stack (inside the body limit and the
500 handler) and serves ``POST /jobs`` itself when the request is plain: a JSON body that
parses and validates as :class:`~api.schemas.JobCreate`, no query string, and a key the
verifier's cache vouches for with the ``submit`` scope (or auth off). It then runs the route's
own body, :func:`api.routes.submissions.submit_one`, so what is checked and written is the same.

Anything else (no or unknown key, a cache miss, a body that does not validate, a query
string, another content type) goes on to the FastAPI route with the body it read, which
answers as it always has, in the one error shape, and is what the OpenAPI document describes.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.auth import tenant_access
from api.deps import ApiContext
from api.routes.submissions import submit_one
from api.schemas import JobCreate
from smartq.keys import OPEN_CALLER, Caller
from smartq.keys import Scope as KeyScope

#: The Idempotency-Key header's longest value (as the route declares it).
IDEMPOTENCY_KEY_MAX = 200


class SubmitFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != "/jobs"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        ctx: ApiContext | None = getattr(scope["app"].state, "ctx", None)
        headers = _headers(scope)
        caller = None if ctx is None else _caller(ctx, headers)
        if ctx is None or caller is None or not _is_json(headers):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        job = _parse(body) if complete else None
        key = headers.get(b"idempotency-key")
        if job is None or (key is not None and not _fine_key(key)):
            await self.app(scope, _replaying(body, complete, receive), send)
            return
        idempotency_key = None if key is None else key.decode("latin-1")
        try:
            async with ctx.engine.connect() as conn:
                response = await submit_one(
                    ctx, conn, job, tenant_access(caller, None), idempotency_key
                )
        except Exception as exc:
            handled = await errors.handled(Request(scope, receive), exc)
            if handled is None:
                raise  # the 500 handler outside answers, in the one error shape
            response = handled
        ctx.metrics.fast_submits.inc()
        await response(scope, receive, send)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (ASGI servers give them lower-cased); of a
    repeated header, the first."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name, value)
    return out


def _caller(ctx: ApiContext, headers: dict[bytes, bytes]) -> Caller | None:
    """The caller, when it is known without a database read and may submit."""
    if not ctx.settings.auth_required:
        return OPEN_CALLER
    authorization = headers.get(b"authorization")
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    caller = ctx.keys.cached(authorization[7:].strip().decode("latin-1"))
    return caller if caller is not None and caller.can(KeyScope.SUBMIT) else None


def _is_json(headers: dict[bytes, bytes]) -> bool:
    media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and False if the client went away first (the route then sees the
    disconnect itself). Over the limit, :class:`~api.errors.BodyLimit`'s receive raises."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _parse(body: bytes) -> JobCreate | None:
    """The body as the route would validate it (a dict validated in Python mode, as FastAPI
    does); None for anything the route should answer itself."""
    try:
        document: Any = orjson.loads(body)
        return JobCreate.model_validate(document) if isinstance(document, dict) else None
    except (orjson.JSONDecodeError, ValidationError):
        return None


def _fine_key(value: bytes) -> bool:
    return len(value) <= IDEMPOTENCY_KEY_MAX and b"\x00" not in value


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that gives ``body`` first (what the fast path read), then the client's."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given or not complete:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
