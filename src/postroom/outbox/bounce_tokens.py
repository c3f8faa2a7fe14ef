"""Bounce tokens (pure): proof that a delivery status notice is about mail postroom sent.

Anyone can mail a monitored mailbox a notice that claims a message bounced. Every message
postroom sends therefore carries ``X-Postroom-Bounce: <key id>.<mac>``, the MAC being
HMAC-SHA256 under one of postroom's keys of the message's Message-ID. Bounces return the
original message or its headers (RFC 3464 ``message/rfc822``, ``text/rfc822-headers``),
token included; a notice is believed only when it carries a token that verifies for the
Message-ID it reports. Only those who received the message ever saw its token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["HEADER", "find_tokens", "make_token", "stamp", "token_ok"]

HEADER = "X-Postroom-Bounce"
_DOMAIN = b"postroom-bounce\x00"  # keeps these MACs apart from action link signatures
_FOUND = re.compile(
    rb"^X-Postroom-Bounce:[ \t]*([0-9A-Za-z]{1,20}\.[A-Za-z0-9_-]{20,64})[ \t]*\r?$", re.I | re.M
)


def _mac(key: bytes, message_id: str) -> str:
    digest = hmac.new(key, _DOMAIN + message_id.strip().encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_token(key_id: str, key: bytes, message_id: str) -> str:
    return f"{key_id}.{_mac(key, message_id)}"


def stamp(raw: bytes, token: str) -> bytes:
    """``raw`` (a composed message, CRLF) with the token header last among its headers."""
    end = raw.find(b"\r\n\r\n") + 2  # composed messages always have a header block
    return raw[:end] + f"{HEADER}: {token}\r\n".encode("ascii") + raw[end:]


def find_tokens(data: bytes, *, limit: int = 10) -> list[str]:
    """The bounce tokens quoted anywhere in ``data`` (a notice's returned headers)."""
    return [m.group(1).decode("ascii") for m in _FOUND.finditer(data)][:limit]


def token_ok(token: str, message_id: str, keys: dict[str, bytes]) -> bool:
    """Whether ``token`` was made by one of ``keys`` for ``message_id`` (constant-time)."""
    key_id, sep, _ = token.partition(".")
    key = keys.get(key_id)
    if not sep or key is None:
        return False
    return hmac.compare_digest(make_token(key_id, key, message_id), token)
