"""Liveness and readiness probes (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from postroom.api.deps import PostroomDep
from postroom.api.schemas import Health
from postroom.profiles.schemas import NO_DEFAULT

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The process is alive",
)
async def healthz() -> Health:  # no I/O: async spares it a worker-thread hop
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The database answers",
    responses={503: {"model": Health, "description": "The database does not answer"}},
)
def readyz(postroom: PostroomDep, response: Response) -> Health:
    if not postroom.ping():
        response.status_code = 503
        return Health(status="unavailable", database="unreachable")
    warnings = [NO_DEFAULT] if postroom.get_default() is None else None
    return Health(status="ok", database="ok", warnings=warnings)
