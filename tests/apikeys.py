"""Helpers for tests that present API keys."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from smartq import keys, keystore
from smartq.keys import Scope
from smartq.keystore import NewKey


async def suite_key(engine: AsyncEngine, tenant: str = "default") -> NewKey:
    """The key the suite's clients present: a tenant's (not an admin's), with every scope, so
    every test also runs the tenant checks of the routes it uses."""
    async with engine.connect() as conn:
        return await keystore.create_key(conn, tenant=tenant, scopes=set(Scope))


async def key_of(
    engine: AsyncEngine, tenant: str, scopes: set[Scope] | None = None, admin: bool = False
) -> str:
    async with engine.connect() as conn:
        made = await keystore.create_key(
            conn, tenant=tenant, scopes=set(Scope) if scopes is None else scopes, admin=admin
        )
    return made.key


def bearer(key: str) -> dict[str, str]:
    """The request header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}


def secret_of(key: str) -> str:
    """The secret part of a full key (it may itself hold ``_``)."""
    parsed = keys.parse(key)
    assert parsed is not None
    return parsed.secret
