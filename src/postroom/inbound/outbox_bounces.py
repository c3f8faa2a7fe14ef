"""What an inbound bounce does to the outbox: the sent message it reports becomes ``bounced``.

Only a notice that proves it is about mail postroom sent counts: it must return the
message's bounce token (see :mod:`postroom.outbox.bounce_tokens`) for the Message-ID it
reports. Any other notice — forged, or from before tokens — is stored with the reason it
was not believed, and the outbox is left alone.

Runs inside the transaction that stores the bounce, so the inbound record and the outbox
status change together. A genuine notice for a message whose ``sent`` is not recorded yet
is held (``inbound_held_bounces``) and applied by the queue when it records ``sent``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.db.tables import OutboxMessage
from postroom.hmac_keys import HmacKeys
from postroom.inbound.bounces import Bounce
from postroom.inbound.schemas import BounceInfo
from postroom.inbound.tables import InboundHeldBounce, InboundMessage
from postroom.inbound.text import clean
from postroom.outbox.bounce_tokens import HEADER, token_ok
from postroom.outbox.schemas import OutboxStatus

__all__ = [
    "BounceOutcome",
    "apply_held",
    "bounce_info",
    "hold",
    "mark_outbox_bounced",
    "unproven",
]

_SMTP_CODE = re.compile(r"^\s*([245]\d\d)\b")


def unproven(bounce: Bounce, keys: HmacKeys | None) -> str | None:
    """Why ``bounce`` is not believed, or None when it carries a valid bounce token."""
    if not bounce.original_message_id:
        return "the notice names no Message-ID of a sent message"
    if not bounce.tokens:
        return f"the notice returns no {HEADER} token: it cannot be told apart from a forged one"
    for token in bounce.tokens:
        kid = token.partition(".")[0]
        if keys is not None and token_ok(token, bounce.original_message_id, keys.all(need=kid)):
            return None
    return f"the notice's {HEADER} token does not match the message it reports"


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    """What a stored notice did to the outbox."""

    #: the outbox message marked ``bounced`` now
    outbox_id: int | None = None
    #: why the notice was not believed (then nothing changes)
    refused: str | None = None
    #: the outbox message whose ``sent`` is not recorded yet: hold the notice for it
    hold_for: int | None = None
    summary: str | None = None
    code: int | None = None


# a notice for one of these is held: the send it reports is not recorded yet (a relay
# can bounce before the worker's batch commits, or a send whose reply was lost is retried)
_NOT_YET_SENT = (
    OutboxStatus.QUEUED.value,
    OutboxStatus.SENDING.value,
    OutboxStatus.RETRYING.value,
)


def mark_outbox_bounced(s: Session, bounce: Bounce, *, keys: HmacKeys | None) -> BounceOutcome:
    """Mark the sent outbox message that ``bounce`` reports as ``bounced``, or say which
    not-yet-sent message to hold the notice for (see :func:`hold`).

    ``last_error`` becomes the bounce's summary (recipient, status code, diagnostic) and
    ``last_code`` the SMTP reply code of the diagnostic when it has one. A notice cannot
    undo a failure or a cancellation. Runs in the caller's transaction.
    """
    refused = unproven(bounce, keys)
    if refused is not None or not bounce.original_message_id:
        return BounceOutcome(refused=refused)
    # Locked, so the queue's ``sent`` write and this check take turns: either the queue
    # committed first (seen here as sent) or it waits and then finds the held notice.
    row = s.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.message_id == bounce.original_message_id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
        .with_for_update()
    )
    if row is None:
        return BounceOutcome()
    summary = clean(bounce.summary, 2000)
    diagnostic = bounce.recipients[0].diagnostic if bounce.recipients else ""
    found = _SMTP_CODE.match(diagnostic)
    code = int(found.group(1)) if found else None
    if row.status in _NOT_YET_SENT:
        return BounceOutcome(hold_for=row.id, summary=summary, code=code)
    if row.status != OutboxStatus.SENT.value:
        return BounceOutcome()
    _bounce(row, summary, code)
    return BounceOutcome(outbox_id=row.id)


def _bounce(row: OutboxMessage, summary: str | None, code: int | None) -> None:
    row.status = OutboxStatus.BOUNCED.value
    row.last_error = summary
    if code is not None:
        row.last_code = code


def hold(s: Session, inbound_id: int, outcome: BounceOutcome) -> None:
    """Keep the notice stored as ``inbound_id`` until its message's ``sent`` is recorded."""
    if outcome.hold_for is not None:
        s.add(
            InboundHeldBounce(
                inbound_id=inbound_id,
                outbox_id=outcome.hold_for,
                summary=outcome.summary,
                code=outcome.code,
            )
        )


def apply_held(s: Session, sent: Sequence[int]) -> int:
    """Apply the notices held for the outbox messages ``sent`` just became (the queue calls
    this in the transaction that records them); returns how many messages it bounced.

    Costs one read of an almost always empty table when nothing is held."""
    if not sent or s.scalar(select(InboundHeldBounce.inbound_id).limit(1)) is None:
        return 0
    held = list(
        s.scalars(
            select(InboundHeldBounce)
            .where(InboundHeldBounce.outbox_id.in_(sent))
            .order_by(InboundHeldBounce.inbound_id)
        )
    )
    bounced = 0
    for h in held:
        row = s.get(OutboxMessage, h.outbox_id)
        if row is not None and row.status == OutboxStatus.SENT.value:
            _bounce(row, h.summary, h.code)
            bounced += 1
            notice = s.get(InboundMessage, h.inbound_id)
            if notice is not None and notice.bounce is not None:
                notice.bounce = {**notice.bounce, "outbox_id": row.id}  # a new value: saved
        s.delete(h)
    s.flush()
    return bounced


def bounce_info(bounce: Bounce, outbox_id: int | None, *, refused: str | None = None) -> BounceInfo:
    """What subscribers and listings show of a bounce (storable text, at most 50 recipients)."""
    return BounceInfo(
        authenticated=refused is None,
        refused=refused,
        original_message_id=clean(bounce.original_message_id, 998),
        summary=clean(bounce.summary, 2000) or "",
        permanent=bounce.permanent,
        standard=bounce.standard,
        recipients=[
            {
                "recipient": clean(r.recipient, 320) or "",
                "action": clean(r.action, 50) or "",
                "status": clean(r.status, 50) or "",
                "diagnostic": clean(r.diagnostic, 1000) or "",
            }
            for r in bounce.recipients[:50]
        ],
        outbox_id=outbox_id,
    )
