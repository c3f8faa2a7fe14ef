"""Tables of the OAuth2 lifecycle: tokens per configuration, sign-ins under way, paused profiles.

Tokens and code verifiers are stored only as ciphertext (the installation's SecretBox).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from postroom.db.tables import Base, utcnow

__all__ = ["OAuth2Flow", "OAuth2Pause", "OAuth2Token", "TokenState"]


class TokenState:
    CONNECTED = "connected"
    CONSENT_NEEDED = "consent_needed"


class OAuth2Token(Base):
    """The tokens of one configuration, shared by every process of the installation.

    ``version`` is bumped by every write of new tokens (compare-and-swap); ``lease_owner`` and
    ``lease_until`` let one process at a time call the token endpoint. A lease expires on its
    own, so a process killed mid-refresh blocks the others for at most the lease time.
    """

    __tablename__ = "oauth2_tokens"

    config_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_configs.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(20), default=TokenState.CONNECTED)
    account: Mapped[str | None] = mapped_column(String(320), default=None)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    refresh_token: Mapped[str | None] = mapped_column(Text, default=None)
    access_token: Mapped[str | None] = mapped_column(Text, default=None)
    access_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    connected_at: Mapped[datetime | None] = mapped_column(default=None)
    last_refresh_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    backoff_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuth2Flow(Base):
    """A sign-in under way: browser (authorization code + PKCE) or device code.

    ``state_hash`` is the SHA-256 of the ``state`` sent to the provider; ``secret`` holds the
    encrypted PKCE verifier or device code. A flow is used once (``used_at``) and expires.
    """

    __tablename__ = "oauth2_flows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_configs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    secret: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str | None] = mapped_column(Text, default=None)
    user_code: Mapped[str | None] = mapped_column(String(50), default=None)
    verification_uri: Mapped[str | None] = mapped_column(Text, default=None)
    interval_s: Mapped[int] = mapped_column(Integer, default=5)
    next_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuth2Pause(Base):
    """A profile whose deliveries wait for its OAuth2 configuration to be reconnected.

    The outbox claims no message of a paused profile; the messages stay queued.
    """

    __tablename__ = "oauth2_paused_profiles"

    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    config_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_configs.id", ondelete="CASCADE"), index=True
    )
    since: Mapped[datetime] = mapped_column(default=utcnow)
