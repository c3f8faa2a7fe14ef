"""Tables of actionable emails: requests, their per-recipient messages, signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from postroom.db.tables import Base, utcnow

__all__ = ["ActionKey", "ActionMessage", "ActionReply", "ActionRequest"]


class ActionRequest(Base):
    __tablename__ = "action_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    process: Mapped[str] = mapped_column(String(200))
    profile_name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[str]] = mapped_column(JSON)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decision: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_by: Mapped[str | None] = mapped_column(String(254), default=None)
    decided_via: Mapped[str | None] = mapped_column(String(20), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_status: Mapped[str | None] = mapped_column(Text, default=None)
    #: signs this action's webhook (encrypted); shown once, to the action's creator
    webhook_secret: Mapped[str | None] = mapped_column(Text, default=None)
    #: for a decision by reply: the receiving server's Authentication-Results verdict
    decided_auth: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    # the API key that created it (None: the Python API); a sender key reads only its own
    created_by: Mapped[int | None] = mapped_column(Integer, default=None)


class ActionMessage(Base):
    """The request mail to one recipient (its Message-ID threads replies to the request)."""

    __tablename__ = "action_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[str] = mapped_column(
        ForeignKey("action_requests.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(254))
    message_id: Mapped[str] = mapped_column(String(250), index=True)
    outbox_id: Mapped[int] = mapped_column(Integer)
    #: SHA-256 of the token in this recipient's reply address (None: sent before tokens)
    reply_token_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)


class ActionReply(Base):
    """A reply to a request: the one that decided, or one refused (and why)."""

    __tablename__ = "action_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[str] = mapped_column(
        ForeignKey("action_requests.id", ondelete="CASCADE"), index=True
    )
    inbound_id: Mapped[int | None] = mapped_column(Integer, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    from_address: Mapped[str | None] = mapped_column(String(320), default=None)
    outcome: Mapped[str] = mapped_column(String(20))  # decided | refused | late
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    authentication: Mapped[str] = mapped_column(Text, default="")


class ActionKey(Base):
    """HMAC keys for action links, encrypted with the installation's secret keys."""

    __tablename__ = "action_keys"

    kid: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
