"""What an inbound bounce does to the outbox: the sent message it reports becomes ``bounced``.

Runs inside the transaction that stores the bounce, so the inbound record and the outbox
status change together.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.db.tables import OutboxMessage
from postroom.inbound.bounces import Bounce
from postroom.inbound.schemas import BounceInfo
from postroom.inbound.text import clean
from postroom.outbox.schemas import OutboxStatus

__all__ = ["bounce_info", "mark_outbox_bounced"]

_SMTP_CODE = re.compile(r"^\s*([245]\d\d)\b")


def mark_outbox_bounced(s: Session, bounce: Bounce) -> int | None:
    """Mark the sent outbox message that ``bounce`` reports as ``bounced``; returns its id.

    ``last_error`` becomes the bounce's summary (recipient, status code, diagnostic) and
    ``last_code`` the SMTP reply code of the diagnostic when it has one. Only messages in
    status ``sent`` change: a notice cannot undo a failure or a cancellation. Runs in the
    caller's transaction.
    """
    if not bounce.original_message_id:
        return None
    row = s.scalar(
        select(OutboxMessage)
        .where(
            OutboxMessage.message_id == bounce.original_message_id,
            OutboxMessage.status == OutboxStatus.SENT.value,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    row.status = OutboxStatus.BOUNCED.value
    row.last_error = clean(bounce.summary, 2000)
    diagnostic = bounce.recipients[0].diagnostic if bounce.recipients else ""
    found = _SMTP_CODE.match(diagnostic)
    if found:
        row.last_code = int(found.group(1))
    return row.id


def bounce_info(bounce: Bounce, outbox_id: int | None) -> BounceInfo:
    """What subscribers and listings show of a bounce (storable text, at most 50 recipients)."""
    return BounceInfo(
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
