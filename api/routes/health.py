"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import ContextDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(ctx: ContextDep, response: Response) -> Health:
    """The database and the broker are reachable."""
    checks = {"database": "ok", "broker": "ok"}
    try:
        async with asyncio.timeout(3):
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(3):
            if not await ctx.broker_ping():
                checks["broker"] = "unreachable"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    if not ok:
        response.status_code = 503
    return Health(status="ok" if ok else "unavailable", checks=checks)
