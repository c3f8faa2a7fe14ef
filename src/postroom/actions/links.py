"""Signed action links (pure): one token per request, choice and recipient.

A token is ``<payload>.<mac>``: the payload (base64url JSON) names the action request,
the choice, a hash of the recipient, the expiry and the key id; the MAC is HMAC-SHA256
under that key. Verification is constant-time. Keys are kept by id, so links signed
before a key rotation still verify while the old key is kept. Single use is the
database's job (a decision is recorded once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = ["Invalid", "LinkClaims", "recipient_hash", "sign", "verify"]


@dataclass(frozen=True)
class LinkClaims:
    action_id: str
    choice: str
    recipient_hash: str
    expires_at: int  # unix seconds


@dataclass(frozen=True)
class Invalid:
    reason: str  # "malformed", "unknown key", "bad signature", "expired"


def recipient_hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def sign(claims: LinkClaims, *, key_id: str, key: bytes) -> str:
    body = {"a": claims.action_id, "c": claims.choice, "r": claims.recipient_hash,
            "e": claims.expires_at, "k": key_id}  # fmt: skip
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{payload}.{_mac(key, payload)}"


def verify(token: str, *, keys: dict[str, bytes], now: int) -> LinkClaims | Invalid:
    if len(token) > 2048 or token.count(".") != 1:
        return Invalid("malformed")
    payload, mac = token.split(".")
    try:
        body = json.loads(_unb64(payload))
        claims = LinkClaims(
            action_id=str(body["a"]), choice=str(body["c"]),
            recipient_hash=str(body["r"]), expires_at=int(body["e"]),
        )  # fmt: skip
        key_id = str(body["k"])
    except (ValueError, KeyError, TypeError):
        return Invalid("malformed")
    key = keys.get(key_id)
    if key is None:
        return Invalid("unknown key")
    if not hmac.compare_digest(_mac(key, payload), mac):
        return Invalid("bad signature")
    if now >= claims.expires_at:
        return Invalid("expired")
    return claims
