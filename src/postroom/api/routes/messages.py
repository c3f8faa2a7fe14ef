"""``/messages``: send (one or a batch), status, retry, cancel. Role ``sender`` may send,
within its key's processes and profiles, and reads only the messages it queued."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from postroom.api.deps import JsonObject, PostroomDep, PrincipalDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.api.schemas import BulkAction
from postroom.errors import FieldError, ValidationError
from postroom.outbox.group_commit import GroupCommit
from postroom.outbox.schemas import OutboxRead, OutboxStatus, OutboxSummary
from postroom.outbox.search import TERM_MAX
from postroom.outbox.service import SendRequest
from postroom.validation import validate_model

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
async def send(request: Request, principal: PrincipalDep, body: JsonObject) -> Queued | QueuedBatch:
    """Returns once the message is durably stored; delivery happens in the background.

    Concurrent requests share commits (postroom.outbox.group_commit); 503 with Retry-After
    while the outbox is fuller than POSTROOM_OUTBOX_MAX_DEPTH."""
    group: GroupCommit = request.app.state.group_commit
    if "messages" in body:
        items = body["messages"]
        if not isinstance(items, list) or not items:
            raise ValidationError(FieldError("messages", "must be a non-empty list"))
        if len(items) > _BATCH_MAX:
            raise ValidationError(FieldError("messages", f"at most {_BATCH_MAX} per request"))
        requests = [_request(m, f"messages.{i}.") for i, m in enumerate(items)]
        return QueuedBatch(ids=await group.send(requests, principal.scope))
    return Queued(id=(await group.send([_request(body)], principal.scope))[0])


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
    q: Annotated[
        str | None,
        Query(
            max_length=TERM_MAX,
            description="Search recipient, subject, Message-ID (substring, any case) and id",
        ),
    ] = None,
) -> list[OutboxSummary]:
    # a sender key lists only the messages it queued
    try:
        return postroom.outbox.list(
            status=status.value if status else None, profile=profile, process=process,
            since=since, until=until, limit=limit, owner=principal.scope.owner, search=q,
        )  # fmt: skip
    except ValidationError as exc:  # the search term, named as the query parameter
        raise ValidationError(
            [FieldError("q" if e.field == "search" else e.field, e.message) for e in exc.errors]
        ) from None


class BulkResult(BaseModel):
    action: str
    count: int
    dry_run: bool


@router.post(
    "/bulk",
    response_model=BulkResult,
    summary="Retry or cancel every message matching the filters (dry_run: only count them)",
    openapi_extra=json_body(
        "BulkAction",
        'action ("retry" or "cancel"); filters status, profile, process, since, until, q; '
        "dry_run (count without acting). A sender key acts only on the messages it queued.",
    ),
)
def bulk(postroom: PostroomDep, principal: PrincipalDep, body: JsonObject) -> BulkResult:
    """One audit entry records the filters and the count."""
    req = validate_model(BulkAction, body)
    filters: dict[str, Any] = {
        "status": req.status.value if req.status else None, "profile": req.profile,
        "process": req.process, "since": req.since, "until": req.until, "search": req.q,
        "owner": principal.scope.owner,
    }  # fmt: skip
    try:
        if req.dry_run:
            count = postroom.outbox.bulk_count(req.action, **filters)
        else:
            count = postroom.outbox.bulk(req.action, actor=principal.actor, **filters)
    except ValidationError as exc:
        raise ValidationError(
            [FieldError("q" if e.field == "search" else e.field, e.message) for e in exc.errors]
        ) from None
    return BulkResult(action=req.action, count=count, dry_run=req.dry_run)


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
