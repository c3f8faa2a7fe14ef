"""``/actions``: create actionable emails and read their decisions (roles admin and sender;
a sender key within its processes and profiles, reading only what it created)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from postroom.actions.service import ActionRead
from postroom.api.deps import JsonObject, PostroomDep, PrincipalDep
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.errors import FieldError, ValidationError

__all__ = ["router"]

router = APIRouter(prefix="/actions", tags=["actions"], responses=ERROR_RESPONSES)

_FIELDS = {
    "process",
    "to",
    "subject",
    "text",
    "html",
    "choices",
    "expires_in_s",
    "context",
    "webhook_url",
}


@router.post("", status_code=201, response_model=ActionRead, summary="Send an actionable email")
def create(postroom: PostroomDep, principal: PrincipalDep, body: JsonObject) -> ActionRead:
    """Body: `process`, `to` [..], `subject`, `text` and/or `html`, `choices` [..],
    `expires_in_s`, `context` {..}, `webhook_url`. Returns the id, status and `links`."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise ValidationError([FieldError(k, "is not a known field") for k in sorted(unknown)])
    for key in ("process", "subject"):
        if not isinstance(body.get(key), str):
            raise ValidationError(FieldError(key, "is required (text)"))
    for key in ("text", "html", "webhook_url"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ValidationError(FieldError(key, "must be text"))
    to: Any = body.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
        raise ValidationError(FieldError("to", "must be a list of addresses"))
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise ValidationError(FieldError("choices", 'must be a list such as ["approve", "reject"]'))
    expires = body.get("expires_in_s", 7 * 86400)
    context = body.get("context") or {}
    if not isinstance(context, dict):
        raise ValidationError(FieldError("context", "must be an object"))
    return postroom.actions.create(
        process=body["process"], to=to, subject=body["subject"], choices=choices,
        text=body.get("text"), html_body=body.get("html"), expires_in_s=expires,
        context=context, webhook_url=body.get("webhook_url"), scope=principal.scope,
    )  # fmt: skip


@router.get(
    "/{action_id}",
    response_model=ActionRead,
    summary="An action request: its status and decision",
    responses=error_responses((404, "No such action request")),
)
def get(action_id: str, postroom: PostroomDep, principal: PrincipalDep) -> ActionRead:
    """A sender key reads only the actions it created (others are 404, like missing ones)."""
    return postroom.actions.get(action_id, owner=principal.scope.owner)
