"""Who is calling: the ``Authorization: Bearer <key>`` header as a :class:`~smartq.keys.Caller`.

Routes ask for it with ``CallerDep`` (any valid key) or ``AdminDep`` (an admin key). Missing,
unknown, revoked, expired and malformed keys all get the same 401 with ``WWW-Authenticate``,
so an answer never tells which ids exist; a valid key without the right gets 403. A key in the
query string is refused outright: URLs end up in access logs, proxies and browser history.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ConnDep, ContextDep
from smartq.keys import Caller, looks_like_key

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `smartq keys create`: `Authorization: Bearer sq_…`.",
)
#: Query parameters that would carry a credential; values shaped like a key are refused too.
_CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "access_token", "token", "authorization"})
_CHALLENGE = 'Bearer realm="smartq"'

#: The statuses a route behind ``CallerDep`` may add, for its OpenAPI ``responses``.
AUTH_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "A key in the query string"},
    401: {"description": "No key, or a key that is unknown, revoked, expired or malformed"},
    403: {"description": "A valid key without the right this route needs"},
}


def _unauthorized(message: str, challenge: str) -> HTTPException:
    detail = {"error": message, "detail": "send Authorization: Bearer <key>"}
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def _refuse_key_in_url(request: Request) -> None:
    """400 if a query parameter carries a key. Neither the value nor the URL is logged."""
    for name, value in request.query_params.multi_items():
        if name.lower() in _CREDENTIAL_PARAMS or looks_like_key(value):
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


async def get_caller(
    request: Request,
    ctx: ContextDep,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a request with a valid key; raises 401 (or 400) otherwise."""
    _refuse_key_in_url(request)
    if credentials is None:
        raise _unauthorized("an API key is required", _CHALLENGE)
    caller = await ctx.keys.verify(conn, credentials.credentials)
    if caller is None:
        raise _unauthorized("invalid API key", f'{_CHALLENGE}, error="invalid_token"')
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise HTTPException(403, {"error": "this needs an admin key", "detail": None})
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
