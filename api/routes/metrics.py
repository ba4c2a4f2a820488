"""``GET /metrics``: Prometheus text format (see :mod:`api.metrics` for what each figure is)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.auth import AUTH_ERRORS, Monitor
from api.deps import ContextDep
from api.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"], responses=AUTH_ERRORS)


@router.get("/metrics", response_class=Response)
async def metrics(caller: Monitor, ctx: ContextDep) -> Response:
    """Counters, histograms and gauges of the whole system, as this API process sees them.
    They count every tenant's jobs, so this needs the ``monitor`` scope (or an admin key);
    Prometheus sends one with ``authorization: {credentials: sq_…}``."""
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
