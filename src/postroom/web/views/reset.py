"""Forgotten passwords: ask for a link by username or email, then choose a new password.

The request page gives the same answer whatever was typed, and as fast: finding the
account, making the link and queueing the mail run in a worker thread detached from the
request, so neither the words nor the timing (of this answer, or of the next request on the
same connection) tell whether an account exists.
The mail is the ``password_reset`` template, sent through the system default profile.
"""

from __future__ import annotations

import logging
import math

from fastapi import Request, Response

from postroom.accounts import MIN_PASSWORD_LENGTH, RESET_TTL
from postroom.errors import NotFound, PostroomError, ValidationError
from postroom.throttles import RESET_REQUESTS_ADDRESS, minutes, sign_in_checks
from postroom.web.core import PostForm, SessionDep, WebDep, WebState, see_other
from postroom.web.views.common import Route, client_address

__all__ = ["FORGOT", "ROUTES", "link_base", "send_reset_link"]

FORGOT = "/forgot-password"
log = logging.getLogger("postroom.web")


def link_base(web: WebState, request: Request) -> str:
    """Where reset links point: the public URL, else the address this request reached.

    That address is the socket's, never the Host header, which the client chooses: a
    forged Host must not turn a victim's reset mail into a link to someone else's site.
    """
    public = web.pr.settings.public_url
    if public:
        return public.rstrip("/")
    server = request.scope.get("server")
    if server and server[1] is not None:
        host, port = str(server[0]), int(server[1])
    else:
        host, port = web.pr.settings.host, web.pr.settings.port
    shown = f"[{host}]" if ":" in host else host
    return f"{request.url.scheme}://{shown}:{port}"


def _expires_in() -> str:
    minutes = int(RESET_TTL.total_seconds() // 60)
    return f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} hours"


def send_reset_link(web: WebState, login: str, base: str, address: str) -> None:
    """Make a link for the account ``login`` names and mail it (the background part)."""
    accounts = web.pr.accounts
    ticket = accounts.request_password_reset(login, requested_from=address)
    if ticket is None:
        return
    data = {
        "reset_url": f"{base}/reset/{ticket.token}",
        "user_name": ticket.username,
        "site_name": "postroom",
        "expires_in": _expires_in(),
        "requested_from": address,
    }
    try:
        outbox_id = web.pr.notifications.send_system_mail(
            "password_reset", to=ticket.email, data=data
        )
    except PostroomError as exc:  # no default profile, a broken override, a bad address
        reason = exc.errors[0].message if isinstance(exc, ValidationError) else exc.message
        accounts.record_reset_mail(ticket, error=f"no mail could be sent: {reason}")
        log.warning("password reset for %r: no mail could be sent: %s", ticket.username, reason)
        return
    accounts.record_reset_mail(ticket, outbox_id=outbox_id)


def _forgot(
    request: Request,
    web: WebDep,
    *,
    login: str = "",
    error: str | None = None,
    sent: bool = False,
    status: int = 200,
) -> Response:
    return web.page(
        request,
        "forgot_password.html",
        status=status,
        title="Forgot password",
        login=login,
        error=error,
        sent=sent,
        expires_in=_expires_in(),
    )


def forgot_page(request: Request, web: WebDep) -> Response:
    """Ask for a reset link by username or email address."""
    return _forgot(request, web)


def forgot(request: Request, web: WebDep, form: PostForm) -> Response:
    """Always the same answer; the link is made and mailed after it (see the module doc)."""
    login = form.get("login", "").strip()
    if not login:
        return _forgot(request, web, error="Enter your username or email address.", status=422)
    address = client_address(request)
    wait = web.pr.throttles.take(RESET_REQUESTS_ADDRESS, address)
    if wait > 0:
        n = minutes(wait)
        error = (
            "Too many reset requests from your address. Wait "
            f"{n} minute{'s' if n != 1 else ''} and try again."
        )
        refused = _forgot(request, web, login=login[:254], error=error, status=429)
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    web.later(send_reset_link, web, login[:254], link_base(web, request), address)
    return _forgot(request, web, sent=True)


def _reset_form(
    request: Request,
    web: WebDep,
    token: str,
    username: str | None,
    *,
    errors: dict[str, str] | None = None,
) -> Response:
    return web.page(
        request,
        "reset_password.html",
        status=404 if username is None else (422 if errors else 200),
        title="Choose a new password" if username else "Link not valid",
        token=token,
        username=username,
        errors=errors or {},
        min_length=MIN_PASSWORD_LENGTH,
    )


def reset_page(request: Request, web: WebDep, token: str) -> Response:
    """The form behind a reset link (opening it changes nothing: mail scanners open links)."""
    return _reset_form(request, web, token, web.pr.accounts.reset_link_user(token))


def reset(
    request: Request, web: WebDep, session: SessionDep, token: str, form: PostForm
) -> Response:
    """Set the new password, void the link and every session of the account."""
    username = web.pr.accounts.reset_link_user(token)
    if username is None:
        return _reset_form(request, web, token, None)
    password = form.get("password", "")
    if password != form.get("password_confirm", ""):
        errors = {"password_confirm": "does not match the new password"}
        return _reset_form(request, web, token, username, errors=errors)
    try:
        username = web.pr.accounts.reset_password(token, password)
    except NotFound:
        return _reset_form(request, web, token, None)
    except ValidationError as exc:
        errors = {e.field: e.message for e in exc.errors}
        return _reset_form(request, web, token, username, errors=errors)
    # the account's sessions ended with the old password (Accounts); so does this one
    web.pr.throttles.clear(*sign_in_checks(username, client_address(request))[0])
    web.sign_out(request)
    web.flash(request, "success", "Your password is changed. Sign in with the new password.")
    return see_other("/login")


ROUTES = [
    Route(FORGOT, forgot_page),
    Route(FORGOT, forgot, ["POST"]),
    Route("/reset/{token}", reset_page),
    Route("/reset/{token}", reset, ["POST"]),
]
