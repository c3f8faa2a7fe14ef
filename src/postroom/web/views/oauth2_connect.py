"""Connecting an OAuth2 configuration from its page, and where its connection stands.

**Connect** (admins, a CSRF form) starts the authorization-code flow and sends the browser to
the provider; the provider returns it to ``/oauth2/callback`` (the redirect URI registered
with the provider), whose page says whether the connection worked.
"""

from __future__ import annotations

from fastapi import Request, Response

from postroom.app import Postroom
from postroom.errors import PostroomError
from postroom.oauth2.errors import TokenError
from postroom.oauth2.schemas import Grant, OAuth2ConfigRead, OAuth2Status
from postroom.web.core import EditorForm, UserDep, WebDep, see_other
from postroom.web.views.common import Route, find_oauth2

__all__ = ["ROUTES", "connection_status"]

LIST = "/settings/email/oauth2"
CALLBACK_PATH = "/oauth2/callback"  # the API's callback route (postroom.api.routes.oauth2)


def connection_status(pr: Postroom, config: OAuth2ConfigRead | None) -> OAuth2Status | None:
    """The status ``postroom oauth2 status`` shows, or None (a new form; no such config)."""
    if config is None:
        return None
    try:
        return pr.oauth2_lifecycle.status(config.name)
    except PostroomError:
        return None


def _redirect_uri(request: Request, public_url: str | None) -> str:
    """The callback URL on POSTROOM_PUBLIC_URL when set (as the REST API's connect does)."""
    base = public_url or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


async def connect(
    request: Request, web: WebDep, user: UserDep, config_id: str, form: EditorForm
) -> Response:
    """Start a sign-in at the provider (authorization code), or fetch an app-only token."""
    config = find_oauth2(web.pr, config_id)
    page = f"{LIST}/{config.id}"
    flows = web.pr.oauth2_lifecycle.flows
    try:
        if config.grant is Grant.AUTHORIZATION_CODE:
            start = await flows.start_authorization(
                config.name,
                redirect_uri=_redirect_uri(request, web.pr.settings.public_url),
                actor=user.actor,
            )
            return see_other(start.authorization_url)
        if config.grant is Grant.CLIENT_CREDENTIALS:
            await flows.connect_client_credentials(config.name, actor=user.actor)
            web.flash(request, "success", f"OAuth2 configuration '{config.name}' is connected.")
            return see_other(page)
    except TokenError as exc:
        web.flash(request, "error", f"The provider refused: {exc.message}")
        return see_other(page)
    except PostroomError as exc:
        web.flash(request, "error", exc.message)
        return see_other(page)
    web.flash(
        request,
        "error",
        f"'{config.name}' uses the device code grant: connect it with "
        f"`postroom oauth2 connect {config.name}`.",
    )
    return see_other(page)


ROUTES = [Route(LIST + "/{config_id}/connect", connect, ["POST"])]
