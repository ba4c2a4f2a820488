"""``GET /metrics``: Prometheus text format (see :mod:`api.metrics` for what each figure is)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ContextDep
from api.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(ctx: ContextDep) -> Response:
    """Counters, histograms and gauges of the whole system, as this API process sees them."""
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
