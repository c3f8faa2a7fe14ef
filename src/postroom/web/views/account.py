"""Your account: the email address password reset links go to.

Any signed-in person may change their own address (viewers too: it changes nothing but
their own sign-in), after typing their current password — a session left open must not be
enough to redirect the account's reset links elsewhere.
"""

from __future__ import annotations

from fastapi import Request, Response

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


ROUTES = [Route(PATH, account_page), Route(PATH + "/email", set_email, ["POST"])]
