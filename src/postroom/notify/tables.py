"""Tables of notifications: template versions, subscriptions, events, deliveries, digests.

They live on ``postroom.db.tables.Base`` so one metadata (and one Alembic history, branch
``0003_notify``) covers them; importing this module registers them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from postroom.db.tables import Base, utcnow

__all__ = ["DigestRun", "NotifyDelivery", "NotifyEvent", "Subscription", "TemplateVersion"]


class TemplateVersion(Base):
    """One saved version of a template; the newest row per name is the template.

    Saving inserts the next version number, so two admins saving from the same version
    collide on the unique (name, version) and the second gets a stale-version error.
    Deleting inserts a ``deleted`` row: history stays, and a deleted override of a
    built-in falls back to the shipped default.
    """

    __tablename__ = "notify_template_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text, default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    sample_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("name", "version", name="uq_notify_template_version"),)


class Subscription(Base):
    """One recipient of the events that match; immediate, or summarized when ``schedule`` is set."""

    __tablename__ = "notify_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(200))
    process: Mapped[str | None] = mapped_column(String(200), default=None)
    address: Mapped[str] = mapped_column(String(400))
    template: Mapped[str] = mapped_column(String(100))
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    schedule: Mapped[str | None] = mapped_column(String(100), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_empty: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    # part of the unsubscribe MAC: a token dies with its subscription
    token_nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class NotifyEvent(Base):
    """One ``notify()`` call."""

    __tablename__ = "notify_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(200))
    process: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_notify_events_created", "created_at"),)


class DigestRun(Base):
    """One period of one summary subscription. The unique (subscription, period_start),
    inserted in the transaction that enqueues the summary, makes it exactly once."""

    __tablename__ = "notify_digests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("notify_subscriptions.id", ondelete="CASCADE")
    )
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(20))
    events: Mapped[int] = mapped_column(Integer, default=0)
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="SET NULL"), default=None
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start", name="uq_notify_digest_period"),
    )


class NotifyDelivery(Base):
    """What one event did for one subscription: queued, failed (with why), or collected."""

    __tablename__ = "notify_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("notify_events.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("notify_subscriptions.id", ondelete="SET NULL"), default=None
    )
    address: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(20))
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="SET NULL"), default=None
    )
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("notify_digests.id", ondelete="SET NULL"), default=None
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_notify_deliveries_collect", "subscription_id", "status", "created_at"),
    )
