"""``/metrics``: Prometheus text exposition (no API key, like /healthz; bind it privately)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from postroom.api.deps import PostroomDep
from postroom.outbox.metrics import render_metrics

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(postroom: PostroomDep, request: Request) -> PlainTextResponse:
    # the outbox from the database (the same whichever process is scraped), then this
    # process's own send path: request latency and commit batch sizes
    text = render_metrics(postroom.sessions)
    own = [*request.app.state.api_latency.render(), *request.app.state.group_commit.stats.render()]
    return PlainTextResponse(
        text + "\n".join(own) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
    )
