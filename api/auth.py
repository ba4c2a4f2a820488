"""Who is calling and what they may touch: the ``Authorization: Bearer <key>`` header as a
:class:`~smartq.keys.Caller`, and the tenant a request acts in as an :class:`Access`.

Every route but health, readiness and the OpenAPI documents takes one of the dependencies at
the bottom (a test walks ``app.routes`` to hold that): :data:`Submit`, :data:`Read` and
:data:`Cancel` for a tenant's jobs, :data:`Monitor` for the fleet (workers, metrics),
:data:`AdminDep` for key administration. Missing, unknown, revoked, expired and malformed keys
all get the same 401 with ``WWW-Authenticate``, so an answer never tells which ids exist; a valid
key without the right gets 403. A key in the query string is refused outright: URLs end up in
access logs, proxies and browser history.

With ``SMARTQ_AUTH=off`` (see :mod:`smartq.authmode`) nothing is checked and every request is
:data:`~smartq.keys.OPEN_CALLER`, an admin of the default tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import ApiContext, ConnDep
from smartq import keys
from smartq.errors import ConfigurationError
from smartq.keys import OPEN_CALLER, Caller, Scope, looks_like_key

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `smartq keys create`: `Authorization: Bearer sq_…`.",
)
#: Query parameters that would carry a credential; values shaped like a key are refused too.
_CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "access_token", "token", "authorization"})
CHALLENGE = 'Bearer realm="smartq"'
INVALID_CHALLENGE = f'{CHALLENGE}, error="invalid_token"'

#: The statuses a route behind these dependencies may add, for its OpenAPI ``responses``.
AUTH_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "A key in the query string"},
    401: {"description": "No key, or a key that is unknown, revoked, expired or malformed"},
    403: {"description": "A valid key without the right this route needs"},
}


@dataclass(frozen=True, slots=True)
class Access:
    """A caller and the tenant its request reads and writes."""

    caller: Caller
    #: Whose objects the request sees; None: every tenant's (an admin without ``?tenant=``).
    tenant: str | None

    @property
    def home(self) -> str:
        """The tenant what the request creates belongs to."""
        return self.tenant or self.caller.tenant


def _unauthorized(message: str, challenge: str) -> HTTPException:
    detail = {"error": message, "detail": "send Authorization: Bearer <key>"}
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def key_in_url(params: Iterable[tuple[str, str]]) -> str | None:
    """The name of a query parameter that carries a credential, if any."""
    for name, value in params:
        if name.lower() in _CREDENTIAL_PARAMS or looks_like_key(value):
            return name
    return None


def _refuse_key_in_url(request: Request) -> None:
    """400 if a query parameter carries a key. Neither the value nor the URL is logged."""
    name = key_in_url(request.query_params.multi_items())
    if name is None:
        return
    log.warning(
        "API key refused in a query string",
        extra={"action": "api.key_in_url", "parameter": name, "path": request.url.path},
    )
    raise HTTPException(
        400,
        {
            "error": "API keys are not accepted in the URL (it ends up in logs); "
            "send Authorization: Bearer <key>, and revoke a key that was sent this way",
            "detail": {"parameter": name},
        },
    )


async def verified(ctx: ApiContext, conn: AsyncConnection, presented: str | None) -> Caller | None:
    """The caller a presented key stands for (any caller when auth is off); None otherwise."""
    if not ctx.settings.auth_required:
        return OPEN_CALLER
    if presented is None:
        return None
    return await ctx.keys.verify(conn, presented)


async def get_caller(
    request: Request,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a request with a valid key; raises 401 (or 400) otherwise. The context
    is read off the app rather than taken as a dependency, and the query string off the scope
    rather than ``request.url`` (which builds the whole URL): this runs on every request."""
    ctx: ApiContext = request.app.state.ctx
    if request.scope.get("query_string"):
        _refuse_key_in_url(request)
    if not ctx.settings.auth_required:
        return OPEN_CALLER
    if credentials is None:
        raise _unauthorized("an API key is required", CHALLENGE)
    caller = await ctx.keys.verify(conn, credentials.credentials)
    if caller is None:
        raise _unauthorized("invalid API key", INVALID_CHALLENGE)
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def _forbidden(message: str) -> HTTPException:
    return HTTPException(403, {"error": message, "detail": None})


def check_scope(caller: Caller, scope: Scope) -> None:
    if not caller.can(scope):
        raise _forbidden(f"this key lacks the {scope.value!r} scope this needs")


def tenant_access(caller: Caller, tenant: str | None) -> Access:
    """What ``caller`` reaches when it asks for ``tenant`` (``?tenant=``): admins any tenant
    (every tenant when they name none), other keys their own only."""
    if tenant is not None:
        try:
            keys.check_tenant(tenant)
        except ConfigurationError as exc:
            raise HTTPException(422, {"error": str(exc), "detail": {"tenant": tenant}}) from None
        if not caller.admin and tenant != caller.tenant:
            raise _forbidden("only an admin key may act in another tenant")
    if caller.admin:
        return Access(caller, tenant)
    return Access(caller, caller.tenant)


TenantParam = Annotated[
    str | None,
    Query(
        max_length=100,
        description="Admin keys: act in this tenant only (default: every tenant for reads, "
        "the key's own for what is created). Other keys may name only their own.",
    ),
]


def requires(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, if its key has ``scope`` (else 403)."""

    async def dependency(caller: CallerDep) -> Caller:
        check_scope(caller, scope)
        return caller

    dependency.__name__ = f"requires_{scope.value}"
    return dependency


def scoped(scope: Scope) -> Callable[..., Awaitable[Access]]:
    """A dependency: the caller with ``scope`` and the tenant its request acts in."""

    async def dependency(caller: CallerDep, tenant: TenantParam = None) -> Access:
        check_scope(caller, scope)
        return tenant_access(caller, tenant)

    dependency.__name__ = f"scoped_{scope.value}"
    return dependency


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise _forbidden("this needs an admin key")
    return caller


Submit = Annotated[Access, Depends(scoped(Scope.SUBMIT))]
Read = Annotated[Access, Depends(scoped(Scope.READ))]
Cancel = Annotated[Access, Depends(scoped(Scope.CANCEL))]
Monitor = Annotated[Caller, Depends(requires(Scope.MONITOR))]
AdminDep = Annotated[Caller, Depends(require_admin)]
