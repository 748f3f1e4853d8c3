"""``/metrics``: the coordinator's Prometheus metrics, read fresh at each scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..observe.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    await m.refresh(request.app.state.coordinator)
    return Response(m.render(), media_type=CONTENT_TYPE)
