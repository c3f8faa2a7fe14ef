"""Sign-in, sign-out and the one-time setup page that creates the first admin."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Query, Request, Response

from postroom.accounts import MIN_PASSWORD_LENGTH, AdminRole
from postroom.addresses import check_addr_spec
from postroom.errors import ValidationError
from postroom.throttles import minutes, sign_in_checks
from postroom.web.core import PageNotFound, PostForm, SessionDep, WebDep, see_other
from postroom.web.setup import consume_setup_token, restore_setup_token, valid_setup_token
from postroom.web.views.common import Route, client_address, safe_next

__all__ = ["ROUTES"]

_NO_ADMIN_HINT = (
    "No admin account exists yet. Create one with `postroom admin create NAME "
    "--password-stdin`, or open the one-time setup link that `postroom serve` printed."
)


def login_page(
    request: Request,
    web: WebDep,
    session: SessionDep,
    next_: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """The sign-in form (already signed in: straight on)."""
    if session.user:
        return see_other(safe_next(next_))
    return web.page(
        request,
        "login.html",
        title="Sign in",
        next=safe_next(next_),
        username="",
        error=None,
        notice=None if web.pr.accounts.has_admin() else _NO_ADMIN_HINT,
    )


def login(request: Request, web: WebDep, session: SessionDep, form: PostForm) -> Response:
    """Check the password (throttled per account, per address and per both: see
    postroom.throttles) and start a session."""
    username = form.get("username", "").strip()
    password = form.get("password", "")
    target = safe_next(form.get("next"))
    address = client_address(request)

    def again(error: str, status: int) -> Response:
        return web.page(
            request,
            "login.html",
            status=status,
            title="Sign in",
            next=target,
            username=username[:100],
            error=error,
            notice=None,
        )

    checks = sign_in_checks(username, address)
    wait = web.pr.throttles.wait_s(*checks)
    if wait > 0:  # before the password is even hashed: a guess costs nothing and says nothing
        n = minutes(wait)
        refused = again(
            f"Too many failed sign-ins for this account or from your address. Wait {n} "
            f"minute{'s' if n != 1 else ''} and try again.",
            429,
        )
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    principal = web.pr.accounts.verify_admin(username, password) if username else None
    if principal is None:
        web.pr.throttles.hit(*checks)
        return again("Wrong username or password.", 401)
    web.pr.throttles.clear(*checks[0])
    web.sign_in(request, principal.name, principal.role)
    return see_other(target)


def logout(request: Request, web: WebDep, session: SessionDep, form: PostForm) -> Response:
    """End the session: this cookie is refused from now on."""
    web.sign_out(request)
    web.flash(request, "info", "You are signed out.")
    return see_other("/login")


def _setup_page(
    request: Request,
    web: WebDep,
    token: str,
    *,
    errors: dict[str, str],
    username: str,
    email: str = "",
) -> Response:
    return web.page(
        request,
        "setup.html",
        status=422 if errors else 200,
        title="Create the first admin",
        token=token,
        errors=errors,
        username=username,
        email=email,
        min_length=MIN_PASSWORD_LENGTH,
    )


def _setup_gone(request: Request, web: WebDep) -> Response:
    if web.pr.accounts.has_admin():
        web.flash(request, "info", "Postroom is already set up: sign in with your account.")
        return see_other("/login")
    raise PageNotFound(
        "This setup link is not valid (any more). Restart `postroom serve` to print a new "
        "one, or create an admin with `postroom admin create NAME --password-stdin`."
    )


def setup_page(request: Request, web: WebDep, token: str) -> Response:
    """The form behind the one-time setup link."""
    if not valid_setup_token(web.pr, token):
        return _setup_gone(request, web)
    return _setup_page(request, web, token, errors={}, username="")


def setup(
    request: Request, web: WebDep, session: SessionDep, token: str, form: PostForm
) -> Response:
    """Create the first admin, use up the link and sign that admin in."""
    username = form.get("username", "").strip()
    password = form.get("password", "")
    email = form.get("email", "").strip()[:254]
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "is required"
    if len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if password != form.get("password_confirm", ""):
        errors["password_confirm"] = "does not match the password"
    if email and (reason := check_addr_spec(email)):
        errors["email"] = reason
    if errors:  # every problem at once, before the one-time link is touched
        return _setup_page(request, web, token, errors=errors, username=username, email=email)
    receipt = consume_setup_token(web.pr, token)
    if receipt is None:
        return _setup_gone(request, web)
    try:
        web.pr.accounts.create_admin(
            username, password, role=AdminRole.ADMIN, email=email or None, actor="web:setup-link"
        )
    except ValidationError as exc:
        restore_setup_token(web.pr, receipt)
        errors = {e.field: e.message for e in exc.errors}
        return _setup_page(request, web, token, errors=errors, username=username, email=email)
    web.sign_in(request, username, AdminRole.ADMIN)
    web.flash(request, "success", f"Welcome, {username}. Your admin account is ready.")
    return see_other("/settings/email")


ROUTES = [
    Route("/login", login_page),
    Route("/login", login, ["POST"]),
    Route("/logout", logout, ["POST"]),
    Route("/setup/{token}", setup_page),
    Route("/setup/{token}", setup, ["POST"]),
]
