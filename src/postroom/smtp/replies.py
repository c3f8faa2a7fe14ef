"""SMTP replies, classified (pure): what a delivery attempt's outcome means for the message."""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum

__all__ = ["Outcome", "Refusal", "SmtpReply", "classify", "mechanism_unusable", "rcpt_refusal"]


class SmtpReply(IntEnum):
    OK = 250
    SERVICE_NOT_AVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    AUTH_TEMPORARY_FAILURE = 454
    SYNTAX_ERROR = 500
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_MECHANISM_TOO_WEAK = 534
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


_MECHANISM_WORDS = ("mechanism", "authentication type", "auth type")
_UNUSABLE_WORDS = ("not supported", "unsupported", "unrecognized", "unknown", "not available",
                   "too weak", "not allowed", "invalid")  # fmt: skip


def mechanism_unusable(code: int, text: str) -> bool:
    """Does this reply to AUTH say the *mechanism* can't be used (try another), rather
    than that the credentials are wrong (stop: another try is another failed login)?

    504 (RFC 4954: unrecognized authentication type) and 534 (5.7.9: mechanism too weak)
    always do; any other permanent reply only when its text says so.
    """
    if code in (SmtpReply.PARAMETER_NOT_IMPLEMENTED, SmtpReply.AUTH_MECHANISM_TOO_WEAK):
        return True
    if code == SmtpReply.AUTH_FAILED or not 500 <= code < 600:
        return False
    lowered = text.lower()
    return any(w in lowered for w in _MECHANISM_WORDS) and any(
        w in lowered for w in _UNUSABLE_WORDS
    )


class Refusal(StrEnum):
    """What a refused RCPT TO is really about."""

    RECIPIENT = "recipient"
    #: the sender, reported at RCPT (Postfix's default ``smtpd_delay_reject = yes``)
    SENDER = "sender"
    #: relaying or the client refused to a client that did not sign in
    NEEDS_LOGIN = "needs_login"


# RFC 3463: X.1.7 bad sender's mailbox, X.1.8 bad sender's system address
_ENHANCED = re.compile(r"\s*[245]\.(\d{1,3})\.(\d{1,3})\b")
_SENDER_TEXT = re.compile(
    r"sender address rejected|not owned by (?:user|the authenticated)|sender (?:address )?"
    r"(?:is )?(?:rejected|refused|denied|blocked|not (?:allowed|permitted|authorized))",
    re.IGNORECASE,
)
_LOGIN_TEXT = re.compile(
    r"relay access denied|relay(?:ing)? not permitted|relaying denied|unable to relay|"
    r"client host rejected|authentication (?:is )?required|must (?:be )?authenticate",
    re.IGNORECASE,
)


def rcpt_refusal(code: int, text: str, *, signed_in: bool) -> Refusal:
    """Read a refused RCPT's enhanced status code and text, not only which command failed:
    Postfix refuses a foreign sender as ``553 5.7.1 <…>: Sender address rejected: not owned
    by user …`` in its reply to RCPT TO."""
    enhanced = _ENHANCED.match(text)
    if (enhanced is not None and enhanced.groups() in (("1", "7"), ("1", "8"))) or (
        _SENDER_TEXT.search(text)
    ):
        return Refusal.SENDER
    if not signed_in and (
        code == SmtpReply.AUTH_REQUIRED
        # X.7.x: security or policy status; to a client that did not sign in, that is
        # nearly always "sign in first" (Postfix's submission "Access denied", 5.7.57…)
        or (enhanced is not None and enhanced.group(1) == "7")
        or _LOGIN_TEXT.search(text)
    ):
        return Refusal.NEEDS_LOGIN
    return Refusal.RECIPIENT
