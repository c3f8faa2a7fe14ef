"""``/messages``: send (one or a batch), status, retry, cancel. Role ``sender`` may send,
within its key's processes and profiles, and reads only the messages it queued."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from postroom.api.deps import JsonObject, PostroomDep, PrincipalDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.errors import FieldError, ValidationError
from postroom.outbox.schemas import OutboxRead, OutboxStatus, OutboxSummary
from postroom.outbox.service import SendRequest

__all__ = ["router"]

router = APIRouter(prefix="/messages", tags=["messages"], responses=ERROR_RESPONSES)

_ROUTING = ("profile", "process", "idempotency_key", "send_at")
_BATCH_MAX = 1000


class Queued(BaseModel):
    id: int
    status: OutboxStatus = OutboxStatus.QUEUED


class QueuedBatch(BaseModel):
    ids: list[int]
    status: OutboxStatus = OutboxStatus.QUEUED


def _request(data: Any, prefix: str = "") -> SendRequest:
    if not isinstance(data, dict):
        raise ValidationError(FieldError(prefix.rstrip("."), "must be a JSON object"))
    message = {k: v for k, v in data.items() if k not in _ROUTING}
    routing = {k: data.get(k) for k in _ROUTING}
    for key in ("profile", "process", "idempotency_key"):
        if routing[key] is not None and not isinstance(routing[key], str):
            raise ValidationError(FieldError(prefix + key, "must be text"))
    send_at = None
    if routing["send_at"] is not None:
        try:
            send_at = datetime.fromisoformat(str(routing["send_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                FieldError(prefix + "send_at", "must be an ISO 8601 time with zone")
            ) from None
    return SendRequest(
        message, profile=routing["profile"], process=routing["process"],
        idempotency_key=routing["idempotency_key"], send_at=send_at,
    )  # fmt: skip


@router.post(
    "",
    status_code=202,
    response_model=Queued | QueuedBatch,
    summary='Queue a message, or a batch as {"messages": [...]} in one transaction',
    openapi_extra=json_body(
        "SendMessage",
        "A message: to, cc, bcc, subject, text and/or html, reply_to, headers, attachments "
        "(base64 content), priority; plus profile or process, idempotency_key, send_at.",
    ),
)
def send(postroom: PostroomDep, principal: PrincipalDep, body: JsonObject) -> Queued | QueuedBatch:
    """Returns once the message is durably stored; delivery happens in the background."""
    if "messages" in body:
        items = body["messages"]
        if not isinstance(items, list) or not items:
            raise ValidationError(FieldError("messages", "must be a non-empty list"))
        if len(items) > _BATCH_MAX:
            raise ValidationError(FieldError("messages", f"at most {_BATCH_MAX} per request"))
        ids = postroom.outbox.send_many(
            [_request(m, f"messages.{i}.") for i, m in enumerate(items)], scope=principal.scope
        )
        return QueuedBatch(ids=ids)
    req = _request(body)
    return Queued(id=postroom.outbox.send_many([req], scope=principal.scope)[0])


@router.get("", response_model=list[OutboxSummary], summary="Messages, newest first")
def list_messages(
    postroom: PostroomDep,
    principal: PrincipalDep,
    status: Annotated[OutboxStatus | None, Query()] = None,
    profile: Annotated[str | None, Query(max_length=100)] = None,
    process: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxSummary]:
    # a sender key lists only the messages it queued
    return postroom.outbox.list(
        status=status.value if status else None, profile=profile, process=process,
        since=since, until=until, limit=limit, owner=principal.scope.owner,
    )  # fmt: skip


@router.get(
    "/{id}",
    response_model=OutboxRead,
    summary="One message with every delivery attempt",
    responses=error_responses((404, "No such message")),
)
def get_message(id: int, postroom: PostroomDep, principal: PrincipalDep) -> OutboxRead:
    """A sender key reads only the messages it queued (others are 404, like missing ones)."""
    return postroom.outbox.get(id, owner=principal.scope.owner)


@router.post(
    "/{id}/retry",
    response_model=OutboxSummary,
    dependencies=[Depends(require_admin)],
    summary="Send a failed, bounced or cancelled message again now",
    responses=error_responses(
        (404, "No such message"), (409, "Not in a state that can be retried")
    ),
)
def retry(id: int, postroom: PostroomDep) -> OutboxSummary:
    return postroom.outbox.retry(id)


@router.post(
    "/{id}/cancel",
    response_model=OutboxSummary,
    dependencies=[Depends(require_admin)],
    summary="Cancel a message that has not been sent yet",
    responses=error_responses((404, "No such message"), (409, "Already sent or final")),
)
def cancel(id: int, postroom: PostroomDep, response: Response) -> OutboxSummary:
    return postroom.outbox.cancel(id)
