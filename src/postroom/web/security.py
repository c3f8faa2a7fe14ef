"""Signed cookies, sessions, CSRF tokens and sealed form secrets for the web UI.

Every key here derives from one random installation secret (``web_session_secret`` in
``system_settings``, itself encrypted with the installation's secret keys), so every
``postroom serve`` of one database accepts the others' sessions. Nothing is built at import.

A session lives in a signed cookie: who signed in, their role, a session id and the CSRF
token of that session. Anonymous visitors get one too, so the sign-in and setup forms carry
a CSRF token as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from postroom.app import Postroom
from postroom.errors import SecretKeyError
from postroom.web.store import get_or_create_setting, set_setting

__all__ = [
    "SESSION_COOKIE",
    "SESSION_MAX_AGE_S",
    "Signer",
    "WebSession",
    "load_installation_secret",
    "new_session",
]

SESSION_COOKIE = "postroom_session"
SESSION_MAX_AGE_S = 12 * 3600
_SECRET_KEY = "web_session_secret"


def load_installation_secret(pr: Postroom) -> bytes:
    """The installation's web secret, created (and stored encrypted) on first use.

    If the secret keys were rotated with ``--retire-old`` the stored value no longer
    decrypts; a new one replaces it, which signs everybody out once.
    """
    fresh = secrets.token_urlsafe(48)
    stored = get_or_create_setting(pr.sessions, _SECRET_KEY, pr.box.encrypt(fresh))
    try:
        return pr.box.decrypt(stored, what="the web session secret").encode("ascii")
    except SecretKeyError:
        set_setting(pr.sessions, _SECRET_KEY, pr.box.encrypt(fresh))
        return fresh.encode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and seals values with keys derived per purpose from one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self._secret, purpose.encode("utf-8"), hashlib.sha256).digest()

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        """``payload`` as JSON with an HMAC; readable by anyone, forgeable by no one."""
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        mac = hmac.new(self._key(purpose), body.encode("ascii"), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def unsign(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The payload of a token :meth:`sign` made for ``purpose``; None if tampered."""
        body, sep, mac = token.partition(".")
        if not sep or len(token) > 8192:
            return None
        expected = hmac.new(self._key(purpose), body.encode("ascii"), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), expected):
                return None
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    def _fernet(self, purpose: str) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self._key("seal:" + purpose)))

    def seal(self, purpose: str, plaintext: str) -> str:
        """Encrypt ``plaintext`` (e.g. a password typed into a form that is shown again)."""
        return self._fernet(purpose).encrypt(plaintext.encode("utf-8")).decode("ascii")

    def unseal(self, purpose: str, token: str, *, ttl_s: int) -> str | None:
        """The plaintext of a :meth:`seal` token younger than ``ttl_s``; else None."""
        try:
            return self._fernet(purpose).decrypt(token.encode("ascii"), ttl=ttl_s).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            return None


@dataclass(frozen=True)
class WebSession:
    """One browser's session; ``user`` is None until someone signs in."""

    sid: str
    csrf: str
    issued: int
    user: str | None = None
    role: str | None = None

    @property
    def expired(self) -> bool:
        return time.time() - self.issued > SESSION_MAX_AGE_S

    def to_cookie(self, signer: Signer) -> str:
        return signer.sign(
            "session",
            {
                "sid": self.sid,
                "csrf": self.csrf,
                "iat": self.issued,
                "u": self.user,
                "r": self.role,
            },
        )

    @classmethod
    def from_cookie(cls, signer: Signer, value: str | None) -> WebSession | None:
        """The session in a cookie, or None when it is missing, tampered with or expired."""
        if not value:
            return None
        data = signer.unsign("session", value)
        if data is None:
            return None
        try:
            session = cls(
                sid=str(data["sid"]),
                csrf=str(data["csrf"]),
                issued=int(data["iat"]),
                user=str(data["u"]) if data.get("u") else None,
                role=str(data["r"]) if data.get("r") else None,
            )
        except (KeyError, TypeError, ValueError):
            return None
        return None if session.expired else session

    def signed_in(self, user: str, role: str) -> WebSession:
        """A new session for ``user``: new id and CSRF token (no session fixation)."""
        return replace(new_session(), user=user, role=role)

    def csrf_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(self.csrf.encode("utf-8"), token.encode("utf-8"))


def new_session() -> WebSession:
    """A fresh anonymous session."""
    return WebSession(
        sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32), issued=int(time.time())
    )
