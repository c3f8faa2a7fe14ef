"""SASL for OAuth2 bearer tokens (pure): XOAUTH2 and OAUTHBEARER (RFC 7628).

::

    xoauth2_response("alice@example.com", token)            # bytes, before base64
    oauthbearer_response("alice@example.com", token, host="smtp.example.com", port=587)
    choose_mechanism(["plain", "xoauth2"])                  # -> "xoauth2"
    describe_failure(b64_challenge)                         # -> "status 401, schemes Bearer"

Both mechanisms answer a failed token with a base64 JSON challenge; the client then sends an
empty response (XOAUTH2) or ``\\x01`` (OAUTHBEARER) and the server ends with its failure reply.
"""

from __future__ import annotations

import base64
import binascii
import json

__all__ = [
    "MECHANISMS",
    "choose_mechanism",
    "describe_failure",
    "oauthbearer_response",
    "xoauth2_response",
]

#: In order of preference: Google and Microsoft document XOAUTH2; OAUTHBEARER is the standard.
MECHANISMS = ("xoauth2", "oauthbearer")


def _check(value: str, what: str) -> None:
    if any(c in value for c in "\x00\x01\r\n"):
        raise ValueError(f"{what} must not contain control characters")


def xoauth2_response(user: str, token: str) -> bytes:
    """``user=<user>^Aauth=Bearer <token>^A^A`` (Google's and Microsoft's XOAUTH2)."""
    _check(user, "the user name")
    _check(token, "the access token")
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def _saslname(user: str) -> str:
    return user.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_response(user: str, token: str, *, host: str = "", port: int = 0) -> bytes:
    """RFC 7628 initial client response: gs2 header, host, port and the bearer token."""
    _check(user, "the user name")
    _check(token, "the access token")
    parts = [f"n,a={_saslname(user)}," if user else "n,,"]
    if host:
        parts.append(f"host={host}")
    if port:
        parts.append(f"port={port}")
    parts.append(f"auth=Bearer {token}")
    return ("\x01".join(parts) + "\x01\x01").encode()


def choose_mechanism(offered: list[str] | tuple[str, ...]) -> str | None:
    """The mechanism to use among those the server ``offered`` (any case); None if neither."""
    lowered = {m.lower() for m in offered}
    return next((m for m in MECHANISMS if m in lowered), None)


def describe_failure(challenge: str | bytes) -> str:
    """What a server's base64 JSON failure challenge says, for people (never the token)."""
    try:
        raw = base64.b64decode(challenge, validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    shown = []
    for key in ("status", "schemes", "scope"):
        value = data.get(key)
        if isinstance(value, str | int) and str(value).isprintable():
            shown.append(f"{key} {str(value)[:100]}")
    return ", ".join(shown)
