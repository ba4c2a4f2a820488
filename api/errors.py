"""Every error the API returns is a small JSON document ``{"error": ..., "detail": ...}`` with
the right status code; no traceback ever leaves the process."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import retry_after
from smartq.errors import OverQuota, SmartqError

log = logging.getLogger(__name__)


def error(status: int, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


def _clean(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        out.append(item)
    return out


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return error(422, "malformed JSON body", errors)
    first: dict[str, Any] = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return error(
        422, f"invalid request: {where}: {first['msg']}" if where else first["msg"], errors
    )


def _unreadable_body(exc: StarletteHTTPException) -> JSONResponse | None:
    """FastAPI answers 400 "There was an error parsing the body" for any failure to read a
    JSON body other than a syntax error (which it reports as a validation error); say what it
    was, as every other bad body is said: bytes that are not UTF-8 and nesting too deep for
    the parser are malformed JSON (422), a streamed body over the limit is a 413."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, _TooLarge):
        return cause.response()
    if isinstance(cause, UnicodeDecodeError):
        reason = f"not UTF-8 (byte {cause.start})"
    elif isinstance(cause, RecursionError):
        reason = "nested too deeply"
    else:
        return None
    where = [{"loc": ["body"], "msg": reason, "type": "json_invalid"}]
    return error(422, f"malformed JSON body: {reason}", where)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    unreadable = _unreadable_body(exc)
    if unreadable is not None:
        return unreadable
    if isinstance(exc.detail, dict):
        return JSONResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    return JSONResponse(
        {"error": exc.detail, "detail": None}, status_code=exc.status_code, headers=exc.headers
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """The database went away mid-request (restart, failover, a killed connection): nothing
    was committed, so the client may retry; say so instead of a 500."""
    log.warning(
        "database unavailable",
        exc_info=True,
        extra={"action": "api.database_down", "path": request.url.path},
    )
    response = error(503, "the database is unavailable right now; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    """No database connection came free within ``SMARTQ_API_DB_ACQUIRE_TIMEOUT_SECONDS``:
    the request never reached the database, so nothing was written. Answered at once, with a
    short jittered ``Retry-After``, rather than left waiting on an overload."""
    log.warning(
        "no database connection free in time",
        extra={"action": "api.overloaded", "path": request.url.path},
    )
    _refused(request, "overloaded")
    response = error(503, "the API is overloaded (no database connection free); retry shortly")
    seconds = retry_after.spread(retry_after.OVERLOADED_SECONDS, random.random())
    response.headers["Retry-After"] = str(seconds)
    return response


async def _over_quota(request: Request, exc: Exception) -> JSONResponse:
    """A submission over its tenant's quota: nothing was written, nothing is kept under its
    idempotency key, and ``Retry-After`` says when to come back (:mod:`api.admission`). Not
    logged one by one: a flood of them is what the quota is for; the counter has them."""
    assert isinstance(exc, OverQuota)
    _refused(request, exc.quota)
    response = error(429, exc.message, exc.detail)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _refused(request: Request, reason: str) -> None:
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        ctx.metrics.refused.labels(reason).inc()


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    """A value the database refuses (a NUL in a query string, say): the request's fault, and
    nothing was written (the statement failed, its transaction rolled back)."""
    assert isinstance(exc, DataError)
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
    log.info("value refused by the database", extra={"action": "api.bad_value", "why": reason})
    return error(422, f"the database refused a value in the request: {reason}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"action": "api.error", "path": request.url.path})
    return error(500, "internal error; the server log has the details")


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
#: What a route may raise once its request is parsed, and how each is answered.
_HANDLERS: dict[type[Exception], Handler] = {
    StarletteHTTPException: _http,
    OperationalError: _database_down,
    InterfaceError: _database_down,
    PoolTimeout: _overloaded,
    OverQuota: _over_quota,
    DataError: _bad_value,
}


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    for kind, handler in _HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, _unexpected)


async def handled(request: Request, exc: Exception) -> JSONResponse | None:
    """The answer the app's handlers give ``exc`` (for code that runs outside the routes, as
    :mod:`api.fastpath` does); None for an unexpected error (the 500 handler's)."""
    for kind in type(exc).__mro__:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return await handler(request, exc)
    return None


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, before they are buffered whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:  # FastAPI turns it into a 400 on body routes: see _unreadable_body
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _TooLarge(self.limit).response()(scope, receive, send)


class _TooLarge(SmartqError):
    """A body over the limit, raised while it streams in (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def response(self) -> JSONResponse:
        return error(413, f"request body over the limit of {self.limit} bytes")
