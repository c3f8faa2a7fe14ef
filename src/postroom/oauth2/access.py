"""How the SMTP and IMAP adapters get a bearer token: the installation's token service.

The adapters are handed only a profile's settings (which name an OAuth2 configuration), so
the installation registers its :class:`~postroom.oauth2.tokens.TokenService` here when it is
opened (:func:`postroom.oauth2.service.lifecycle_for`). The registry keeps a weak reference:
a closed and discarded installation leaves nothing behind.

::

    token = await bearer_for("m365")                 # AccessToken, or TokenError
    initial = sasl_initial("xoauth2", token, host=..., port=...)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from postroom.oauth2.errors import TokenError
from postroom.oauth2.sasl import oauthbearer_response, xoauth2_response
from postroom.oauth2.tokens import AccessToken, TokenService

__all__ = ["bearer_for", "forget", "imap_responder", "install", "installed", "sasl_initial"]

_current: weakref.ref[TokenService] | None = None


def install(tokens: TokenService) -> None:
    """Make ``tokens`` the source of access tokens for SMTP and IMAP sign-ins."""
    global _current
    _current = weakref.ref(tokens)


def installed() -> TokenService:
    tokens = _current() if _current is not None else None
    if tokens is None:
        raise TokenError(
            "OAuth2 is not set up in this process (no postroom installation registered its "
            "token service).",
            config="",
            error="not_configured",
        )
    return tokens


async def bearer_for(
    config: str, *, rejected: AccessToken | None = None, ignore_backoff: bool = False
) -> AccessToken:
    """An access token for configuration ``config`` with a SASL user name.

    Raises TokenError (also when neither the configuration nor the sign-in names a user).
    """
    token = await installed().access_token(config, rejected=rejected, ignore_backoff=ignore_backoff)
    if not token.username:
        raise TokenError(
            f"OAuth2 configuration '{config}' names no mailbox: set its username to the "
            "address the token signs in as.",
            config=config,
            error="no_username",
        )
    return token


async def forget(token: AccessToken) -> None:
    """The server refused ``token``: the next sign-in fetches a new one."""
    tokens = _current() if _current is not None else None
    if tokens is not None:
        await tokens.forget(token)


def sasl_initial(mechanism: str, token: AccessToken, *, host: str, port: int) -> bytes:
    """The initial client response (before base64) for ``xoauth2`` or ``oauthbearer``."""
    user = token.username or ""
    if mechanism == "oauthbearer":
        return oauthbearer_response(user, token.token, host=host, port=port)
    return xoauth2_response(user, token.token)


def imap_responder(mechanism: str, initial: bytes) -> Callable[[bytes], bytes]:
    """An imaplib ``authobject``: the initial response first; after a failure challenge the
    reply that lets the server finish (empty for XOAUTH2, ``^A`` for OAUTHBEARER)."""
    sent = False

    def respond(challenge: bytes) -> bytes:
        nonlocal sent
        if not sent:
            sent = True
            return initial
        return b"\x01" if mechanism == "oauthbearer" else b""

    return respond
