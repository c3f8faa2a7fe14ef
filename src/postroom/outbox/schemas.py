"""The outbox's states and the shapes every surface shows (pure)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

__all__ = ["AttemptRead", "OutboxRead", "OutboxStatus", "OutboxSummary"]


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    BOUNCED = "bounced"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (
            OutboxStatus.SENT,
            OutboxStatus.FAILED,
            OutboxStatus.BOUNCED,
            OutboxStatus.CANCELLED,
        )


DUE_STATES = (OutboxStatus.QUEUED.value, OutboxStatus.RETRYING.value)


class AttemptRead(BaseModel):
    at: datetime
    worker: str
    outcome: str
    code: int | None
    text: str
    recipient_results: dict[str, Any] | None
    duration_ms: float


class OutboxSummary(BaseModel):
    id: int
    status: OutboxStatus
    profile: str
    process: str | None
    subject: str
    recipients: list[str]
    message_id: str
    attempts: int
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
    last_code: int | None
    last_error: str | None


class OutboxRead(OutboxSummary):
    deadline_at: datetime
    recipient_results: dict[str, Any] | None
    history: list[AttemptRead]
