"""Per-profile health of inbound mail, read from the database by any process.

A listener writes its state with a timestamp and refreshes that timestamp with its lease
(every third of ``lease_s``). A state not refreshed for twice the poll interval (and at
least twice the lease) belongs to a listener that died: it shows as ``error`` with
``stale`` set, never as the active state it last wrote.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import Profile, utcnow
from postroom.inbound.schemas import (
    InboundConfig,
    InboundStatus,
    ListenerState,
    MailboxHealth,
    effective_state,
)
from postroom.inbound.tables import InboundMailbox, InboundMessage
from postroom.profiles.service import name_key

__all__ = ["read_health"]

_PENDING = (InboundStatus.RECEIVED.value, InboundStatus.DELIVERED.value)


def read_health(
    sessions: sessionmaker[Session],
    config: InboundConfig,
    *,
    profile: str | None = None,
    now: datetime | None = None,
) -> list[MailboxHealth]:
    """Health of every profile that receives mail (or of ``profile``), by name."""
    now = now or utcnow()
    with sessions() as s:
        query = select(Profile).order_by(func.lower(Profile.name))
        if profile is not None:
            query = query.where(Profile.name_key == name_key(profile))
        out: list[MailboxHealth] = []
        for p in s.scalars(query):
            imap = (p.spec or {}).get("imap")
            if not imap:
                continue
            folder = str(imap.get("folder") or "INBOX")
            poll = float(config.poll_interval_s or imap.get("poll_interval_s") or 60)
            row = s.scalar(
                select(InboundMailbox).where(
                    InboundMailbox.profile_id == p.id, InboundMailbox.folder == folder
                )
            )
            pending = s.scalar(
                select(func.count(InboundMessage.id)).where(
                    InboundMessage.profile_id == p.id, InboundMessage.status.in_(_PENDING)
                )
            )
            quarantined = s.scalar(
                select(func.count(InboundMessage.id)).where(
                    InboundMessage.profile_id == p.id,
                    InboundMessage.status == InboundStatus.REJECTED.value,
                )
            )
            state, stale = ListenerState.STOPPED, False
            if row is not None:
                state, stale = effective_state(
                    row.state,
                    row.state_at,
                    now,
                    stale_after_s=max(2 * poll, 2 * config.lease_s),
                )
            last_error = row.last_error if row else None
            if stale:
                seen = f"{row.state_at:%Y-%m-%d %H:%M:%S} UTC" if row and row.state_at else "never"
                last_error = (
                    f"The listener stopped reporting (last seen {seen}, state "
                    f"'{row.state if row else '?'}'): its process is gone or hangs."
                )
            out.append(
                MailboxHealth(
                    profile=p.name,
                    profile_id=p.id,
                    enabled=p.enabled,
                    folder=folder,
                    state=state,
                    stale=stale,
                    listener=row.lease_owner if row else None,
                    state_at=row.state_at if row else None,
                    last_poll_at=row.last_poll_at if row else None,
                    last_error=last_error,
                    last_error_code=row.last_error_code
                    if row and not stale
                    else ("listener_stale" if stale else None),
                    last_error_at=row.last_error_at if row else None,
                    uidvalidity=row.uidvalidity if row else None,
                    last_uid=row.last_uid if row else 0,
                    pending=int(pending or 0),
                    quarantined=int(quarantined or 0),
                    use_idle=bool(imap.get("use_idle", True)),
                    poll_interval_s=poll,
                )
            )
        return out
