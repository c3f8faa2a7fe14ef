"""Inbound mail: the listener health of every receiving profile and the received messages.

The list is a GET form (profile, status, page size); a message page shows its headers, the
text part (escaped) and the HTML part only inside a sandboxed frame, never as page markup.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from postroom.errors import NotFound
from postroom.inbound.schemas import InboundStatus, InboundSummary, ListenerState
from postroom.web.core import PageNotFound, UserDep, WebDep
from postroom.web.listing import LIMITS, parse_limit, shorten
from postroom.web.views.common import Route

__all__ = ["ROUTES", "STATE_BADGES"]

LIST = "/settings/email/inbound"
#: the badge of each listener state; a stale listener shows as ``error``, never as active
STATE_BADGES = {
    ListenerState.IDLE: "ok",
    ListenerState.POLLING: "ok",
    ListenerState.STARTING: "warn",
    ListenerState.BACKOFF: "warn",
    ListenerState.ERROR: "err",
    ListenerState.STOPPED: "off",
}


def _id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise PageNotFound("There is no such inbound message.")
    return int(raw)


def inbound_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    profile: Annotated[str, Query()] = "",
    status: Annotated[str, Query()] = "",
    limit: Annotated[str, Query()] = "",
) -> Response:
    """Listener health per receiving profile, then received messages newest first."""
    errors: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if status:
        if status in {s.value for s in InboundStatus}:
            kwargs["status"] = status
        else:
            errors["status"] = "choose one of the statuses"
    if profile.strip():
        kwargs["profile"] = profile.strip()
    size = parse_limit(limit)
    health = web.pr.inbound.health()
    messages: list[InboundSummary] = []
    if not errors:
        try:
            messages = web.pr.inbound.list(**kwargs, limit=size)
        except NotFound:
            errors["profile"] = "there is no profile of that name"
    return web.page(
        request,
        "inbound_list.html",
        status=422 if errors else 200,
        title="Inbound",
        health=[(h, STATE_BADGES.get(h.state, "err")) for h in health],
        messages=[(m, shorten(m.reject_reason or m.last_error, 70)) for m in messages],
        filters={"profile": profile, "status": status},
        errors=errors,
        statuses=list(InboundStatus),
        profiles=[h.profile for h in health],
        limits=LIMITS,
        limit=size,
    )


def inbound_message_page(request: Request, web: WebDep, user: UserDep, inbound_id: str) -> Response:
    """One received message: headers, text (escaped), attachments' metadata and its status."""
    id = _id(inbound_id)
    try:
        event = web.pr.inbound.get(id)
        summary = web.pr.inbound.summary(id)
    except NotFound:
        raise PageNotFound("There is no such inbound message.") from None
    return web.page(
        request,
        "inbound_message.html",
        title=f"Inbound #{id}",
        e=event,
        s=summary,
    )


ROUTES = [
    Route(LIST, inbound_page),
    Route(LIST + "/{inbound_id}", inbound_message_page),
]
