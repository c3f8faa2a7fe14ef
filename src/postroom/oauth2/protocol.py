"""The OAuth2 wire format (pure): PKCE, state, authorization URLs, token responses.

::

    pkce = new_pkce()                          # verifier (kept secret), challenge (sent)
    url = authorization_url(endpoints, client_id=..., redirect_uri=..., state=..., pkce=pkce)
    code, state, error = parse_redirect("http://127.0.0.1:8765/?code=…&state=…")
    grant = parse_token_response(200, body)    # -> TokenGrant | EndpointError
    account_from_id_token(grant.id_token)      # -> "alice@example.com" (claims read, not verified)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from postroom.oauth2.errors import clean_text
from postroom.oauth2.providers import Endpoints

__all__ = [
    "DeviceAuthorization",
    "EndpointError",
    "Pkce",
    "TokenGrant",
    "account_from_id_token",
    "authorization_url",
    "hash_state",
    "new_pkce",
    "new_state",
    "parse_device_response",
    "parse_redirect",
    "parse_token_response",
]


@dataclass(frozen=True, repr=False)
class Pkce:
    verifier: str
    challenge: str
    method: str = "S256"


def new_pkce() -> Pkce:
    """RFC 7636: a 43-character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def new_state() -> str:
    return secrets.token_urlsafe(32)


def hash_state(state: str) -> str:
    """What is stored of a ``state``: a leaked database row cannot complete a sign-in."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def authorization_url(
    endpoints: Endpoints,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    pkce: Pkce,
    login_hint: str | None = None,
) -> str:
    """Where to send the person who signs in (authorization code grant with PKCE)."""
    if not endpoints.authorize_url:
        raise ValueError("this configuration has no authorization endpoint")
    scopes = list(endpoints.scopes) + [
        s for s in endpoints.sign_in_scopes if s not in endpoints.scopes
    ]
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        **endpoints.authorize_params,
    }
    if login_hint:
        params["login_hint"] = login_hint
    sep = "&" if urlsplit(endpoints.authorize_url).query else "?"
    return f"{endpoints.authorize_url}{sep}{urlencode(params)}"


def parse_redirect(text: str) -> tuple[str | None, str | None, dict[str, str]]:
    """``(code, state, error)`` from a pasted redirect URL, its query, or a bare code.

    ``error`` holds ``error``/``error_description`` when the provider reported one.
    """
    text = text.strip()
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    if "=" not in query:
        return (text or None), None, {}
    values = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    error = {k: values[k] for k in ("error", "error_description") if values.get(k)}
    return values.get("code") or None, values.get("state") or None, error


@dataclass(frozen=True, repr=False)
class TokenGrant:
    """A successful token response. ``repr`` shows no token."""

    access_token: str
    expires_in: float | None
    refresh_token: str | None = None
    scope: tuple[str, ...] = ()
    id_token: str | None = None
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        return f"TokenGrant(expires_in={self.expires_in}, refresh_token={'yes' if self.refresh_token else 'no'}, scope={self.scope})"


@dataclass(frozen=True)
class EndpointError:
    """A failed token or device endpoint response, as the provider described it."""

    status: int
    error: str
    description: str = ""
    transient: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _error(status: int, data: dict[str, Any] | None) -> EndpointError:
    transient = status >= 500 or status == 429
    if data and isinstance(data.get("error"), str):
        error = data["error"]
        return EndpointError(
            status,
            clean_text(error, 100),
            clean_text(data.get("error_description", "")),
            transient=transient or error in ("temporarily_unavailable", "server_error"),
        )
    return EndpointError(status, f"http_{status}", "", transient=transient)


def parse_token_response(status: int, body: bytes) -> TokenGrant | EndpointError:
    """Read a token endpoint answer (RFC 6749 section 5)."""
    data = _json(body)
    if status != 200:
        return _error(status, data)
    if data is None or not isinstance(data.get("access_token"), str) or not data["access_token"]:
        return EndpointError(status, "invalid_response", "the answer holds no access token", True)
    token_type = str(data.get("token_type") or "Bearer")
    if token_type.lower() != "bearer":
        return EndpointError(status, "invalid_response", f"unsupported token type {token_type!r}")
    try:
        expires_in = float(data["expires_in"]) if data.get("expires_in") is not None else None
    except (TypeError, ValueError):
        expires_in = None
    scope = data.get("scope")
    refresh = data.get("refresh_token")
    id_token = data.get("id_token")
    return TokenGrant(
        access_token=data["access_token"],
        expires_in=expires_in,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=tuple(scope.split()) if isinstance(scope, str) else (),
        id_token=id_token if isinstance(id_token, str) else None,
    )


@dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def parse_device_response(status: int, body: bytes) -> DeviceAuthorization | EndpointError:
    """Read a device authorization answer (RFC 8628 section 3.2; Microsoft's field names too)."""
    data = _json(body)
    if status != 200 or data is None:
        return _error(status, data)
    uri = data.get("verification_uri") or data.get("verification_url")
    if not all(
        isinstance(data.get(k), str) for k in ("device_code", "user_code")
    ) or not isinstance(uri, str):
        return EndpointError(status, "invalid_response", "the answer lacks device or user code")
    complete = data.get("verification_uri_complete")
    return DeviceAuthorization(
        device_code=data["device_code"],
        user_code=clean_text(data["user_code"], 50),
        verification_uri=clean_text(uri, 500),
        verification_uri_complete=clean_text(complete, 1000) if isinstance(complete, str) else None,
        expires_in=float(data.get("expires_in") or 900),
        interval=float(data.get("interval") or 5),
    )


def account_from_id_token(id_token: str | None) -> str | None:
    """The signed-in account named by an OpenID Connect ID token, or None.

    The claims are read without checking the signature: the token came straight from the
    token endpoint over a verified TLS connection, which OpenID Connect Core (3.1.3.7) accepts
    in place of the signature for the code flow. It is only used as a display name and
    a default SASL user name, never to authorize anything.
    """
    if not id_token or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    for key in ("email", "preferred_username", "upn", "unique_name"):
        value = claims.get(key)
        if isinstance(value, str) and "@" in value:
            return clean_text(value, 320)
    return None
