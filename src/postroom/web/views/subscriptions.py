"""Subscriptions: who gets mail for which events, at once or as a scheduled summary."""

from __future__ import annotations

import functools
import json
import zoneinfo

from fastapi import Request, Response

from postroom.errors import NotFound, ValidationError
from postroom.web.core import EditorForm, UserDep, WebDep, see_other
from postroom.web.template_form import SUBSCRIPTION_FIELDS, field_errors, subscription_data
from postroom.web.views.common import Route

__all__ = ["LIST", "ROUTES"]

LIST = "/settings/email/subscriptions"
_BLANK = {"timezone": "UTC"}


@functools.cache
def _timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _page(
    request: Request,
    web: WebDep,
    can_edit: bool,
    *,
    values: dict[str, str],
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    return web.page(
        request,
        "subscriptions.html",
        status=status,
        title="Subscriptions",
        subscriptions=web.pr.notifications.subscriptions.list(),
        template_options=[("", "Default for the event")]
        + [(t.name, t.name) for t in web.pr.templates.list()],
        timezones=_timezones(),
        values=values,
        errors=errors or {},
        can_edit=can_edit,
        compact=lambda value: json.dumps(value, ensure_ascii=False, separators=(", ", ": ")),
        one_of=_one_of,
    )


def _one_of(values: list[object]) -> str:
    """``["failed", "error"]`` → ``"failed" or "error"`` (JSON, so 3 and "3" differ)."""
    shown = [json.dumps(v, ensure_ascii=False) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def subscriptions_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _page(request, web, user.can_edit, values=dict(_BLANK))


def add(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Subscribe one address; every problem is named at its field."""
    values = {k: form.get(k, "") for k in SUBSCRIPTION_FIELDS}
    try:
        sub = web.pr.notifications.subscriptions.add(subscription_data(values), actor=user.actor)
    except ValidationError as exc:
        errors = field_errors(exc, SUBSCRIPTION_FIELDS)
        return _page(request, web, True, values=values, errors=errors, status=422)
    except NotFound as exc:  # the template named does not exist
        return _page(
            request, web, True, values=values, errors={"template": [exc.message]}, status=422
        )
    when = f"a summary on '{sub.schedule}' ({sub.timezone})" if sub.schedule else "mail at once"
    web.flash(
        request,
        "success",
        f"Subscription {sub.id} added: {sub.address} gets {when} for '{sub.event}' events.",
    )
    return see_other(LIST)


def remove(request: Request, web: WebDep, user: UserDep, sub_id: str, form: EditorForm) -> Response:
    if not sub_id.isdigit() or len(sub_id) > 18:
        web.flash(request, "error", "There is no such subscription.")
        return see_other(LIST)
    try:
        removed = web.pr.notifications.subscriptions.remove(int(sub_id), actor=user.actor)
    except NotFound:
        web.flash(request, "error", f"Subscription {sub_id} no longer exists.")
    else:
        web.flash(
            request,
            "success",
            f"Subscription {removed.id} removed: {removed.address} no longer gets "
            f"'{removed.event}' mail.",
        )
    return see_other(LIST)


ROUTES = [
    Route(LIST, subscriptions_page),
    Route(LIST, add, ["POST"]),
    Route(LIST + "/{sub_id}/remove", remove, ["POST"]),
]
