"""Inbound mail: states, configuration and the shapes every surface shows (pure).

- :class:`InboundConfig`: the knobs of the sync (intervals, limits, retries).
- :class:`InboundEvent`: what subscribers receive (webhook body, callback argument).
- :class:`MailboxHealth`: a profile's listener as any process can read it.
- :func:`next_retry` and :func:`effective_state`: pure decisions, unit-tested alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from postroom.imap.parse import Limits

if TYPE_CHECKING:  # the IMAP adapter (IMAPClient, sockets) is not needed to read settings
    from postroom.imap.client import ImapLimits

__all__ = [
    "AttachmentInfo",
    "BounceInfo",
    "InboundConfig",
    "InboundEvent",
    "InboundStatus",
    "InboundSummary",
    "ListenerState",
    "MailboxHealth",
    "WebhookCreated",
    "WebhookRead",
    "effective_state",
    "next_retry",
]


class ListenerState(StrEnum):
    """What a mailbox's listener is doing, as stored for every process to read."""

    STARTING = "starting"  # connecting, signing in, selecting the folder
    IDLE = "idle"  # connected, waiting for news in IDLE
    POLLING = "polling"  # connected, checking every poll interval
    BACKOFF = "backoff"  # the connection failed; waiting to reconnect
    ERROR = "error"  # the settings do not work (auth, folder, secret); retrying slowly
    STOPPED = "stopped"  # no listener (stopped cleanly, or never started)


class InboundStatus(StrEnum):
    """Where one inbound message stands."""

    RECEIVED = "received"  # stored; some subscriber has not taken it yet
    DELIVERED = "delivered"  # every subscriber took it; the processed action is pending
    PROCESSED = "processed"  # the processed action ran on the server
    # quarantined: over a limit, unparseable or unstorable; stored with the reason only,
    # left untouched on the server, and the sync moves past it
    REJECTED = "rejected"
    FAILED = "failed"  # subscribers kept failing until the retry deadline


@dataclass(frozen=True)
class InboundConfig:
    """Tuning of the sync; the defaults suit production, tests shorten the intervals.

    ``idle_renew_s``: IDLE is re-issued this often, well within the 29 minutes after which
    servers and firewalls drop an idle connection (RFC 2177). ``poll_interval_s`` overrides
    every profile's ``poll_interval_s`` when set. ``lease_s``: a listener that stops
    renewing its lease for this long is considered gone and another process takes over;
    it also bounds how stale a live listener's health can look.
    """

    idle_renew_s: float = 600.0
    poll_interval_s: float | None = None
    lease_s: float = 30.0
    rescan_s: float = 30.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    batch: int = 50
    batch_bytes: int = 16 * 1024 * 1024
    limits: Limits = field(default_factory=Limits)
    imap_limits: ImapLimits | None = None  # None: ImapLimits() defaults
    retry_initial_s: float = 10.0
    retry_max_s: float = 3600.0
    retry_deadline_s: float = 3 * 24 * 3600.0
    webhook_timeout_s: float = 10.0


def next_retry(attempts: int, now: datetime, config: InboundConfig) -> datetime:
    """When a message whose subscribers failed ``attempts`` times is tried again.

    Exponential from ``retry_initial_s``, capped at ``retry_max_s``, with ±20 % jitter so
    that many failed messages do not all come back at once.
    """
    base = min(config.retry_initial_s * 2 ** max(attempts - 1, 0), config.retry_max_s)
    return now + timedelta(seconds=base * random.uniform(0.8, 1.2))


def effective_state(
    state: str, state_at: datetime | None, now: datetime, *, stale_after_s: float
) -> tuple[ListenerState, bool]:
    """The state to show and whether it is stale.

    A listener refreshes ``state_at`` at least every third of its lease; one that has not
    for ``stale_after_s`` died without saying so, and shows as ``error`` rather than as
    the active state it last wrote.
    """
    try:
        shown = ListenerState(state)
    except ValueError:
        shown = ListenerState.ERROR
    if shown is ListenerState.STOPPED:
        return shown, False
    if state_at is None or (now - state_at).total_seconds() > stale_after_s:
        return ListenerState.ERROR, True
    return shown, False


class AttachmentInfo(BaseModel):
    id: int
    filename: str | None
    content_type: str
    size: int
    stored: bool


class BounceInfo(BaseModel):
    """A delivery failure notice; ``outbox_id`` is the sent message it matched, if any."""

    original_message_id: str | None
    summary: str
    permanent: bool
    standard: bool
    recipients: list[dict[str, str]]
    outbox_id: int | None = None
    #: whether the notice proved it is about mail postroom sent (its bounce token); when
    #: not, ``refused`` says why and no outbox message was marked
    authenticated: bool = False
    refused: str | None = None


class InboundEvent(BaseModel):
    """One received message, as webhooks (JSON body) and callbacks receive it."""

    type: Literal["inbound.message"] = "inbound.message"
    id: int
    profile: str
    folder: str
    uid: int
    received_at: datetime
    message_id: str | None
    subject: str
    from_address: str | None
    to: list[str]
    cc: list[str]
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    size: int
    attachments: list[AttachmentInfo]
    bounce: BounceInfo | None = None


class InboundSummary(BaseModel):
    """A stored message in listings."""

    id: int
    profile: str
    folder: str
    uid: int
    status: InboundStatus
    message_id: str | None
    subject: str
    from_address: str | None
    size: int
    received_at: datetime
    processed_at: datetime | None
    attempts: int
    reject_reason: str | None
    last_error: str | None
    bounce: BounceInfo | None


class MailboxHealth(BaseModel):
    """A receiving profile's listener, read from the database (any process may ask)."""

    profile: str
    profile_id: int
    enabled: bool
    folder: str
    state: ListenerState
    stale: bool
    listener: str | None
    state_at: datetime | None
    last_poll_at: datetime | None
    last_error: str | None
    last_error_code: str | None
    last_error_at: datetime | None
    uidvalidity: int | None
    last_uid: int
    pending: int
    #: messages rejected (quarantined): over a limit, unparseable or unstorable; each is
    #: listed with its reason and UID (status ``rejected``) and left untouched on the server
    quarantined: int = 0
    use_idle: bool
    poll_interval_s: float


class WebhookRead(BaseModel):
    """A webhook subscription; the signing secret is never shown again after creation."""

    id: int
    name: str
    profile: str | None
    url: str
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookRead):
    """Returned once by ``add``: ``secret`` signs every delivery (keep it)."""

    secret: str
