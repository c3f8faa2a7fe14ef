"""Access tokens on demand: cached, refreshed once at a time, rotated tokens saved first.

::

    tokens = TokenService(store, policy=policy)
    token = await tokens.access_token("m365")      # AccessToken; .token is the bearer
    ...the server refused it...
    token = await tokens.access_token("m365", rejected=token)

An access token is reused (in memory, and through the database by other processes) until
shortly before it expires: 10 % of its lifetime, at most two minutes. A refresh takes the
configuration's lease (see :mod:`postroom.oauth2.store`); a process that finds the lease taken
waits for the holder's result instead of calling the token endpoint itself.

Failures raise :class:`~postroom.oauth2.errors.TokenError`: ``invalid_grant`` (and the other
"a person must sign in again" answers) marks the configuration *consent needed* and pauses the
deliveries of its profiles; 5xx answers, 429 and network faults back off exponentially
(5 s doubling to 5 minutes, with jitter); other errors back off from 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from postroom.db.tables import utcnow
from postroom.net.policy import NetPolicy
from postroom.oauth2.errors import TokenError
from postroom.oauth2.http import HTTP_TIMEOUT_S, EndpointUnreachable, post_form
from postroom.oauth2.protocol import EndpointError, TokenGrant, parse_token_response
from postroom.oauth2.providers import Endpoints, ProviderError, resolve
from postroom.oauth2.schemas import Grant, Provider
from postroom.oauth2.store import Snapshot, TokenStore
from postroom.oauth2.tables import TokenState
from postroom.profiles.service import name_key

__all__ = ["AccessToken", "TokenService", "client_form"]

log = logging.getLogger("postroom.oauth2")

#: Longer than the HTTP timeout, so a live holder always finishes within its lease.
LEASE_S = HTTP_TIMEOUT_S + 10.0
_POLL_S = 0.1
_MAX_SKEW_S = 120.0
_CONSENT_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "consent_required", "login_required"}
)


@dataclass(frozen=True, repr=False)
class AccessToken:
    """A bearer token for ``username``. ``repr`` and :meth:`describe` never show the token."""

    config: str
    token: str
    username: str | None
    expires_at: datetime
    issued_at: datetime
    version: int
    fresh: bool = False

    def __repr__(self) -> str:
        return f"AccessToken(config={self.config!r}, expires_at={self.expires_at.isoformat()})"

    def usable(self, now: datetime) -> bool:
        lifetime = (self.expires_at - self.issued_at).total_seconds()
        skew = min(_MAX_SKEW_S, max(0.0, lifetime) * 0.1)
        return now < self.expires_at - timedelta(seconds=skew)

    def describe(self) -> str:
        how = "fetched now" if self.fresh else "cached"
        return (
            f"access token for {self.username or '(no user name)'} from '{self.config}', "
            f"valid until {self.expires_at:%Y-%m-%d %H:%M:%S} UTC ({how})"
        )


def client_form(snap: Snapshot) -> dict[str, str]:
    """Client authentication in the form body (client_secret_post; public clients: id only)."""
    form = {"client_id": snap.spec.client_id}
    if snap.client_secret:
        form["client_secret"] = snap.client_secret
    return form


def _backoff_s(failures: int, *, transient: bool) -> float:
    base = 5.0 if transient else 30.0
    return float(min(300.0, base * 2 ** max(0, failures - 1)) * random.uniform(0.75, 1.0))


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TokenService:
    """Hands out access tokens for OAuth2 configurations (async; the database in a thread)."""

    def __init__(
        self,
        store: TokenStore,
        *,
        policy: NetPolicy,
        ssl_context: ssl.SSLContext | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self.store = store
        self.policy = policy
        self.ssl_context = ssl_context
        self.lease_s = lease_s
        self._cache: dict[str, AccessToken] = {}
        # asyncio locks belong to one event loop; the CLI runs one loop per command
        self._locks: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]] = {}

    def _lock(self, key: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        entry = self._locks.get(id(loop))
        if entry is None or entry[0] is not loop:
            for stale in [k for k, (other, _) in self._locks.items() if other.is_closed()]:
                del self._locks[stale]
            entry = self._locks[id(loop)] = (loop, {})
        return entry[1].setdefault(key, asyncio.Lock())

    async def access_token(
        self, name: str, /, *, rejected: AccessToken | None = None, ignore_backoff: bool = False
    ) -> AccessToken:
        """A usable access token for configuration ``name``.

        ``rejected``: a token the server refused; it is not handed out again.
        ``ignore_backoff``: try now even after recent failures (a person runs a test).
        Raises TokenError, NotFound.
        """
        key = name_key(name)
        if rejected is not None:
            await self.forget(rejected)
        cached = self._cache.get(key)
        if cached is not None and cached.usable(utcnow()):
            return cached
        async with self._lock(key):
            cached = self._cache.get(key)
            if cached is not None and cached.usable(utcnow()):
                return cached
            token = await self._obtain(name, rejected, ignore_backoff)
            self._cache[key] = token
            return token

    def drop_cached(self, name: str) -> None:
        """Forget this process's cached token of ``name`` (after a new sign-in)."""
        self._cache.pop(name_key(name), None)

    async def forget(self, token: AccessToken) -> None:
        """The server refused ``token``: drop it here and in the database."""
        key = name_key(token.config)
        if self._cache.get(key) is token or (
            key in self._cache and self._cache[key].token == token.token
        ):
            del self._cache[key]
        snap = await asyncio.to_thread(self.store.load, token.config)
        if snap.access_token == token.token:
            await asyncio.to_thread(self.store.forget_access, snap.config_id, snap.version)

    def _stored(self, snap: Snapshot, rejected: AccessToken | None) -> AccessToken | None:
        if not snap.access_token or snap.access_expires_at is None:
            return None
        if rejected is not None and snap.access_token == rejected.token:
            return None
        token = AccessToken(
            config=snap.name,
            token=snap.access_token,
            username=snap.sasl_user,
            expires_at=snap.access_expires_at,
            issued_at=snap.last_refresh_at or snap.connected_at or utcnow(),
            version=snap.version,
        )
        return token if token.usable(utcnow()) else None

    def _check_usable(self, snap: Snapshot, ignore_backoff: bool) -> None:
        """Raise when no refresh should be tried now."""
        last = snap.last_error or {}
        if snap.state == TokenState.CONSENT_NEEDED:
            raise TokenError(
                f"OAuth2 configuration '{snap.name}' needs to be connected again: the provider "
                f"refused its refresh token ({last.get('error', 'invalid_grant')}"
                + (f": {last['error_description']}" if last.get("error_description") else "")
                + f"). Run `postroom oauth2 connect {snap.name}`.",
                config=snap.name,
                error=str(last.get("error") or "invalid_grant"),
                description=str(last.get("error_description") or ""),
                consent_needed=True,
            )
        if snap.spec.grant is not Grant.CLIENT_CREDENTIALS and not snap.refresh_token:
            self.store.pause_users(snap.config_id)
            raise TokenError(
                f"OAuth2 configuration '{snap.name}' is not connected yet: a person must sign "
                f"in once (`postroom oauth2 connect {snap.name}`).",
                config=snap.name,
                error="not_connected",
                consent_needed=True,
            )
        if not ignore_backoff and snap.backoff_until is not None and snap.backoff_until > utcnow():
            raise TokenError(
                f"The token endpoint of '{snap.name}' failed recently "
                f"({last.get('error', 'error')}); postroom tries again after "
                f"{snap.backoff_until:%H:%M:%S} UTC.",
                config=snap.name,
                error=str(last.get("error") or "temporarily_unavailable"),
                description=str(last.get("error_description") or ""),
                transient=True,
            )

    async def _obtain(
        self, name: str, rejected: AccessToken | None, ignore_backoff: bool
    ) -> AccessToken:
        owner = _owner()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_s + 5.0
        while True:
            snap = await asyncio.to_thread(self.store.load, name)
            stored = self._stored(snap, rejected)
            if stored is not None:
                return stored
            await asyncio.to_thread(self._check_usable, snap, ignore_backoff)
            if await asyncio.to_thread(
                self.store.acquire_lease, snap.config_id, owner, lease_s=self.lease_s
            ):
                break
            # Another process is refreshing: its result will be in the database shortly.
            if loop.time() > give_up:
                raise TokenError(
                    f"Another process has been refreshing the token of '{snap.name}' for too long.",
                    config=snap.name,
                    error="temporarily_unavailable",
                    transient=True,
                )
            await asyncio.sleep(_POLL_S)
        try:
            # Re-read under the lease: the previous holder may have just stored a new token.
            snap = await asyncio.to_thread(self.store.load, name)
            stored = self._stored(snap, rejected)
            if stored is not None:
                await asyncio.to_thread(self.store.release_lease, snap.config_id, owner)
                return stored
            await asyncio.to_thread(self._check_usable, snap, True)  # e.g. consent just lost
            grant = await self._refresh(snap, owner)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.store.release_lease, snap.config_id, owner))
            raise
        saved = await asyncio.to_thread(
            self.store.save_refreshed, snap.config_id, owner, snap.version, grant,
            keep_refresh=snap.refresh_token,
        )  # fmt: skip
        if not saved:
            # Our lease ran out and another process wrote meanwhile: its tokens win. Ours is
            # still a valid access token for this one use.
            log.warning("OAuth2 '%s': lease lost during a refresh; result not stored", snap.name)
        now = utcnow()
        return AccessToken(
            config=snap.name,
            token=grant.access_token,
            username=snap.sasl_user,
            expires_at=now + timedelta(seconds=grant.expires_in or 600.0),
            issued_at=now,
            version=snap.version + 1,
            fresh=True,
        )

    async def _refresh(self, snap: Snapshot, owner: str) -> TokenGrant:
        endpoints = self.endpoints(snap)
        form = client_form(snap)
        if snap.spec.grant is Grant.CLIENT_CREDENTIALS:
            form |= {"grant_type": "client_credentials", "scope": " ".join(endpoints.scopes)}
        else:
            assert snap.refresh_token is not None
            form |= {"grant_type": "refresh_token", "refresh_token": snap.refresh_token}
            if snap.spec.provider is Provider.MICROSOFT:
                form["scope"] = " ".join(endpoints.scopes)  # the v2 endpoint expects it
        try:
            return await self.request(snap, endpoints.token_url, form)
        except TokenError as exc:
            consent = exc.consent_needed and snap.spec.grant is not Grant.CLIENT_CREDENTIALS
            await asyncio.to_thread(
                self.store.record_failure,
                snap.config_id,
                owner,
                {"error": exc.error, "error_description": exc.description, "status": exc.status},
                consent_needed=consent,
                backoff_s=None
                if consent
                else _backoff_s(snap.failures + 1, transient=exc.transient),
            )
            raise

    def endpoints(self, snap: Snapshot) -> Endpoints:
        try:
            return resolve(snap.spec)
        except ProviderError as exc:
            raise TokenError(
                f"OAuth2 configuration '{snap.name}' is incomplete: {exc}",
                config=snap.name,
                error="invalid_configuration",
            ) from None

    async def request(self, snap: Snapshot, url: str, form: dict[str, str]) -> TokenGrant:
        """POST ``form`` to the token endpoint; the grant, or TokenError with the provider's words."""
        try:
            status, body = await post_form(
                url, form, policy=self.policy, ssl_context=self.ssl_context
            )
        except EndpointUnreachable as exc:
            raise TokenError(
                f"Could not reach the token endpoint of '{snap.name}': {exc.message}",
                config=snap.name,
                error="network_error",
                description=exc.message,
                transient=exc.transient,
            ) from None
        result = parse_token_response(status, body)
        if isinstance(result, EndpointError):
            raise token_error(snap.name, result)
        return result


def token_error(config: str, result: EndpointError) -> TokenError:
    """A TokenError in people's words for an error answer of the token endpoint."""
    said = result.error + (f": {result.description}" if result.description else "")
    consent = result.error in _CONSENT_ERRORS
    if consent:
        what = f"The provider refused the stored sign-in of '{config}' ({said}); reconnect it."
    elif result.transient:
        what = f"The token endpoint of '{config}' failed (HTTP {result.status}, {said}); postroom retries later."
    else:
        what = (
            f"The token endpoint of '{config}' refused the request (HTTP {result.status}, {said})."
        )
    return TokenError(
        what,
        config=config,
        error=result.error,
        description=result.description,
        consent_needed=consent,
        transient=result.transient,
        status=result.status,
    )
