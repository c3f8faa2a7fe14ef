"""The OAuth2 lifecycle of one installation: tokens, sign-ins, status.

::

    lifecycle = lifecycle_for(app)          # one per Postroom; also serves SMTP/IMAP sign-ins
    start = await lifecycle.flows.start_authorization("m365", redirect_uri=...)
    lifecycle.status("m365")                # OAuth2Status: account, scopes, expiry, consent
    token = await lifecycle.tokens.access_token("m365")
"""

from __future__ import annotations

import ssl
import weakref
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import utcnow
from postroom.net.policy import NetPolicy
from postroom.oauth2 import access
from postroom.oauth2.flows import Flows
from postroom.oauth2.schemas import OAuth2LastError, OAuth2Status
from postroom.oauth2.store import Snapshot, TokenStore, rotate_token_secrets
from postroom.oauth2.tables import TokenState
from postroom.oauth2.tokens import TokenService
from postroom.secrets import SecretBox

__all__ = ["OAuth2Lifecycle", "lifecycle_for", "rotate_token_secrets"]


class Installation(Protocol):
    """What the lifecycle needs of a :class:`postroom.Postroom` (its box may be replaced)."""

    sessions: sessionmaker[Session]
    box: SecretBox
    policy: NetPolicy


class OAuth2Lifecycle:
    def __init__(self, app: Installation, *, ssl_context: ssl.SSLContext | None = None) -> None:
        # The box is looked up at each use: key rotation replaces the installation's box.
        def box() -> SecretBox:
            return app.box

        self.store = TokenStore(app.sessions, box)
        self.tokens = TokenService(self.store, policy=app.policy, ssl_context=ssl_context)
        self.flows = Flows(app.sessions, box, self.store, self.tokens)

    def status(self, name: str, /) -> OAuth2Status:
        """Where configuration ``name`` stands (raises NotFound)."""
        snap = self.store.load(name)
        return build_status(snap, self.store.paused_profiles(snap.config_id))


def _state(snap: Snapshot, now: datetime) -> str:
    if snap.state == TokenState.CONSENT_NEEDED:
        return "consent_needed"
    if not snap.row or (snap.spec.grant.value != "client_credentials" and not snap.refresh_token):
        return "not_connected"
    if snap.backoff_until is not None and snap.backoff_until > now:
        return "backing_off"
    return "connected"


def build_status(snap: Snapshot, paused: list[str]) -> OAuth2Status:
    now = utcnow()
    state = _state(snap, now)
    last: dict[str, Any] = snap.last_error or {}
    return OAuth2Status(
        name=snap.name,
        provider=snap.spec.provider,
        grant=snap.spec.grant,
        state=state,
        consent_needed=state in ("consent_needed", "not_connected"),
        account=snap.account,
        username=snap.spec.username,
        scopes=list(snap.scopes),
        access_token_expires_at=snap.access_expires_at if snap.access_token else None,
        last_refresh_at=snap.last_refresh_at,
        connected_at=snap.connected_at,
        last_error=(
            OAuth2LastError(
                error=str(last.get("error")),
                error_description=last.get("error_description") or None,
                at=datetime.fromisoformat(last["at"]) if last.get("at") else None,
            )
            if last.get("error")
            else None
        ),
        retry_after=snap.backoff_until if state == "backing_off" else None,
        paused_profiles=paused,
    )


_lifecycles: weakref.WeakKeyDictionary[Any, OAuth2Lifecycle] = weakref.WeakKeyDictionary()


def lifecycle_for(app: Installation) -> OAuth2Lifecycle:
    """The lifecycle of ``app`` (created once), registered as the process's token source."""
    lifecycle = _lifecycles.get(app)
    if lifecycle is None:
        lifecycle = _lifecycles[app] = OAuth2Lifecycle(app)
    access.install(lifecycle.tokens)
    return lifecycle
