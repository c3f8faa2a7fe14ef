"""Actionable emails: the requests, their status and decision (never a link token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from postroom.errors import NotFound
from postroom.outbox.schemas import OutboxStatus
from postroom.web.action_log import ActionRow, ActionState, action_mails, list_actions
from postroom.web.core import PageNotFound, UserDep, WebDep
from postroom.web.listing import LIMITS, parse_limit, query_string
from postroom.web.views.common import Route

__all__ = ["ROUTES"]

LIST = "/settings/email/actions"
_NO_SUCH = "There is no such action request."


def actions_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    status: Annotated[str, Query()] = "",
    process: Annotated[str, Query()] = "",
    limit: Annotated[str, Query()] = "",
    before: Annotated[str, Query()] = "",
) -> Response:
    """Action requests newest first, by status and process; ``before`` pages to older ones."""
    errors: dict[str, str] = {}
    state = None
    if status:
        try:
            state = ActionState(status)
        except ValueError:
            errors["status"] = "choose pending, decided or expired"
    size = parse_limit(limit)
    form = {"status": status, "process": process, "limit": limit}
    rows: list[ActionRow] = []
    more = False
    if not errors:
        try:
            rows, more = list_actions(
                web.pr,
                status=state,
                process=process.strip() or None,
                limit=size,
                before=before or None,
            )
        except NotFound:
            raise PageNotFound(
                "The request this page started from no longer exists; start from the newest."
            ) from None
    return web.page(
        request,
        "actions_list.html",
        status=422 if errors else 200,
        title="Actions",
        rows=rows,
        form=form,
        filtered=bool(status or process),
        errors=errors,
        states=list(ActionState),
        limits=LIMITS,
        limit=size,
        paged=bool(before),
        newest=query_string(form),
        older=query_string(form, before=rows[-1].id) if more and rows else None,
    )


def action_page(request: Request, web: WebDep, user: UserDep, action_id: str) -> Response:
    """One request: choices, recipients, the decision, and the mails that carried it."""
    if len(action_id) > 40:
        raise PageNotFound(_NO_SUCH)
    try:
        action = web.pr.actions.get(action_id)
    except NotFound:
        raise PageNotFound(_NO_SUCH) from None
    mails, webhook = action_mails(web.pr, action.id)
    statuses: dict[int, OutboxStatus] = {}
    for mail in mails[:200]:
        try:
            statuses[mail.outbox_id] = web.pr.outbox.get(mail.outbox_id).status
        except NotFound:
            pass
    return web.page(
        request,
        "action_detail.html",
        title=action.subject,
        a=action,
        mails=mails,
        statuses=statuses,
        webhook=webhook,
    )


ROUTES = [Route(LIST, actions_page), Route(LIST + "/{action_id}", action_page)]
