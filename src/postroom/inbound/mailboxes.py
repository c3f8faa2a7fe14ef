"""Synced folders in the database: lease, UIDVALIDITY/last UID, listener state (health).

One listener per mailbox across all processes: it must hold the row's lease
(``lease_owner``, ``lease_until``), renewed every third of the lease. Every write a listener
makes is conditional on still owning the lease, so a process that was paused past its
lease (and replaced) cannot move ``last_uid`` or overwrite the state behind the new owner's
back: :class:`LeaseLost` tells it to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import utcnow
from postroom.inbound.schemas import ListenerState
from postroom.inbound.tables import InboundMailbox

__all__ = ["LeaseLost", "MailboxPosition", "Mailboxes"]


class LeaseLost(Exception):
    """Another process owns this mailbox now; the listener must stop touching it."""


@dataclass(frozen=True)
class MailboxPosition:
    """Where the sync of a mailbox stands after checking UIDVALIDITY."""

    uidvalidity: int
    last_uid: int
    previous_uidvalidity: int | None

    @property
    def resync(self) -> bool:
        """UIDVALIDITY changed: every UID is new, so the whole folder is read again."""
        return self.previous_uidvalidity is not None and (
            self.previous_uidvalidity != self.uidvalidity
        )


class Mailboxes:
    """Rows of ``inbound_mailboxes``; every method is one short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def ensure(self, profile_id: int, folder: str) -> int:
        """The id of the row for (``profile_id``, ``folder``), created when missing."""
        with self._sessions() as s:
            found = self._find(s, profile_id, folder)
            if found is not None:
                return found
            s.add(InboundMailbox(profile_id=profile_id, folder=folder, state="stopped"))
            try:
                s.commit()
            except IntegrityError:  # another process created it first
                s.rollback()
            found = self._find(s, profile_id, folder)
            assert found is not None
            return found

    @staticmethod
    def _find(s: Session, profile_id: int, folder: str) -> int | None:
        return s.scalar(
            select(InboundMailbox.id).where(
                InboundMailbox.profile_id == profile_id, InboundMailbox.folder == folder
            )
        )

    def acquire(self, mailbox_id: int, owner: str, *, lease_s: float) -> bool:
        """Take (or keep) the lease when it is free, ours, or expired."""
        now = utcnow()
        with self._sessions() as s:
            result = s.execute(
                update(InboundMailbox)
                .where(
                    InboundMailbox.id == mailbox_id,
                    or_(
                        InboundMailbox.lease_owner.is_(None),
                        InboundMailbox.lease_owner == owner,
                        InboundMailbox.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
            )
            s.commit()
            return _one(result)

    def renew(self, mailbox_id: int, owner: str, *, lease_s: float) -> bool:
        """Extend our lease and refresh ``state_at`` (the heartbeat health reads)."""
        now = utcnow()
        return self._update(
            mailbox_id, owner, lease_until=now + timedelta(seconds=lease_s), state_at=now
        )

    def release(self, mailbox_id: int, owner: str) -> None:
        """Give the lease up and say the listener stopped (no-op when not ours)."""
        self._update(
            mailbox_id,
            owner,
            lease_owner=None,
            lease_until=None,
            state=ListenerState.STOPPED.value,
            state_at=utcnow(),
        )

    def set_state(
        self,
        mailbox_id: int,
        owner: str,
        state: ListenerState,
        *,
        error: str | None = None,
        code: str | None = None,
        polled: bool = False,
    ) -> None:
        """Record the listener's state; with ``error``, also the last error (kept until the
        next one: health shows when it happened). Raises LeaseLost."""
        now = utcnow()
        values: dict[str, Any] = {"state": state.value, "state_at": now}
        if polled:
            values["last_poll_at"] = now
        if error is not None:
            values.update(last_error=error[:2000], last_error_code=code, last_error_at=now)
        if not self._update(mailbox_id, owner, **values):
            raise LeaseLost(f"mailbox {mailbox_id} is no longer leased by {owner}")

    def position(self, mailbox_id: int, owner: str, uidvalidity: int) -> MailboxPosition:
        """Compare the server's UIDVALIDITY with the stored one; on a change start over at
        UID 0 (duplicates are then recognised by Message-ID and size). Raises LeaseLost."""
        with self._sessions() as s:
            row = s.get(InboundMailbox, mailbox_id)
            if row is None or row.lease_owner != owner:
                raise LeaseLost(f"mailbox {mailbox_id} is no longer leased by {owner}")
            previous = row.uidvalidity
            if previous != uidvalidity:
                row.uidvalidity = uidvalidity
                row.last_uid = 0
                s.commit()
            return MailboxPosition(uidvalidity, row.last_uid, previous)

    def advance(self, s: Session, mailbox_id: int, owner: str, uid: int) -> None:
        """Within the caller's transaction: ``last_uid = uid``. Raises LeaseLost."""
        result = s.execute(
            update(InboundMailbox)
            .where(
                InboundMailbox.id == mailbox_id,
                InboundMailbox.lease_owner == owner,
                InboundMailbox.last_uid < uid,
            )
            .values(last_uid=uid)
        )
        if not _one(result):
            owned = s.scalar(
                select(InboundMailbox.id).where(
                    InboundMailbox.id == mailbox_id, InboundMailbox.lease_owner == owner
                )
            )
            if owned is None:
                raise LeaseLost(f"mailbox {mailbox_id} is no longer leased by {owner}")

    def get(self, mailbox_id: int) -> InboundMailbox | None:
        """The row (detached), or None."""
        with self._sessions() as s:
            return s.get(InboundMailbox, mailbox_id)

    def _update(self, mailbox_id: int, owner: str, **values: Any) -> bool:
        with self._sessions() as s:
            result = s.execute(
                update(InboundMailbox)
                .where(InboundMailbox.id == mailbox_id, InboundMailbox.lease_owner == owner)
                .values(**values)
            )
            s.commit()
            return _one(result)


def _one(result: Any) -> bool:
    return bool(result.rowcount == 1)
