"""Database tables (SQLAlchemy 2, ``Mapped[...]``). Secrets live only as ciphertext columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Admin",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Binding",
    "OAuth2Config",
    "Profile",
    "SystemSetting",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # casefolded name: uniqueness is case-insensitive on every backend
    name_key: Mapped[str] = mapped_column(String(100), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    # the ProfileSpec without secrets, as JSON
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    smtp_password: Mapped[str | None] = mapped_column(Text, default=None)
    imap_password: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(default=None)

    __mapper_args__ = {"version_id_col": version}


class SystemSetting(Base):
    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


class Binding(Base):
    __tablename__ = "bindings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process: Mapped[str] = mapped_column(String(200))
    process_key: Mapped[str] = mapped_column(String(200), unique=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuth2Config(Base):
    __tablename__ = "oauth2_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    client_secret: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __mapper_args__ = {"version_id_col": version}


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    target_type: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_audit_log_at", "at"),)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(20), index=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    # what a sender key may send as (names; None = no limit), see accounts.SenderScope
    processes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    profiles: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    username_key: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="admin")
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a disabled account cannot sign in or reset its password; its sessions ended with it
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)


def _status_is_any_of(states: tuple[str, ...]) -> str:
    """A partial index's condition, and the queries' that must match it word for word.
    OR-ed comparisons rather than ``IN (…)``: SQLite evaluates the condition at every
    update of ``status`` and builds a temporary b-tree for an ``IN`` list each time
    (docs/decisions/0007; migration 0011)."""
    return "(" + " OR ".join(f"status = '{s}'" for s in states) + ")"


READY_CONDITION = _status_is_any_of(("queued", "retrying"))  # outbox.schemas.DUE_STATES
# the states that need someone's attention: rare, so a partial index of them stays small
ATTENTION_STATES = ("retrying", "failed", "bounced", "cancelled")
ATTENTION_CONDITION = _status_is_any_of(ATTENTION_STATES)


class OutboxMessage(Base):
    """One message to deliver; its bytes, composed once at enqueue, are in :class:`OutboxBody`."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), default=None
    )
    profile_name: Mapped[str] = mapped_column(String(100))
    process: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    message_id: Mapped[str] = mapped_column(String(250))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    envelope_from: Mapped[str] = mapped_column(String(254))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    last_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    recipient_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # the API key that queued it (None: the platform's own mail, the Python API); a sender
    # key reads only its own messages
    created_by: Mapped[int | None] = mapped_column(Integer, default=None)

    # Every index here is written when a message is stored, and each one holding
    # ``status`` again at each state change: kept to what the queries need
    # (docs/decisions/0006-outbox-storage.md).
    __table_args__ = (
        # claims walk this in order and stop after a batch, however long the queue; it
        # holds all a claim looks at, so the messages themselves are not read
        Index(
            "ix_outbox_ready",
            text("priority DESC"),
            "due_at",
            "profile_id",
            "status",
            sqlite_where=text(READY_CONDITION),
            postgresql_where=text(READY_CONDITION),
        ),
        # per profile: expired leases (profile by profile), pausing, counts by status
        Index("ix_outbox_profile_status", "profile_id", "status", "lease_until"),
        # listing the rare states; a message that is simply sent never enters it
        Index(
            "ix_outbox_attention",
            "status",
            "id",
            sqlite_where=text(ATTENTION_CONDITION),
            postgresql_where=text(ATTENTION_CONDITION),
        ),
        Index("ix_outbox_created", "created_at"),
        # a sender key's own messages; partial: mail queued without a key adds no entry
        Index(
            "ix_outbox_created_by",
            "created_by",
            "id",
            sqlite_where=text("created_by IS NOT NULL"),
            postgresql_where=text("created_by IS NOT NULL"),
        ),
    )


class OutboxBody(Base):
    """The complete message as composed at enqueue: written once, read by the worker.

    Kept apart from :class:`OutboxMessage` so that the state changes of a message
    (claimed, sent, retrying) rewrite a small row, not its body.
    """

    __tablename__ = "outbox_bodies"

    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxAttempt(Base):
    """One delivery attempt of a message, with the server's reply."""

    __tablename__ = "outbox_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    worker: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(20))
    code: Mapped[int | None] = mapped_column(Integer, default=None)
    text: Mapped[str] = mapped_column(Text, default="")
    recipient_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    duration_ms: Mapped[float] = mapped_column(default=0.0)


class RateWindow(Base):
    """Messages sent per profile per minute, shared by every worker (rate_limit_per_minute)."""

    __tablename__ = "rate_windows"

    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ConnectionSlot(Base):
    """A lease on one of a profile's ``max_connections``, shared by every worker."""

    __tablename__ = "connection_slots"

    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
