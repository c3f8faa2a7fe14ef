"""Inbound retention: stored messages older than the retention are deleted in batches,
with their attachments, delivery attempts and held bounce notices (ON DELETE CASCADE).

Only messages every subscriber has taken are ever deleted: ``processed``, ``delivered``
with no processed action still due, and ``rejected`` (quarantined: no subscriber sees
them). ``received`` (subscribers pending) and ``failed`` (subscribers gave up; an operator
decides) are kept whatever their age.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from postroom.inbound.schemas import InboundStatus
from postroom.inbound.tables import InboundMessage

__all__ = ["InboundRetention", "purgeable"]

_M = InboundMessage


def purgeable(before: datetime) -> ColumnElement[bool]:
    """Received before ``before``, and done with: no subscriber or processed action waits."""
    return and_(
        _M.received_at < before,
        or_(
            _M.status.in_((InboundStatus.PROCESSED.value, InboundStatus.REJECTED.value)),
            # delivered with nothing due: the processed action was given up (UIDVALIDITY
            # changed); one still retrying it is kept until it succeeds
            and_(_M.status == InboundStatus.DELIVERED.value, _M.next_attempt_at.is_(None)),
        ),
    )


class InboundRetention:
    """Counting and deleting old inbound messages."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def count(self, *, before: datetime) -> int:
        """How many messages :meth:`purge` would delete now."""
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(_M).where(purgeable(before))) or 0)

    def purge(
        self,
        *,
        before: datetime,
        chunk: int = 200,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete what :func:`purgeable` selects, ``chunk`` messages per transaction (so
        listeners storing mail are never held back for long, and attachments of one chunk
        are what one transaction holds); returns how many. ``progress`` is called with the
        running total after each chunk."""
        total = 0
        while True:
            with self._sessions() as s:
                ids = list(
                    s.scalars(select(_M.id).where(purgeable(before)).order_by(_M.id).limit(chunk))
                )
                if not ids:
                    return total
                # the condition again: a message that moved back to pending meanwhile stays
                result = s.execute(delete(_M).where(_M.id.in_(ids), purgeable(before)))
                s.commit()
            total += int(result.rowcount)  # type: ignore[attr-defined]
            if progress is not None:
                progress(total)
