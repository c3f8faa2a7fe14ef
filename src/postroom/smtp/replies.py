"""SMTP replies, classified (pure): what a delivery attempt's outcome means for the message."""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["Outcome", "SmtpReply", "classify"]


class SmtpReply(IntEnum):
    OK = 250
    SERVICE_NOT_AVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    AUTH_TEMPORARY_FAILURE = 454
    SYNTAX_ERROR = 500
    AUTH_REQUIRED = 530
    AUTH_FAILED = 535
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    EXCEEDED_STORAGE = 552
    MAILBOX_NAME_INVALID = 553
    TRANSACTION_FAILED = 554


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # retry later: 4xx, network faults, timeouts
    PERMANENT = "permanent"  # give up now: 5xx


def classify(code: int | None) -> Outcome:
    """``None`` means no reply at all (a network fault): transient."""
    if code is None:
        return Outcome.TRANSIENT
    if 200 <= code < 300:
        return Outcome.SENT
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT
