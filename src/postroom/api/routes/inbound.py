"""``/inbound``: received messages, listener health, webhook subscriptions (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from postroom.api.deps import JsonObject, PostroomDep, PrincipalDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.errors import FieldError, ValidationError
from postroom.inbound.schemas import (
    InboundEvent,
    InboundStatus,
    InboundSummary,
    MailboxHealth,
    WebhookCreated,
    WebhookRead,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/inbound",
    tags=["inbound"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)
_NOT_FOUND = error_responses((404, "Not found"))


@router.get(
    "/health", response_model=list[MailboxHealth], summary="Listener state per receiving profile"
)
def health(postroom: PostroomDep) -> list[MailboxHealth]:
    """A listener that died shows as `error` (stale), never as active."""
    return postroom.inbound.health()


@router.get(
    "/messages", response_model=list[InboundSummary], summary="Received messages, newest first"
)
def list_messages(
    postroom: PostroomDep,
    profile: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[InboundStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[InboundSummary]:
    return postroom.inbound.list(profile=profile, status=status, limit=limit)


@router.get("/messages/{inbound_id}", response_model=InboundEvent, responses=_NOT_FOUND)
def get_message(inbound_id: int, postroom: PostroomDep) -> InboundEvent:
    return postroom.inbound.get(inbound_id)


@router.get("/webhooks", response_model=list[WebhookRead])
def list_webhooks(postroom: PostroomDep) -> list[WebhookRead]:
    return postroom.inbound.webhooks.list()


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe a URL (the signing secret is shown once)",
)
def add_webhook(postroom: PostroomDep, principal: PrincipalDep, body: JsonObject) -> WebhookCreated:
    unknown = set(body) - {"url", "name", "profile", "secret"}
    if unknown:
        raise ValidationError([FieldError(k, "is not a known field") for k in sorted(unknown)])
    url = body.get("url")
    if not isinstance(url, str):
        raise ValidationError(FieldError("url", "is required"))
    for key in ("name", "profile", "secret"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ValidationError(FieldError(key, "must be text"))
    return postroom.inbound.webhooks.add(
        url, name=body.get("name"), profile=body.get("profile"), secret=body.get("secret")
    )


@router.delete("/webhooks/{name}", status_code=204, responses=_NOT_FOUND)
def remove_webhook(name: str, postroom: PostroomDep) -> Response:
    postroom.inbound.webhooks.remove(name)
    return Response(status_code=204)
