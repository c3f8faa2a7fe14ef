"""Helpers for OAuth2 tests: configurations on the local authorization server, a "browser"."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from postroom import Postroom
from postroom.oauth2.flows import Connected
from postroom.oauth2.protocol import parse_redirect

from .oauth2server import LocalAuthServer

__all__ = ["add_config", "browser", "connect", "knobs"]

SECRET = "app-client-secret"


def add_config(
    app: Postroom,
    server: LocalAuthServer,
    name: str = "local",
    *,
    grant: str = "authorization_code",
    secret: str | None = SECRET,
    mailbox: str | None = None,
    username: str | None = None,
    scopes: tuple[str, ...] = ("mail", "openid", "email"),
) -> str:
    """Register a client at ``server`` and an OAuth2 configuration for it; returns the client id."""
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    server.add_client(client_id, secret, mailbox=mailbox)
    data: dict[str, Any] = {
        "name": name,
        "provider": "generic",
        "grant": grant,
        "client_id": client_id,
        "authorize_url": server.url + "/authorize",
        "token_url": server.url + "/token",
        "device_authorization_url": server.url + "/device_authorization",
        "scopes": list(scopes),
        "username": username,
    }
    if secret:
        data["client_secret"] = secret
    app.oauth2.create(data)
    return client_id


def browser(url: str) -> str:
    """Open the authorization URL as a signed-in person would; returns where it redirects."""
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def connect(app: Postroom, name: str = "local") -> Connected:
    """A complete authorization code + PKCE sign-in through the service API."""
    flows = app.oauth2_lifecycle.flows
    start = await flows.start_authorization(name, redirect_uri="http://localhost:9/callback")
    location = await asyncio.to_thread(browser, start.authorization_url)
    code, state, error = parse_redirect(location)
    assert state is not None and not error, location
    return await flows.complete_authorization(state=state, code=code)


@contextmanager
def knobs(server: LocalAuthServer, **values: Any) -> Iterator[LocalAuthServer]:
    """Change the session-wide server's knobs for one test, and put them back; the call
    counters start from zero."""
    names = ("rotation", "access_lifetime", "token_delay_s", "login_as", "deny_next")
    saved = {k: getattr(server, k) for k in names}
    server.token_calls.clear()
    server.fail_next.clear()
    for key, value in values.items():
        setattr(server, key, value)
    try:
        yield server
    finally:
        for key, value in saved.items():
            setattr(server, key, value)
        server.fail_next.clear()
