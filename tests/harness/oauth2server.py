"""A local OAuth2 authorization server for integration tests, built on Authlib.

Served by a threaded WSGI server on a loopback port (plain HTTP by default, HTTPS when given
an ``ssl_context``). In-memory state; every knob a test needs is an attribute:

    /authorize             GET   authorization code + PKCE (S256 required); approves at once as
                                 ``login_as`` (or denies when ``deny_next``), like a browser
                                 that is already signed in
    /token                 POST  authorization_code, refresh_token (rotating), client_credentials,
                                 device_code; counts calls in ``token_calls``
    /device_authorization  POST  RFC 8628; ``approve_device(user_code)`` plays the person
    /revoke                POST  RFC 7009 (``revoke_user()`` revokes every grant of a user)
    /introspect            POST  RFC 7662, for Dovecot's oauth2 passdb (client ``dovecot``)

``rotation``: ``"strict"`` (a used refresh token is revoked together with its access token,
like Microsoft and most servers with rotation) or ``"lenient"`` (the old one stays valid).
``fail_next``: answers (status, json) to give instead of handling the next token requests.
``token_delay_s``: sleep before answering a token request (to overlap concurrent refreshes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# Authlib refuses http:// URIs unless told this is a test.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.oauth2.rfc6749 import (  # noqa: E402
    AuthorizationServer,
    ClientMixin,
    JsonRequest,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.errors import AccessDeniedError, OAuth2Error  # noqa: E402
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # noqa: E402
from authlib.oauth2.rfc7009 import RevocationEndpoint  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # noqa: E402
from authlib.oauth2.rfc8628 import (  # noqa: E402
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialMixin,
)

from .mailservers import INTROSPECTION_CLIENT, INTROSPECTION_SECRET, introspection_url  # noqa: E402

__all__ = ["DOVECOT_CLIENT", "DOVECOT_SECRET", "LocalAuthServer", "OAuthClient"]

DOVECOT_CLIENT = INTROSPECTION_CLIENT
DOVECOT_SECRET = INTROSPECTION_SECRET
_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


@dataclass
class OAuthClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = (
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    )
    scope: str = "mail openid email"
    mailbox: str | None = None  # the mailbox an app-only (client credentials) token acts on

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris:
            return True
        # RFC 8252 7.3: any port on a loopback redirect URI
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(
            client_secret, self.client_secret
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return (method == "none") == (self.client_secret is None)

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Token(TokenMixin):  # type: ignore[misc]
    client_id: str
    user: str | None
    access_token: str
    refresh_token: str | None
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: OAuthClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str | None:
        return self.user

    def get_client(self) -> OAuthClient | None:
        return None


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    created: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_auth_time(self) -> int:
        return int(self.created)

    def get_nonce(self) -> None:
        return None


@dataclass
class DeviceCredential(DeviceCredentialMixin):  # type: ignore[misc]
    client_id: str
    scope: str
    device_code: str
    user_code: str
    expires_at: float
    last_poll: float = 0.0

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, environ: dict[str, Any], base_url: str) -> None:
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = environ.get("QUERY_STRING", "")
        uri = base_url + environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        super().__init__(environ["REQUEST_METHOD"], uri, headers=headers)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode() if length else ""
        self._args = {k: v[0] for k, v in parse_qs(query).items()}
        self._form = {k: v[0] for k, v in parse_qs(body).items()}
        self.payload = BasicOAuth2Payload({**self._args, **self._form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _AuthorizationCode(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        self.server.owner.codes[code] = AuthCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or "",
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthCode | None:
        item = self.server.owner.codes.get(code)
        if item is not None and item.client_id == client.client_id:
            return item
        return None

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        self.server.owner.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> str:
        return authorization_code.user


class _RefreshToken(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = self.server.owner.find(refresh_token=refresh_token)
        if token is None or token.refresh_revoked:
            return None
        return token

    def authenticate_user(self, refresh_token: Token) -> str | None:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if self.server.owner.rotation == "strict":
            refresh_token.revoked = True
            refresh_token.refresh_revoked = True


class _ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _DeviceCode(DeviceCodeGrant):  # type: ignore[misc]
    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        return self.server.owner.devices.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        return self.server.owner.device_grants.get(user_code)

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        now = time.time()
        too_fast = now - credential.last_poll < 0.5
        credential.last_poll = now
        return too_fast


class _DeviceAuthorization(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    EXPIRES_IN = 600
    INTERVAL = 1

    def get_verification_uri(self) -> str:
        return self.server.owner.url + "/device"

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        self.server.owner.devices[data["device_code"]] = DeviceCredential(
            client_id=client_id,
            scope=scope or "",
            device_code=data["device_code"],
            user_code=data["user_code"],
            expires_at=time.time() + data["expires_in"],
        )


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        owner = self.server.owner
        return owner.find(access_token=token_string) or owner.find(refresh_token=token_string)

    def revoke_token(self, token: Token, request: _Request) -> None:
        token.revoked = True
        token.refresh_revoked = True


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        self.server.owner.introspections += 1
        return self.server.owner.find(access_token=token_string)

    def check_permission(self, token: Token, client: OAuthClient, request: _Request) -> bool:
        return True

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "username": token.user,
            "scope": token.scope,
            "exp": int(token.issued_at + token.expires_in),
        }


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, owner: LocalAuthServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        client = request.client
        user = request.user if request.user else client.mailbox
        self.owner.tokens.append(
            Token(
                client_id=client.client_id,
                user=user,
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                scope=token.get("scope", ""),
                issued_at=time.time(),
                expires_in=int(token["expires_in"]),
            )
        )

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: _Request) -> JsonRequest:
        # Authlib's hook for JSON-bodied endpoints; the token endpoint takes form posts only
        raise TypeError("this authorization server accepts form-encoded requests only")

    def handle_response(
        self, status: int, body: Any, headers: Iterable[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class LocalAuthServer:
    """Start with :meth:`start`; stop with :meth:`stop`. ``url`` is its base URL."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        url_host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.url_host = host, port, url_host or host
        self.ssl_context = ssl_context
        self.clients: dict[str, OAuthClient] = {
            DOVECOT_CLIENT: OAuthClient(DOVECOT_CLIENT, DOVECOT_SECRET, grant_types=())
        }
        self.tokens: list[Token] = []
        self.codes: dict[str, AuthCode] = {}
        self.devices: dict[str, DeviceCredential] = {}
        self.device_grants: dict[str, tuple[str, bool]] = {}
        self.login_as = "alice@postroom.test"
        self.deny_next = False
        self.rotation = "strict"
        self.access_lifetime = 3600
        self.token_calls: list[str] = []
        self.fail_next: list[tuple[int, dict[str, Any]]] = []
        self.token_delay_s = 0.0
        self.introspections = 0
        self._id_key = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._server = _Server(self)
        self._server.register_token_generator("default", self._generate)
        self._server.register_grant(_AuthorizationCode, [CodeChallenge(required=True)])
        self._server.register_grant(_RefreshToken)
        self._server.register_grant(_ClientCredentials)
        self._server.register_grant(_DeviceCode)
        self._server.register_endpoint(_DeviceAuthorization)
        self._server.register_endpoint(_Revocation)
        self._server.register_endpoint(_Introspection)

    # -- test API -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.url_host}:{self.port}"

    def introspection_url(self) -> str:
        """For Dovecot: basic auth of the ``dovecot`` client in the URL."""
        return introspection_url(self.port, self.host)

    def add_client(
        self,
        client_id: str,
        secret: str | None = None,
        *,
        mailbox: str | None = None,
        scope: str = "mail openid email",
    ) -> OAuthClient:
        client = OAuthClient(client_id, secret, mailbox=mailbox, scope=scope)
        self.clients[client_id] = client
        return client

    def find(
        self, *, access_token: str | None = None, refresh_token: str | None = None
    ) -> Token | None:
        with self._lock:
            for token in reversed(self.tokens):
                if access_token is not None and token.access_token == access_token:
                    return token
                if refresh_token is not None and token.refresh_token == refresh_token:
                    return token
        return None

    def approve_device(
        self, user_code: str, user: str | None = None, *, approve: bool = True
    ) -> None:
        self.device_grants[user_code] = (user or self.login_as, approve)

    def revoke_user(self, user: str) -> int:
        """Revoke every grant of ``user`` (what "remove app access" does at a provider)."""
        count = 0
        with self._lock:
            for token in self.tokens:
                if token.user == user and not token.revoked:
                    token.revoked = token.refresh_revoked = True
                    count += 1
        return count

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self.tokens:
                token.expires_in = 0

    def calls(self, grant_type: str) -> int:
        return self.token_calls.count(grant_type)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalAuthServer:
        self._httpd = make_server(
            self.host, self.port, self._wsgi, server_class=_ThreadingServer, handler_class=_Quiet
        )
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- internals --------------------------------------------------------------------------

    def _generate(
        self,
        grant_type: str,
        client: OAuthClient,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": "at-" + secrets.token_urlsafe(24),
            "expires_in": expires_in or self.access_lifetime,
            "scope": scope or "",
        }
        if include_refresh_token and grant_type != "client_credentials":
            token["refresh_token"] = "rt-" + secrets.token_urlsafe(24)
        if user and "openid" in (scope or "").split():
            header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            claims = {"iss": self.url, "aud": client.client_id, "sub": user, "email": user,
                      "iat": int(time.time()), "exp": int(time.time()) + 3600}  # fmt: skip
            payload = _b64(json.dumps(claims).encode())
            mac = hmac.new(self._id_key, f"{header}.{payload}".encode(), hashlib.sha256)
            token["id_token"] = f"{header}.{payload}.{_b64(mac.digest())}"
        return token

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request = _Request(environ, self.url)
        path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
        with self._lock:
            routes: dict[tuple[str, str], Callable[[_Request], tuple[int, Any, list[Any]]]] = {
                ("GET", "/authorize"): self._authorize,
                ("POST", "/token"): self._token,
                ("POST", "/device_authorization"): lambda r: self._server.create_endpoint_response(
                    "device_authorization", r
                ),
                ("POST", "/revoke"): lambda r: self._server.create_endpoint_response(
                    "revocation", r
                ),
                ("POST", "/introspect"): lambda r: self._server.create_endpoint_response(
                    "introspection", r
                ),
            }
        handler = routes.get((method, path))
        if handler is None:
            status, body, headers = 404, {"error": "not_found"}, []
        else:
            status, body, headers = handler(request)
        if isinstance(body, dict):
            body = json.dumps(body)
            headers = [h for h in headers if h[0].lower() != "content-type"]
            headers.append(("Content-Type", "application/json"))
        start_response(f"{status} X", [(str(k), str(v)) for k, v in headers])
        return [(body or "").encode()]

    def _authorize(self, request: _Request) -> tuple[int, Any, list[Any]]:
        with self._lock:
            try:
                grant = self._server.get_consent_grant(request)
            except OAuth2Error as error:
                return self._server.handle_error_response(request, error)  # type: ignore[no-any-return]
            user = None if self.deny_next else self.login_as
            self.deny_next = False
            if user is None:
                return self._server.handle_error_response(request, AccessDeniedError(
                    state=request.payload.state, redirect_uri=grant.redirect_uri))  # type: ignore[no-any-return]  # fmt: skip
            return self._server.create_authorization_response(request, grant_user=user, grant=grant)  # type: ignore[no-any-return]

    def _token(self, request: _Request) -> tuple[int, Any, list[Any]]:
        grant_type = request.payload.data.get("grant_type", "")
        self.token_calls.append(grant_type)
        if self.token_delay_s:
            time.sleep(self.token_delay_s)
        with self._lock:
            if self.fail_next:
                status, body = self.fail_next.pop(0)
                return status, body, []
            return self._server.create_token_response(request)  # type: ignore[no-any-return]
