"""``/admin/keys``: API keys over REST, for admin keys only (``smartq keys`` does the same
from a shell). A key is shown whole once, in the answer that creates it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AUTH_ERRORS, AdminDep
from api.deps import ConnDep, ContextDep
from api.schemas import ErrorBody
from smartq import keystore
from smartq.errors import ConfigurationError, UnknownKey
from smartq.keys import DEFAULT_SCOPES, Scope, parse_duration
from smartq.keystore import KeyInfo, NewKey

router = APIRouter(prefix="/admin/keys", tags=["admin"], responses=AUTH_ERRORS)
KeyId = Annotated[str, Path(max_length=32)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="The tenant the key acts for.")
    scopes: list[Scope] = Field(
        default_factory=lambda: sorted(DEFAULT_SCOPES),
        description="What the key may do (an admin key may do everything).",
    )
    admin: bool = False
    label: str | None = Field(default=None, description="A note for people, e.g. its owner.")
    expires: str | None = Field(
        default=None, description="How long the key lives, e.g. 90d, 12h, 30m; unset: forever."
    )


def _invalid(exc: ConfigurationError) -> HTTPException:
    return HTTPException(422, {"error": str(exc), "detail": None})


_422: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody}}


@router.post("", status_code=201, response_model=NewKey, responses=_422)
async def create_key(body: KeyCreate, caller: AdminDep, conn: ConnDep) -> NewKey:
    """Create a key; the answer holds the whole key, which cannot be read again."""
    try:
        expires_in = parse_duration(body.expires) if body.expires is not None else None
        return await keystore.create_key(
            conn,
            tenant=body.tenant,
            scopes=body.scopes,
            admin=body.admin,
            label=body.label,
            expires_in=expires_in,
        )
    except ConfigurationError as exc:
        raise _invalid(exc) from None


@router.get("", response_model=list[KeyInfo])
async def list_keys(caller: AdminDep, conn: ConnDep) -> list[KeyInfo]:
    """Every key, oldest first, without its secret."""
    return await keystore.list_keys(conn)


@router.delete("/{key_id}", response_model=KeyInfo, responses={404: {"model": ErrorBody}})
async def revoke_key(key_id: KeyId, caller: AdminDep, conn: ConnDep, ctx: ContextDep) -> KeyInfo:
    """Revoke a key: at once in this process, within ``SMARTQ_AUTH_CACHE_SECONDS`` in the
    others. Revoking a revoked key changes nothing."""
    try:
        info = await keystore.revoke_key(conn, key_id)
    except UnknownKey as exc:
        raise HTTPException(404, str(exc)) from None
    ctx.keys.forget(key_id)
    return info
