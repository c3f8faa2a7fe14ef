"""What an inbound bounce does to the outbox: the sent message it reports becomes ``bounced``.

Only a notice that proves it is about mail postroom sent counts: it must return the
message's bounce token (see :mod:`postroom.outbox.bounce_tokens`) for the Message-ID it
reports. Any other notice — forged, or from before tokens — is stored with the reason it
was not believed, and the outbox is left alone.

Runs inside the transaction that stores the bounce, so the inbound record and the outbox
status change together.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.db.tables import OutboxMessage
from postroom.hmac_keys import HmacKeys
from postroom.inbound.bounces import Bounce
from postroom.inbound.schemas import BounceInfo
from postroom.inbound.text import clean
from postroom.outbox.bounce_tokens import HEADER, token_ok
from postroom.outbox.schemas import OutboxStatus

__all__ = ["bounce_info", "mark_outbox_bounced", "unproven"]

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


def mark_outbox_bounced(
    s: Session, bounce: Bounce, *, keys: HmacKeys | None
) -> tuple[int | None, str | None]:
    """Mark the sent outbox message that ``bounce`` reports as ``bounced``: its id, and
    why the notice was not believed (then nothing changes).

    ``last_error`` becomes the bounce's summary (recipient, status code, diagnostic) and
    ``last_code`` the SMTP reply code of the diagnostic when it has one. Only messages in
    status ``sent`` change: a notice cannot undo a failure or a cancellation. Runs in the
    caller's transaction.
    """
    refused = unproven(bounce, keys)
    if refused is not None or not bounce.original_message_id:
        return None, refused
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
        return None, None
    row.status = OutboxStatus.BOUNCED.value
    row.last_error = clean(bounce.summary, 2000)
    diagnostic = bounce.recipients[0].diagnostic if bounce.recipients else ""
    found = _SMTP_CODE.match(diagnostic)
    if found:
        row.last_code = int(found.group(1))
    return row.id, None


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
