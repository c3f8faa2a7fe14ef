"""``/metrics``: Prometheus text exposition (no API key, like /healthz; bind it privately)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from postroom.api.deps import PostroomDep
from postroom.outbox.metrics import render_metrics

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(postroom: PostroomDep) -> PlainTextResponse:
    return PlainTextResponse(
        render_metrics(postroom.sessions), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
