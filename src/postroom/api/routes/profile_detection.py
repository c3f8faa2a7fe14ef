"""``/profile-detection``: suggest a profile's servers from an e-mail address. Admin only;
nothing is saved (docs/profiles.md, "Detecting settings")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from postroom.api.deps import PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(
    tags=["profiles"], dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES
)


@router.get(
    "/profile-detection",
    summary="Suggest SMTP and IMAP settings for an address (built-in data, autoconfig, SRV, MX)",
)
async def detect_profile(
    postroom: PostroomDep,
    address: Annotated[str, Query(max_length=400, description="The address to send from")] = "",
) -> dict[str, Any]:
    """``suggestions`` (best first, each with its ``source``) and ``tried``; 422 for a
    malformed address (field ``address``)."""
    found = await postroom.adetect_profile(address)
    return found.as_dict()
