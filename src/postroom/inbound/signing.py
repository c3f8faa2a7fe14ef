"""Webhook signatures (pure): HMAC-SHA256 over ``"<timestamp>.<body>"``.

Every delivery carries ``X-Postroom-Timestamp: <unix seconds>`` and
``X-Postroom-Signature: v1=<hex>``. A receiver recomputes the HMAC with its secret, compares
in constant time and rejects old timestamps, so a captured request cannot be replayed
later. :func:`verify` does all three; receivers in Python can use it as is::

    ok = verify(secret, request.headers["X-Postroom-Timestamp"], body,
                request.headers["X-Postroom-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "new_secret",
    "sign",
    "signature_headers",
    "verify",
]

TIMESTAMP_HEADER = "X-Postroom-Timestamp"
SIGNATURE_HEADER = "X-Postroom-Signature"
_VERSION = "v1"


def new_secret() -> str:
    """A fresh signing secret (256 random bits, URL-safe text)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``v1=<hex HMAC-SHA256 of "timestamp.body">``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"{_VERSION}={mac.hexdigest()}"


def signature_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two headers to send with ``body``."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` (one or more comma-separated ``v1=…``) signs ``body`` at
    ``timestamp`` with ``secret``, and ``timestamp`` is within ``tolerance_s`` of now."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))
