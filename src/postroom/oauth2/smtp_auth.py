"""SMTP AUTH with an OAuth2 access token: XOAUTH2 (aiosmtplib's) or OAUTHBEARER (RFC 7628).

::

    mechanism, reply = await authenticate(client, token, host=host, port=port)
    mechanism = await sign_in(client, "m365", host=host, port=port)   # fetch + retry once

Raises ``aiosmtplib.SMTPAuthenticationError`` when the server refuses the token,
:class:`NoTokenMechanism` when it offers neither mechanism, and
:class:`~postroom.oauth2.errors.TokenError` when no token can be had.
"""

from __future__ import annotations

import base64

import aiosmtplib

from postroom.oauth2.access import bearer_for, forget, sasl_initial
from postroom.oauth2.sasl import choose_mechanism, describe_failure
from postroom.oauth2.tokens import AccessToken

__all__ = ["NoTokenMechanism", "authenticate", "sign_in"]

_AUTH_CONTINUE = 334
_AUTH_OK = 235


class NoTokenMechanism(Exception):
    def __init__(self, offered: list[str]) -> None:
        self.offered = offered
        super().__init__(
            "The server offers no OAuth2 login (XOAUTH2 or OAUTHBEARER); it offers: "
            + (" ".join(m.upper() for m in offered) or "nothing")
        )


async def authenticate(
    client: aiosmtplib.SMTP, token: AccessToken, *, host: str, port: int
) -> tuple[str, aiosmtplib.SMTPResponse]:
    """AUTH with ``token``; returns the mechanism used and the server's reply."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    offered = list(client.server_auth_methods)
    mechanism = choose_mechanism(offered)
    if mechanism is None:
        raise NoTokenMechanism(offered)
    user = token.username or ""
    if mechanism == "xoauth2":
        return mechanism, await client.auth_xoauth2(user, token.token)
    initial = base64.b64encode(sasl_initial(mechanism, token, host=host, port=port))
    reply = await client.execute_command(b"AUTH", b"OAUTHBEARER", initial)
    if reply.code == _AUTH_CONTINUE:
        # RFC 7628 3.2.2: the failure comes as a challenge; ^A asks for the final reply
        why = describe_failure(reply.message)
        reply = await client.execute_command(base64.b64encode(b"\x01"))
        message = reply.message + (f" ({why})" if why else "")
        raise aiosmtplib.SMTPAuthenticationError(reply.code, message)
    if reply.code != _AUTH_OK:
        raise aiosmtplib.SMTPAuthenticationError(reply.code, reply.message)
    return mechanism, reply


async def sign_in(client: aiosmtplib.SMTP, config: str, *, host: str, port: int) -> str:
    """Fetch a token for ``config`` and AUTH; a cached token the server refuses is dropped
    and a new one tried once. Returns the mechanism used."""
    token = await bearer_for(config)
    try:
        mechanism, _ = await authenticate(client, token, host=host, port=port)
    except aiosmtplib.SMTPAuthenticationError:
        if token.fresh:
            await forget(token)
            raise
        token = await bearer_for(config, rejected=token)
        try:
            mechanism, _ = await authenticate(client, token, host=host, port=port)
        except aiosmtplib.SMTPAuthenticationError:
            await forget(token)
            raise
    return mechanism
