"""Unsubscribe tokens (pure): ``<subscription id>.<HMAC>``, checked in constant time.

The MAC covers the subscription id and a random nonce stored with the subscription, so
a token dies with its subscription: a new subscription that happens to get the same id
(SQLite may reuse ids) has a new nonce and the old link does not touch it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["parse_token", "sign", "verify"]

_MAC_BYTES = 16  # 128 bits: unguessable, and the URL stays short enough for one header line


def _mac(key: bytes, subscription_id: int, nonce: str) -> bytes:
    message = f"unsubscribe:{subscription_id}:{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(key: bytes, subscription_id: int, nonce: str) -> str:
    """The token for one subscription."""
    mac = base64.urlsafe_b64encode(_mac(key, subscription_id, nonce)).rstrip(b"=").decode()
    return f"{subscription_id}.{mac}"


def parse_token(token: str) -> tuple[int, bytes] | None:
    """``(subscription id, mac)`` from a token, or None when it is not even well-formed."""
    head, sep, tail = token.strip().partition(".")
    if not sep or not head.isdigit() or len(head) > 18 or not 0 < len(tail) <= 64:
        return None
    try:
        mac = base64.b64decode(tail + "=" * (-len(tail) % 4), altchars=b"-_", validate=True)
    except ValueError:
        return None
    return (int(head), mac) if len(mac) == _MAC_BYTES else None


def verify(key: bytes, subscription_id: int, nonce: str, mac: bytes) -> bool:
    """Constant-time check of ``mac`` against the subscription's own."""
    return hmac.compare_digest(_mac(key, subscription_id, nonce), mac)
