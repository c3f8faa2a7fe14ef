"""Inbound messages in the database: store once, find duplicates, log deliveries.

Storing a message and moving the mailbox's ``last_uid`` past it happen in one transaction,
so a restart resumes exactly after the last stored message: no duplicate, no gap. When
UIDVALIDITY changes every UID is new; :meth:`InboundStore.duplicate` then recognises
messages already stored by Message-ID and size (or, without a Message-ID, by the SHA-256
of their bytes).

Every method is one transaction. Those that move ``last_uid`` raise
:class:`~postroom.inbound.mailboxes.LeaseLost` when this process no longer holds the
mailbox's lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import utcnow
from postroom.hmac_keys import HmacKeys
from postroom.imap.parse import InboundMessage as Parsed
from postroom.inbound.bounces import Bounce
from postroom.inbound.mailboxes import Mailboxes
from postroom.inbound.outbox_bounces import BounceOutcome, bounce_info, hold, mark_outbox_bounced
from postroom.inbound.schemas import (
    AttachmentInfo,
    BounceInfo,
    InboundEvent,
    InboundStatus,
    InboundSummary,
)
from postroom.inbound.tables import InboundAttachment, InboundDelivery, InboundMessage
from postroom.inbound.text import clean

__all__ = ["InboundStore", "Location", "database_unavailable", "describe_failure", "summary"]

_PENDING = (InboundStatus.RECEIVED.value, InboundStatus.DELIVERED.value)


@dataclass(frozen=True)
class Location:
    """Where a message sits on the server, and which listener may write about it."""

    mailbox_id: int
    owner: str
    profile_id: int
    profile_name: str
    folder: str
    uidvalidity: int


class InboundStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        mailboxes: Mailboxes,
        *,
        bounce_keys: HmacKeys | None = None,
    ) -> None:
        self._sessions = sessions
        self._mailboxes = mailboxes
        self.bounce_keys = bounce_keys  # checks the bounce tokens of notices

    # -- storing --------------------------------------------------------------------------

    def duplicate(
        self, profile_id: int, *, message_id: str | None, size: int, sha256: str | None = None
    ) -> tuple[int, InboundStatus] | None:
        """An already stored message of this profile with the same Message-ID and size (or
        the same SHA-256 and size): its id and status."""
        if message_id is None and sha256 is None:
            return None
        key = (
            InboundMessage.message_id == clean(message_id, 998)
            if message_id is not None
            else InboundMessage.sha256 == sha256
        )
        with self._sessions() as s:
            found = s.execute(
                select(InboundMessage.id, InboundMessage.status)
                .where(InboundMessage.profile_id == profile_id, key, InboundMessage.size == size)
                .order_by(InboundMessage.id)
                .limit(1)
            ).first()
        return (found[0], InboundStatus(found[1])) if found else None

    def skip(self, where: Location, uid: int) -> None:
        """Move ``last_uid`` past a message that is not stored (gone, or a duplicate)."""
        with self._sessions() as s:
            self._mailboxes.advance(s, where.mailbox_id, where.owner, uid)
            s.commit()

    def relocate(self, where: Location, uid: int, inbound_id: int) -> None:
        """A pending message seen again under a new UIDVALIDITY: remember its new UID (so the
        processed action finds it) and make it due now."""
        with self._sessions() as s:
            s.execute(
                update(InboundMessage)
                .where(InboundMessage.id == inbound_id)
                .values(
                    folder=where.folder,
                    uidvalidity=where.uidvalidity,
                    uid=uid,
                    next_attempt_at=utcnow(),
                )
            )
            self._mailboxes.advance(s, where.mailbox_id, where.owner, uid)
            s.commit()

    def reject(
        self, where: Location, uid: int, *, size: int, message_id: str | None, reason: str
    ) -> int | None:
        """Store that the message at ``uid`` was refused, and why; returns its id."""
        row = self._row(where, uid, size=size, message_id=message_id)
        row.status = InboundStatus.REJECTED.value
        row.reject_reason = clean(reason, 2000)
        return self._insert(where, uid, row, [], None)

    def store(
        self,
        where: Location,
        uid: int,
        parsed: Parsed,
        *,
        size: int,
        sha256: str,
        bounce: Bounce | None,
    ) -> int | None:
        """Store a parsed message (and mark the outbox message it bounces); returns its id,
        None when this UID was stored already. Raises LeaseLost."""
        row = self._row(where, uid, size=size, message_id=parsed.message_id)
        row.status = InboundStatus.RECEIVED.value
        row.sha256 = sha256
        row.subject = clean(parsed.subject) or ""
        row.from_address = clean(parsed.from_address, 320)
        row.to = [clean(a, 320) or "" for a in parsed.to]
        row.cc = [clean(a, 320) or "" for a in parsed.cc]
        row.date = parsed.date
        row.in_reply_to = clean(parsed.in_reply_to)
        row.references = [clean(r) or "" for r in parsed.references]
        row.headers = [[clean(k, 200), clean(v)] for k, v in parsed.headers]
        row.text = clean(parsed.text)
        row.html = clean(parsed.html)
        row.next_attempt_at = utcnow()
        attachments = [
            InboundAttachment(
                position=i,
                filename=clean(a.filename, 1000),
                content_type=clean(a.content_type, 200) or "application/octet-stream",
                size=a.size,
                stored=a.stored,
                content=a.content if a.stored else None,
            )
            for i, a in enumerate(parsed.attachments)
        ]
        return self._insert(where, uid, row, attachments, bounce)

    def _row(self, where: Location, uid: int, *, size: int, message_id: str | None) -> Any:
        return InboundMessage(
            profile_id=where.profile_id,
            profile_name=where.profile_name,
            folder=where.folder,
            uidvalidity=where.uidvalidity,
            uid=uid,
            size=size,
            message_id=clean(message_id, 998),
            subject="",
            to=[],
            cc=[],
            references=[],
            headers=[],
            attempts=0,
            received_at=utcnow(),
        )

    def _insert(
        self,
        where: Location,
        uid: int,
        row: InboundMessage,
        attachments: list[InboundAttachment],
        bounce: Bounce | None,
    ) -> int | None:
        with self._sessions() as s:
            try:
                outcome = BounceOutcome()
                if bounce is not None:
                    outcome = mark_outbox_bounced(s, bounce, keys=self.bounce_keys)
                    info = bounce_info(bounce, outcome.outbox_id, refused=outcome.refused)
                    row.bounce = info.model_dump()
                s.add(row)
                s.flush()
                hold(s, row.id, outcome)
                for a in attachments:
                    a.inbound_id = row.id
                    s.add(a)
                self._mailboxes.advance(s, where.mailbox_id, where.owner, uid)
                s.commit()
            except IntegrityError:
                s.rollback()
                if not self._has_uid(where, uid):
                    raise  # not a race: the message itself breaks a constraint
                # this UID is stored already (a listener that lost its lease got here first)
                self.skip(where, uid)
                return None
            return row.id

    def _has_uid(self, where: Location, uid: int) -> bool:
        with self._sessions() as s:
            found = s.scalar(
                select(InboundMessage.id).where(
                    InboundMessage.profile_id == where.profile_id,
                    InboundMessage.folder == where.folder,
                    InboundMessage.uidvalidity == where.uidvalidity,
                    InboundMessage.uid == uid,
                )
            )
        return found is not None

    # -- delivering -----------------------------------------------------------------------

    def due(self, profile_id: int, folder: str, *, now: datetime, limit: int = 100) -> list[int]:
        """Messages of this mailbox whose subscribers or processed action are due again."""
        with self._sessions() as s:
            return list(
                s.scalars(
                    select(InboundMessage.id)
                    .where(
                        InboundMessage.profile_id == profile_id,
                        InboundMessage.folder == folder,
                        InboundMessage.status.in_(_PENDING),
                        # None: nothing more to try (e.g. the message left the folder)
                        InboundMessage.next_attempt_at.is_not(None),
                        InboundMessage.next_attempt_at <= now,
                    )
                    .order_by(InboundMessage.uid)
                    .limit(limit)
                )
            )

    def next_due(self, profile_id: int, folder: str) -> datetime | None:
        """When the earliest pending message of this mailbox is due."""
        with self._sessions() as s:
            return s.scalar(
                select(func.min(InboundMessage.next_attempt_at)).where(
                    InboundMessage.profile_id == profile_id,
                    InboundMessage.folder == folder,
                    InboundMessage.status.in_(_PENDING),
                )
            )

    def get(self, inbound_id: int) -> InboundMessage | None:
        with self._sessions() as s:
            return s.get(InboundMessage, inbound_id)

    def succeeded(self, inbound_id: int) -> set[str]:
        """Subscribers that already took this message (never called again for it)."""
        with self._sessions() as s:
            return set(
                s.scalars(
                    select(InboundDelivery.subscriber).where(
                        InboundDelivery.inbound_id == inbound_id, InboundDelivery.ok.is_(True)
                    )
                )
            )

    def log_delivery(
        self,
        inbound_id: int,
        subscriber: str,
        *,
        ok: bool,
        webhook_id: int | None = None,
        status_code: int | None = None,
        error: str | None = None,
        duration_ms: float = 0.0,
    ) -> None:
        with self._sessions() as s:
            attempt = 1 + (
                s.scalar(
                    select(func.count(InboundDelivery.id)).where(
                        InboundDelivery.inbound_id == inbound_id,
                        InboundDelivery.subscriber == subscriber,
                    )
                )
                or 0
            )
            s.add(
                InboundDelivery(
                    inbound_id=inbound_id,
                    subscriber=subscriber[:250],
                    webhook_id=webhook_id,
                    attempt=attempt,
                    at=utcnow(),
                    ok=ok,
                    status_code=status_code,
                    error=clean(error, 2000),
                    duration_ms=duration_ms,
                )
            )
            s.commit()

    def set_status(self, inbound_id: int, status: InboundStatus, **values: Any) -> None:
        now = utcnow()
        if status is InboundStatus.DELIVERED:
            values.setdefault("delivered_at", now)
            values.setdefault("next_attempt_at", now)
        if status is InboundStatus.PROCESSED:
            values.setdefault("processed_at", now)
            values.setdefault("next_attempt_at", None)
        with self._sessions() as s:
            s.execute(
                update(InboundMessage)
                .where(InboundMessage.id == inbound_id)
                .values(status=status.value, **values)
            )
            s.commit()

    def event(self, inbound_id: int) -> InboundEvent:
        """The subscriber payload of a stored message."""
        with self._sessions() as s:
            row = s.get(InboundMessage, inbound_id)
            if row is None:
                raise LookupError(f"no inbound message {inbound_id}")
            attachments = s.scalars(
                select(InboundAttachment)
                .where(InboundAttachment.inbound_id == inbound_id)
                .order_by(InboundAttachment.position)
            )
            return InboundEvent(
                id=row.id,
                profile=row.profile_name,
                folder=row.folder,
                uid=row.uid,
                received_at=row.received_at,
                message_id=row.message_id,
                subject=row.subject,
                from_address=row.from_address,
                to=row.to,
                cc=row.cc,
                date=row.date,
                in_reply_to=row.in_reply_to,
                references=row.references,
                headers=[(str(k), str(v)) for k, v in row.headers],
                text=row.text,
                html=row.html,
                size=row.size,
                attachments=[
                    AttachmentInfo(
                        id=a.id,
                        filename=a.filename,
                        content_type=a.content_type,
                        size=a.size,
                        stored=a.stored,
                    )
                    for a in attachments
                ],
                bounce=BounceInfo.model_validate(row.bounce) if row.bounce else None,
            )


def summary(row: InboundMessage) -> InboundSummary:
    return InboundSummary(
        id=row.id,
        profile=row.profile_name,
        folder=row.folder,
        uid=row.uid,
        status=InboundStatus(row.status),
        message_id=row.message_id,
        subject=row.subject,
        from_address=row.from_address,
        size=row.size,
        received_at=row.received_at,
        processed_at=row.processed_at,
        attempts=row.attempts,
        reject_reason=row.reject_reason,
        last_error=row.last_error,
        bounce=BounceInfo.model_validate(row.bounce) if row.bounce else None,
    )


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or used right now (lost
    connection, locked, pool exhausted) rather than that one write was refused."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed write: the driver's or Python's error, without the SQL
    statement and its parameters (which would repeat the message's content)."""
    cause: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        cause = exc.orig
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__
