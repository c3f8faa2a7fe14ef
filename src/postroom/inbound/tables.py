"""Tables of inbound mail: mailboxes (sync state, lease, health), messages, attachments,
webhook subscriptions and the delivery log.

They live on ``postroom.db.tables.Base`` so one metadata (and one Alembic history, branch
``0004_inbound``) covers them; importing this module registers them. IMAP UIDs and
UIDVALIDITY are unsigned 32-bit numbers, hence ``BigInteger``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from postroom.db.tables import Base, utcnow

__all__ = [
    "InboundAttachment",
    "InboundHeldBounce",
    "InboundDelivery",
    "InboundMailbox",
    "InboundMessage",
    "InboundWebhook",
]


class InboundMailbox(Base):
    """One synced folder of a profile: where the sync stands, who runs it, how it is doing.

    ``lease_owner``/``lease_until``: the one listener allowed to sync this folder; another
    process takes over once the lease has expired. ``state``/``state_at`` are written by
    the lease holder only and refreshed with the lease, so a stale ``state_at`` means the
    listener died.
    """

    __tablename__ = "inbound_mailboxes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(120), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[str] = mapped_column(String(20), default="stopped")
    state_at: Mapped[datetime | None] = mapped_column(default=None)
    last_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_code: Mapped[str | None] = mapped_column(String(50), default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (UniqueConstraint("profile_id", "folder", name="uq_inbound_mailbox"),)


class InboundMessage(Base):
    """One received message (or a rejected one: ``status`` rejected, ``reject_reason``)."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), default=None
    )
    profile_name: Mapped[str] = mapped_column(String(100))
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    reject_reason: Mapped[str | None] = mapped_column(Text, default=None)
    message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str | None] = mapped_column(String(320), default=None)
    to: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc: Mapped[list[str]] = mapped_column(JSON, default=list)
    date: Mapped[datetime | None] = mapped_column(default=None)
    in_reply_to: Mapped[str | None] = mapped_column(Text, default=None)
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    bounce: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (
        # a second listener racing a lost lease cannot store the same message twice
        UniqueConstraint("profile_id", "folder", "uidvalidity", "uid", name="uq_inbound_uid"),
        Index("ix_inbound_dedupe", "profile_id", "message_id"),
        Index("ix_inbound_sha256", "profile_id", "sha256"),
        Index("ix_inbound_due", "status", "next_attempt_at"),
        Index("ix_inbound_received", "received_at"),
    )


class InboundAttachment(Base):
    """An attachment's metadata; ``content`` only when within the configured size."""

    __tablename__ = "inbound_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(Text, default=None)
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    stored: Mapped[bool] = mapped_column(default=False)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class InboundWebhook(Base):
    """A stored webhook subscription; ``secret`` is ciphertext (the HMAC signing key)."""

    __tablename__ = "inbound_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100), unique=True)
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), default=None
    )
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundDelivery(Base):
    """One attempt to hand a message to one subscriber (``webhook:<id>``/``callback:<name>``)."""

    __tablename__ = "inbound_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), index=True
    )
    subscriber: Mapped[str] = mapped_column(String(250))
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_webhooks.id", ondelete="SET NULL"), default=None
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[float] = mapped_column(default=0.0)


class InboundHeldBounce(Base):
    """A genuine bounce notice that arrived before the send it reports was recorded.

    The relay can answer 250 and bounce at once, and the listener store the notice before
    the worker's batch commits ``sent``: the notice waits here and the queue applies it in
    the transaction that records ``sent`` (:func:`postroom.inbound.outbox_bounces.apply_held`).
    """

    __tablename__ = "inbound_held_bounces"

    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), primary_key=True
    )
    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="CASCADE"), index=True
    )
    #: what the outbox message's last_error and last_code become
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    code: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
