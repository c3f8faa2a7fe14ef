"""Connecting a configuration: authorization code with PKCE, device code, client credentials.

Browser sign-in (authorization code + PKCE, RFC 7636)::

    start = await flows.start_authorization("m365", redirect_uri=".../oauth2/callback")
    # send the person to start.authorization_url; the provider redirects back with code+state
    connected = await flows.complete_authorization(state=state, code=code)

The ``state`` is random, stored only as a hash, single use and valid ten minutes; the PKCE
verifier never leaves postroom (encrypted at rest), so a stolen code is worthless elsewhere.

Device code (RFC 8628): :meth:`Flows.start_device`, then :meth:`Flows.poll_device` until it
returns a :class:`Connected` (it keeps to the provider's polling interval). Client
credentials: :meth:`Flows.connect_client_credentials` fetches a first token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import OAuth2Config, utcnow
from postroom.errors import FieldError, NotFound, ValidationError
from postroom.oauth2.errors import FlowError, TokenError
from postroom.oauth2.http import EndpointUnreachable, post_form
from postroom.oauth2.protocol import (
    EndpointError,
    TokenGrant,
    account_from_id_token,
    authorization_url,
    hash_state,
    new_pkce,
    new_state,
    parse_device_response,
)
from postroom.oauth2.schemas import Grant
from postroom.oauth2.store import Snapshot, TokenStore
from postroom.oauth2.tables import OAuth2Flow
from postroom.oauth2.tokens import TokenService, client_form
from postroom.secrets import SecretBox

__all__ = ["AuthorizationStart", "Connected", "DeviceStart", "Flows"]

FLOW_TTL = timedelta(minutes=10)
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class AuthorizationStart:
    config: str
    authorization_url: str
    redirect_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class DeviceStart:
    config: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: datetime
    interval_s: int


@dataclass(frozen=True)
class Connected:
    config: str
    grant: str
    account: str | None
    scopes: tuple[str, ...]


def _wrong_grant(snap: Snapshot, expected: Grant) -> ValidationError:
    return ValidationError(
        FieldError(
            "grant",
            f"configuration '{snap.name}' uses grant '{snap.spec.grant}', not '{expected}'",
        )
    )


class Flows:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: Callable[[], SecretBox],
        store: TokenStore,
        tokens: TokenService,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self.store = store
        self.tokens = tokens

    # -- authorization code + PKCE ------------------------------------------------------------

    async def start_authorization(
        self, name: str, /, *, redirect_uri: str, actor: str = "system"
    ) -> AuthorizationStart:
        """A sign-in URL for configuration ``name``, returning to ``redirect_uri``."""
        snap = await asyncio.to_thread(self.store.load, name)
        if snap.spec.grant is not Grant.AUTHORIZATION_CODE:
            raise _wrong_grant(snap, Grant.AUTHORIZATION_CODE)
        endpoints = self.tokens.endpoints(snap)
        pkce, state = new_pkce(), new_state()
        url = authorization_url(
            endpoints, client_id=snap.spec.client_id, redirect_uri=redirect_uri, state=state,
            pkce=pkce, login_hint=snap.spec.username,
        )  # fmt: skip
        expires = utcnow() + FLOW_TTL
        flow = OAuth2Flow(
            config_id=snap.config_id, kind=Grant.AUTHORIZATION_CODE.value,
            state_hash=hash_state(state), secret=self._box().encrypt(pkce.verifier),
            redirect_uri=redirect_uri, actor=actor, expires_at=expires,
        )  # fmt: skip
        await asyncio.to_thread(self._add, flow)
        return AuthorizationStart(snap.name, url, redirect_uri, expires)

    def _add(self, flow: OAuth2Flow) -> None:
        with self._sessions() as s:
            s.add(flow)
            s.commit()

    def _consume(self, state: str) -> tuple[str, str, str, str]:
        """Mark the flow of ``state`` used: (config name, verifier, redirect URI, actor)."""
        now = utcnow()
        with self._sessions() as s:
            flow = s.scalar(select(OAuth2Flow).where(OAuth2Flow.state_hash == hash_state(state)))
            if flow is None or flow.kind != Grant.AUTHORIZATION_CODE.value:
                raise FlowError(
                    "This sign-in link is unknown (or from another postroom). Start again.",
                    error="invalid_state",
                )
            taken = s.execute(
                update(OAuth2Flow)
                .where(OAuth2Flow.id == flow.id, OAuth2Flow.used_at.is_(None))
                .values(used_at=now)
            ).rowcount  # type: ignore[attr-defined]
            s.commit()
            if not taken:
                raise FlowError(
                    "This sign-in was already completed; each link works once. Start again.",
                    error="state_used",
                )
            if flow.expires_at <= now:
                raise FlowError(
                    "This sign-in took longer than ten minutes and expired. Start again.",
                    error="state_expired",
                )
            config = s.get(OAuth2Config, flow.config_id)
            if config is None:
                raise NotFound("The OAuth2 configuration of this sign-in was deleted.")
            verifier = self._box().decrypt(flow.secret, what="an OAuth2 sign-in secret")
            return config.name, verifier, flow.redirect_uri or "", flow.actor

    async def complete_authorization(
        self,
        *,
        state: str,
        code: str | None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Connected:
        """Finish a browser sign-in with what the provider sent to the redirect URI.

        Raises FlowError (unknown, used or expired ``state``; the person declined) or
        TokenError (the code exchange failed).
        """
        name, verifier, redirect_uri, actor = await asyncio.to_thread(self._consume, state)
        if error or not code:
            raise FlowError(
                f"The provider did not grant access to '{name}': {error or 'no code'}"
                + (f" ({error_description})" if error_description else ""),
                error=error or "invalid_request",
                description=error_description or "",
            )
        snap = await asyncio.to_thread(self.store.load, name)
        form = client_form(snap) | {
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": redirect_uri, "code_verifier": verifier,
        }  # fmt: skip
        grant = await self.tokens.request(snap, self.tokens.endpoints(snap).token_url, form)
        return await self._connected(snap, grant, actor=actor)

    async def _connected(self, snap: Snapshot, grant: TokenGrant, *, actor: str) -> Connected:
        if snap.spec.grant is not Grant.CLIENT_CREDENTIALS and not grant.refresh_token:
            raise TokenError(
                f"The provider issued no refresh token for '{snap.name}', so postroom could not "
                "keep the connection. Microsoft: include the offline_access scope; Google: the "
                "sign-in URL asks for offline access, so remove the app's access in the Google "
                "account and connect again.",
                config=snap.name,
                error="no_refresh_token",
            )
        account = account_from_id_token(grant.id_token) or snap.spec.username
        await asyncio.to_thread(
            self.store.save_connected, snap.config_id, grant, account=account, actor=actor,
            how=snap.spec.grant.value,
        )  # fmt: skip
        self.tokens.drop_cached(snap.name)
        return Connected(snap.name, snap.spec.grant.value, account, grant.scope)

    # -- device code --------------------------------------------------------------------------

    async def start_device(self, name: str, /, *, actor: str = "system") -> DeviceStart:
        """Ask the provider for a user code; a person enters it at the verification URI."""
        snap = await asyncio.to_thread(self.store.load, name)
        if snap.spec.grant is not Grant.DEVICE_CODE:
            raise _wrong_grant(snap, Grant.DEVICE_CODE)
        endpoints = self.tokens.endpoints(snap)
        assert endpoints.device_authorization_url is not None
        form = client_form(snap) | {"scope": " ".join(endpoints.scopes + endpoints.sign_in_scopes)}
        status, body = await self._post(snap, endpoints.device_authorization_url, form)
        result = parse_device_response(status, body)
        if isinstance(result, EndpointError):
            raise FlowError(
                f"The provider refused to start a device sign-in for '{snap.name}': "
                f"{result.error}" + (f" ({result.description})" if result.description else ""),
                error=result.error,
                description=result.description,
            )
        now = utcnow()
        flow = OAuth2Flow(
            config_id=snap.config_id, kind=Grant.DEVICE_CODE.value,
            secret=self._box().encrypt(result.device_code), user_code=result.user_code,
            verification_uri=result.verification_uri_complete or result.verification_uri,
            interval_s=max(1, int(result.interval)), actor=actor,
            next_poll_at=now + timedelta(seconds=result.interval),
            expires_at=now + timedelta(seconds=result.expires_in),
        )  # fmt: skip
        await asyncio.to_thread(self._replace_device_flow, flow)
        return DeviceStart(
            snap.name, result.user_code, result.verification_uri,
            result.verification_uri_complete, flow.expires_at, flow.interval_s,
        )  # fmt: skip

    def _replace_device_flow(self, flow: OAuth2Flow) -> None:
        with self._sessions() as s:
            s.execute(
                update(OAuth2Flow)
                .where(
                    OAuth2Flow.config_id == flow.config_id,
                    OAuth2Flow.kind == Grant.DEVICE_CODE.value,
                    OAuth2Flow.used_at.is_(None),
                )
                .values(used_at=utcnow())
            )
            s.add(flow)
            s.commit()

    def _claim_poll(self, config_id: int) -> tuple[int, str, str, int] | None:
        """The device flow to poll now (id, device code, actor, interval), or None if it is
        too early (another poll is under way, or the interval has not passed)."""
        now = utcnow()
        with self._sessions() as s:
            flow = s.scalar(
                select(OAuth2Flow)
                .where(
                    OAuth2Flow.config_id == config_id,
                    OAuth2Flow.kind == Grant.DEVICE_CODE.value,
                    OAuth2Flow.used_at.is_(None),
                )
                .order_by(OAuth2Flow.id.desc())
            )
            if flow is None:
                raise FlowError("No device sign-in is under way; start one.", error="no_flow")
            if flow.expires_at <= now:
                flow.used_at = now
                s.commit()
                raise FlowError(
                    "The device code expired before anyone entered it. Start again.",
                    error="expired_token",
                )
            taken = s.execute(
                update(OAuth2Flow)
                .where(
                    OAuth2Flow.id == flow.id,
                    OAuth2Flow.used_at.is_(None),
                    (OAuth2Flow.next_poll_at.is_(None)) | (OAuth2Flow.next_poll_at <= now),
                )
                .values(next_poll_at=now + timedelta(seconds=flow.interval_s))
            ).rowcount  # type: ignore[attr-defined]
            s.commit()
            if not taken:
                return None
            code = self._box().decrypt(flow.secret, what="an OAuth2 device code")
            return flow.id, code, flow.actor, flow.interval_s

    def _end_device_flow(self, flow_id: int, *, slow_down: int = 0) -> None:
        with self._sessions() as s:
            flow = s.get(OAuth2Flow, flow_id)
            if flow is not None:
                if slow_down:
                    flow.interval_s += slow_down
                    flow.next_poll_at = utcnow() + timedelta(seconds=flow.interval_s)
                else:
                    flow.used_at = utcnow()
                s.commit()

    async def poll_device(self, name: str, /) -> Connected | None:
        """Ask once whether the person finished; None while pending. Raises FlowError."""
        snap = await asyncio.to_thread(self.store.load, name)
        claimed = await asyncio.to_thread(self._claim_poll, snap.config_id)
        if claimed is None:
            return None
        flow_id, device_code, actor, _interval = claimed
        form = client_form(snap) | {"grant_type": _DEVICE_GRANT, "device_code": device_code}
        try:
            grant = await self.tokens.request(snap, self.tokens.endpoints(snap).token_url, form)
        except TokenError as exc:
            if exc.error == "authorization_pending":
                return None
            if exc.error == "slow_down":
                await asyncio.to_thread(self._end_device_flow, flow_id, slow_down=5)
                return None
            if exc.transient:
                return None
            await asyncio.to_thread(self._end_device_flow, flow_id)
            raise FlowError(
                f"The device sign-in for '{snap.name}' ended: {exc.error}"
                + (f" ({exc.description})" if exc.description else ""),
                error=exc.error,
                description=exc.description,
            ) from None
        await asyncio.to_thread(self._end_device_flow, flow_id)
        return await self._connected(snap, grant, actor=actor)

    # -- client credentials -------------------------------------------------------------------

    async def connect_client_credentials(self, name: str, /, *, actor: str = "system") -> Connected:
        """Fetch a first app-only token, proving the client ID, secret and scope work."""
        snap = await asyncio.to_thread(self.store.load, name)
        if snap.spec.grant is not Grant.CLIENT_CREDENTIALS:
            raise _wrong_grant(snap, Grant.CLIENT_CREDENTIALS)
        endpoints = self.tokens.endpoints(snap)
        form = client_form(snap) | {
            "grant_type": "client_credentials", "scope": " ".join(endpoints.scopes)
        }  # fmt: skip
        grant = await self.tokens.request(snap, endpoints.token_url, form)
        return await self._connected(snap, grant, actor=actor)

    async def _post(self, snap: Snapshot, url: str, form: dict[str, str]) -> tuple[int, bytes]:
        try:
            return await post_form(
                url, form, policy=self.tokens.policy, ssl_context=self.tokens.ssl_context
            )
        except EndpointUnreachable as exc:
            raise TokenError(
                f"Could not reach the provider of '{snap.name}': {exc.message}",
                config=snap.name,
                error="network_error",
                description=exc.message,
                transient=exc.transient,
            ) from None
