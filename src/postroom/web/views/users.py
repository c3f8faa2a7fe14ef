"""Users: the accounts of the web UI, for admins only (viewers get the 403 page).

Change a role, disable or enable an account, give someone a one-time reset link (mailed
through the system default profile, or shown here once), and invite a new person by email:
the invitation is a reset link, valid for 7 days, on an account nobody knows the password of.
"""

from __future__ import annotations

from fastapi import Request, Response

from postroom.accounts import ResetTicket
from postroom.errors import Conflict, NotFound, PostroomError, ValidationError
from postroom.web.core import EditorForm, Forbidden, UserDep, WebDep, WebUser, see_other
from postroom.web.views.common import Route
from postroom.web.views.reset import link_base

__all__ = ["ROUTES", "admins_only"]

LIST = "/settings/users"


def admins_only(user: WebUser) -> None:
    if not user.can_edit:
        raise Forbidden(
            f"Your account '{user.name}' has the viewer role: only administrators manage "
            "users. Ask an administrator."
        )


def _page(
    request: Request,
    web: WebDep,
    user: WebUser,
    *,
    invite: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    link: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    admins_only(user)
    return web.page(
        request,
        "users.html",
        status=status,
        title="Users",
        admins=web.pr.accounts.list_admins(),
        me=user.name,
        invite=invite or {"username": "", "email": "", "role": "viewer"},
        errors=errors or {},
        link=link,
    )


def users_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _page(request, web, user)


def _mail(web: WebDep, ticket: ResetTicket, url: str, *, invite: bool) -> str | None:
    """Mail the link through the default profile; the reason when it could not be queued."""
    if not ticket.email:
        return "the account has no email address"
    data = {
        "reset_url": url,
        "user_name": ticket.username,
        "site_name": "postroom",
        "expires_in": "7 days" if invite else "24 hours",
        "requested_from": "an administrator",
    }
    try:
        web.pr.notifications.send_system_mail("password_reset", to=ticket.email, data=data)
    except PostroomError as exc:
        return exc.errors[0].message if isinstance(exc, ValidationError) else exc.message
    return None


def invite(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Create the account and mail the invitation; the link is shown when mail fails."""
    values = {k: form.get(k, "").strip() for k in ("username", "email", "role")}
    try:
        ticket = web.pr.accounts.invite_admin(
            values["username"], values["email"], role=values["role"], actor=user.actor
        )
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for e in exc.errors:
            errors.setdefault(e.field or "username", []).append(e.message)
        return _page(request, web, user, invite=values, errors=errors, status=422)
    url = f"{link_base(web, request)}/reset/{ticket.token}"
    problem = _mail(web, ticket, url, invite=True)
    if problem is None:
        web.flash(
            request, "success", f"Invitation for '{ticket.username}' mailed to {ticket.email}."
        )
        return see_other(LIST)
    return _page(
        request, web, user,
        link={"username": ticket.username, "url": url, "why": f"No mail was sent ({problem}). "
              "Give this invitation link to them yourself; it works once, for 7 days."},
    )  # fmt: skip


def reset(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """A one-time reset link for an account: mailed (``deliver=mail``) or shown here."""
    username = form.get("username", "")
    try:
        ticket = web.pr.accounts.issue_reset_link(username, actor=user.actor)
    except (NotFound, Conflict) as exc:
        web.flash(request, "error", exc.message)
        return see_other(LIST)
    url = f"{link_base(web, request)}/reset/{ticket.token}"
    why = "Give this link to them yourself; it works once, for 24 hours."
    if form.get("deliver") == "mail":
        problem = _mail(web, ticket, url, invite=False)
        if problem is None:
            web.flash(
                request,
                "success",
                f"A reset link for '{ticket.username}' was mailed to {ticket.email}.",
            )
            return see_other(LIST)
        why = f"No mail was sent ({problem}). " + why
    return _page(request, web, user, link={"username": ticket.username, "url": url, "why": why})


def set_role(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    username, role = form.get("username", ""), form.get("role", "")
    try:
        changed = web.pr.accounts.set_role(username, role, actor=user.actor)
    except ValidationError as exc:
        web.flash(request, "error", f"Role not changed: {exc.errors[0].message}.")
    except (NotFound, Conflict) as exc:
        web.flash(request, "error", exc.message)
    else:
        web.flash(request, "success", f"'{changed.username}' is now {changed.role.value}.")
    return see_other(LIST)


def _disable(request: Request, web: WebDep, user: UserDep, form: EditorForm, on: bool) -> Response:
    username = form.get("username", "")
    try:
        changed = web.pr.accounts.set_disabled(username, on, actor=user.actor)
    except (NotFound, Conflict) as exc:
        web.flash(request, "error", exc.message)
    else:
        text = "disabled: its sessions are signed out" if on else "enabled again"
        web.flash(request, "success", f"'{changed.username}' is {text}.")
    return see_other(LIST)


def disable(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    return _disable(request, web, user, form, True)


def enable(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    return _disable(request, web, user, form, False)


ROUTES = [
    Route(LIST, users_page),
    Route(LIST + "/invite", invite, ["POST"]),
    Route(LIST + "/reset", reset, ["POST"]),
    Route(LIST + "/role", set_role, ["POST"]),
    Route(LIST + "/disable", disable, ["POST"]),
    Route(LIST + "/enable", enable, ["POST"]),
]
