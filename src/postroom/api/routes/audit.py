"""``/audit``: who changed what, newest first (secrets appear only as "changed")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from postroom.api.deps import PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES
from postroom.audit import AuditRead

__all__ = ["router"]

router = APIRouter(
    prefix="/audit",
    tags=["audit"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)


@router.get("", response_model=list[AuditRead], summary="The audit log, newest first")
def list_audit(
    postroom: PostroomDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    target_type: Annotated[str | None, Query(max_length=50, examples=["profile"])] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
) -> list[AuditRead]:
    return postroom.audit.list(limit=limit, target_type=target_type, target=target)
