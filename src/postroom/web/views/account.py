"""Your account: your password, and the email address password reset links go to.

Any signed-in person may change their own address (viewers too: it changes nothing but
their own sign-in), after typing their current password — a session left open must not be
enough to redirect the account's reset links elsewhere.
"""

from __future__ import annotations

from fastapi import Request, Response

from postroom.accounts import MIN_PASSWORD_LENGTH
from postroom.errors import ValidationError
from postroom.throttles import minutes, sign_in_checks
from postroom.web.core import PostForm, UserDep, WebDep, WebUser, see_other
from postroom.web.views.common import Route, client_address

__all__ = ["ROUTES"]

PATH = "/account"


def _page(
    request: Request,
    web: WebDep,
    user: WebUser,
    *,
    email: str | None = None,
    errors: dict[str, str] | None = None,
    password_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    account = web.pr.accounts.get_admin(user.name)
    return web.page(
        request,
        "account.html",
        status=status,
        title="Your account",
        account=account,
        email=account.email or "" if email is None else email,
        errors=errors or {},
        password_errors=password_errors or {},
        min_length=MIN_PASSWORD_LENGTH,
    )


def account_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _page(request, web, user)


def set_email(request: Request, web: WebDep, user: UserDep, form: PostForm) -> Response:
    """Change the address, once the current password is confirmed (throttled as sign-in)."""
    email = form.get("email", "").strip()
    address = client_address(request)

    def again(field: str, message: str, status: int) -> Response:
        return _page(request, web, user, email=email, errors={field: message}, status=status)

    checks = sign_in_checks(user.name, address)
    wait = web.pr.throttles.wait_s(*checks)
    if wait > 0:
        return again("current_password", f"too many wrong passwords; wait {minutes(wait)} min", 429)
    if web.pr.accounts.verify_admin(user.name, form.get("current_password", "")) is None:
        web.pr.throttles.hit(*checks)
        return again("current_password", "is not your current password", 403)
    try:
        web.pr.accounts.set_email(user.name, email or None, actor=user.actor)
    except ValidationError as exc:
        return again("email", exc.errors[0].message, 422)
    text = f"Reset links now go to {email}." if email else "Your account has no email address now."
    web.flash(request, "success", text)
    return see_other(PATH)


def set_password(request: Request, web: WebDep, user: UserDep, form: PostForm) -> Response:
    """Change your own password: the current one, the new one twice, every problem at once.

    The new password ends every session of the account (Accounts.set_password) — a browser
    left signed in elsewhere is signed out — and this browser gets a fresh session, so the
    person who changed it stays signed in.
    """
    current = form.get("current_password", "")
    new = form.get("new_password", "")
    confirm = form.get("new_password_confirm", "")
    checks = sign_in_checks(user.name, client_address(request))

    def again(errors: dict[str, str], status: int) -> Response:
        return _page(request, web, user, password_errors=errors, status=status)

    wait = web.pr.throttles.wait_s(*checks)
    if wait > 0:
        return again(
            {"current_password": f"too many wrong passwords; wait {minutes(wait)} min"}, 429
        )
    errors: dict[str, str] = {}
    if not current or web.pr.accounts.verify_admin(user.name, current) is None:
        web.pr.throttles.hit(*checks)
        errors["current_password"] = "is not your current password"
    if len(new) < MIN_PASSWORD_LENGTH:
        errors["new_password"] = f"must be at least {MIN_PASSWORD_LENGTH} characters"
    elif new == current:
        errors["new_password"] = "is your current password; choose a different one"
    if new != confirm:
        errors["new_password_confirm"] = "does not match the new password"
    if errors:
        return again(errors, 403 if list(errors) == ["current_password"] else 422)
    try:
        web.pr.accounts.set_password(user.name, new, actor=user.actor)
    except ValidationError as exc:
        return again({"new_password": exc.errors[0].message}, 422)
    web.sign_in(request, user.name, user.role)  # the old session row died with the password
    web.flash(
        request, "success", "Your password is changed. Every other session of yours is signed out."
    )
    return see_other(PATH)


ROUTES = [
    Route(PATH, account_page),
    Route(PATH + "/email", set_email, ["POST"]),
    Route(PATH + "/password", set_password, ["POST"]),
]
